// A vault on AWS KMS end to end through the real Vault code, with KMS played by a scripted
// transport: init, create a file, reopen both. Checks what reaches KMS (key ARN, contexts,
// signatures) and what the header and config record. The same flow against tools/kms-local
// and a real mount belongs to the integration tests once that server exists.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "fake_transport.h"
#include "keys/aws/aws_kms_provider.h"
#include "keys/key_providers.h"
#include "vault/vault.h"

namespace kmsfs::aws {
namespace {

using testing::FakeTransport;

const std::string kArn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const std::string kFsKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";   // 0..31
const std::string kFileKey = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";  // 32..63

std::unique_ptr<KeyProviders> providers_over(std::shared_ptr<FakeTransport> http) {
  KmsClientOptions o;
  o.region = "";  // none configured: the operator named the key, so its region is allowed
  o.allowed_regions = {"eu-west-1"};
  o.sleep = [](std::chrono::milliseconds) {};
  auto client = std::make_shared<KmsClient>(
      http, make_static_provider(Credentials::make("AKIDTEST", "sekrit")), std::move(o));
  auto p = std::make_unique<KeyProviders>([](ProviderId) -> Result<std::unique_ptr<KeyProvider>> {
    return Status(Code::kUnsupported, "only aws-kms here");
  });
  p->add(std::make_unique<AwsKmsProvider>(client));
  return p;
}

nlohmann::json body(const HttpCall& c) { return nlohmann::json::parse(c.body); }
std::string target(const HttpCall& c) {
  for (const auto& [k, v] : c.headers) {
    if (k == "X-Amz-Target") return v;
  }
  return "";
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "kmsfs-vault-kms-XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

TEST(VaultOnKms, InitCreateReopen) {
  TempDir dir;
  auto http = std::make_shared<FakeTransport>();
  auto providers = providers_over(http);

  InitOptions io;
  io.provider = ProviderId::kAwsKms;
  io.key_spec = kArn;
  ASSERT_TRUE(io.user_context.set("team", "ops").ok());
  http->answer(200, R"({"KeyMetadata":{"Arn":")" + kArn +
                        R"(","KeyId":"k","Enabled":true,"KeyState":"Enabled","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT"}})");
  http->answer(200, R"({"KeyId":")" + kArn + R"(","CiphertextBlob":"ZnMta2V5LWJsb2I=","Plaintext":")" + kFsKey + R"("})");
  auto v = Vault::init(dir.path, *providers, io);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  const FsConfig& c = (*v)->config();
  EXPECT_EQ(c.provider, ProviderId::kAwsKms);
  EXPECT_EQ(c.key_spec, kArn);
  EXPECT_EQ(c.fs_key_ref, (KeyRef{ProviderId::kAwsKms, kArn, 0}));
  ASSERT_EQ(http->calls.size(), 2u);
  EXPECT_EQ(target(http->calls[1]), "TrentService.GenerateDataKey");
  auto gdk = body(http->calls[1]);
  EXPECT_EQ(gdk["KeyId"], kArn);
  EXPECT_EQ(gdk["EncryptionContext"]["kmsfs:purpose"], "filesystem-key");
  EXPECT_EQ(gdk["EncryptionContext"]["kmsfs:fs-id"], c.fs_id_hex());
  EXPECT_EQ(gdk["EncryptionContext"]["team"], "ops");

  // A new file: the spec was resolved at init and is cached, so one call.
  http->answer(200, R"({"KeyId":")" + kArn + R"(","CiphertextBlob":"ZmlsZS1rZXktYmxvYg==","Plaintext":")" + kFileKey + R"("})");
  auto f = (*v)->create_file(dir.path + "/a", 0600);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  Bytes data(10000, 7);
  ASSERT_TRUE((*f)->write(data, 0).ok());
  FileHeader h = (*f)->header();
  f->reset();
  ASSERT_EQ(http->calls.size(), 3u);
  auto file_ctx = body(http->calls[2])["EncryptionContext"];
  EXPECT_EQ(file_ctx["kmsfs:file-id"], to_hex(h.file_id));
  EXPECT_FALSE(file_ctx.contains("kmsfs:purpose"));

  // Reopen with fresh providers: Decrypt the filesystem key (config MAC), then the file's.
  auto http2 = std::make_shared<FakeTransport>();
  auto providers2 = providers_over(http2);
  http2->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kFsKey + R"("})");
  http2->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kFileKey + R"("})");
  auto v2 = Vault::open_unanchored(dir.path, *providers2);
  ASSERT_TRUE(v2.ok()) << v2.status().to_string();
  auto g = (*v2)->open_file(dir.path + "/a", false);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  Bytes out(10000);
  ASSERT_EQ(*(*g)->read(out, 0), 10000u);
  EXPECT_EQ(out, data);
  FileHeader h2 = (*g)->header();
  EXPECT_EQ(h2.slots[h2.active_slot()]->key, (KeyRef{ProviderId::kAwsKms, kArn, 0}));
  ASSERT_EQ(http2->calls.size(), 2u);
  for (const HttpCall& call : http2->calls) {
    EXPECT_EQ(target(call), "TrentService.Decrypt");
    EXPECT_EQ(call.url, "https://kms.eu-west-1.amazonaws.com/");  // region from the ARN
    EXPECT_EQ(body(call)["KeyId"], kArn);
  }
  EXPECT_EQ(body(http2->calls[0])["CiphertextBlob"], "ZnMta2V5LWJsb2I=");
  EXPECT_EQ(body(http2->calls[1])["CiphertextBlob"], "ZmlsZS1rZXktYmxvYg==");
  EXPECT_EQ(body(http2->calls[1])["EncryptionContext"], file_ctx);

  // KMS handing back another key than the one the config was MAC'd with is caught.
  auto http3 = std::make_shared<FakeTransport>();
  auto providers3 = providers_over(http3);
  http3->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kFileKey + R"("})");
  EXPECT_EQ(Vault::open_unanchored(dir.path, *providers3).status().code(), Code::kCorrupt);

  // And a denial reads as one, naming the key.
  auto http4 = std::make_shared<FakeTransport>();
  auto providers4 = providers_over(http4);
  http4->answer(400, R"({"__type":"AccessDeniedException","message":"not for you"})");
  Status denied = Vault::open_unanchored(dir.path, *providers4).status();
  EXPECT_EQ(denied.code(), Code::kPermissionDenied);
  EXPECT_NE(denied.message().find(kArn), std::string::npos) << denied.message();
}

}  // namespace
}  // namespace kmsfs::aws
