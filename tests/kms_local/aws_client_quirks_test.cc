// kmsfs's own AWS KMS client (src/keys/aws) against tools/kms-local over a real socket:
// answers that are not quite KMS's (the server's "quirk" modes, faults.h) are tolerated
// where the AWS SDKs tolerate them and refused clearly where they cannot be used, and a key
// in a region the client may not use never reaches the server.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "keys/aws/aws_kms_provider.h"
#include "keys/aws/kms_client.h"
#include "kms_local.h"

namespace kmsfs::aws {
namespace {

using nlohmann::json;
using testing::KmsLocal;

struct Rig {
  explicit Rig(bool tls = false) : kms(KMS_LOCAL_BIN, KmsLocal::Options{.tls = tls}) {
    auto [status, body] = kms.call("CreateKey", "{}");
    EXPECT_EQ(status, 200) << body;
    arn = json::parse(body)["KeyMetadata"]["Arn"];
    CurlOptions co;
    co.ca_bundle = kms.ca_file();
    KmsClientOptions o;
    o.region = KmsLocal::kRegion;
    o.endpoint = kms.endpoint();
    o.sleep = [](std::chrono::milliseconds) {};
    client = std::make_shared<KmsClient>(
        make_curl_transport(co),
        make_static_provider(Credentials::make(KmsLocal::kAccessKeyId, KmsLocal::kSecretAccessKey)),
        std::move(o));
  }
  void quirk(const json& config) {
    auto [status, body] = kms.admin("POST", "/__admin/faults", config.dump());
    ASSERT_EQ(status, 200) << body;
  }
  // Requests the server saw for `op` (any result).
  int seen(const std::string& op) {
    json stats = json::parse(kms.admin("GET", "/__admin/stats").second);
    int n = 0;
    for (const auto& [result, count] : stats["operations"][op].items()) n += count.get<int>();
    return n;
  }

  KmsLocal kms;
  std::string arn;
  std::shared_ptr<KmsClient> client;
};

EncryptionContext ctx() {
  EncryptionContext c;
  EXPECT_TRUE(c.set("kmsfs:fs-id", "00112233445566778899aabbccddeeff").ok());
  return c;
}

TEST(KmsClientQuirks, NullAndUnknownMembersAreTolerated) {
  Rig rig;
  rig.quirk({{"quirk", "nulls"}});
  Result<PlaintextAnswer> dk = rig.client->generate_data_key(rig.arn, ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();
  Result<PlaintextAnswer> pt = rig.client->decrypt(rig.arn, dk->blob, ctx());
  ASSERT_TRUE(pt.ok()) << pt.status().to_string();
  EXPECT_TRUE(ct_equal(pt->plaintext.span(), dk->plaintext.span()));
  // DescribeKey with "Enabled": null: the provider goes by KeyState, as the SDKs leave it unset.
  AwsKmsProvider provider(rig.client);
  Result<KeyRef> ref = provider.resolve(rig.arn);
  ASSERT_TRUE(ref.ok()) << ref.status().to_string();
  EXPECT_EQ(ref->key_id, rig.arn);
}

TEST(KmsClientQuirks, MissingRequiredMembersAreClearErrors) {
  Rig rig;
  Result<PlaintextAnswer> dk = rig.client->generate_data_key(rig.arn, ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();
  rig.quirk({{"quirk", "missing_field"}});
  Status s = rig.client->decrypt(rig.arn, dk->blob, ctx()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_EQ(s.message(), "KMS Decrypt: malformed KMS answer: no Plaintext");
  s = rig.client->generate_data_key(rig.arn, ctx()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_EQ(s.message(), "KMS GenerateDataKey: malformed KMS answer: no CiphertextBlob");
  s = rig.client->describe_key(rig.arn).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_EQ(s.message(), "KMS DescribeKey: malformed KMS answer: no Arn");
  EXPECT_EQ(rig.seen("Decrypt"), 1);  // a malformed 200 is not retried
}

TEST(KmsClientQuirks, ErrorPagesAreClassifiedByStatus) {
  Rig rig;
  Result<PlaintextAnswer> dk = rig.client->generate_data_key(rig.arn, ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();

  // A load balancer's 502 page: retryable, retried, reported in one line without the page.
  rig.quirk({{"quirk", "html_error"}, {"operations", {"Decrypt"}}});
  Status s = rig.client->decrypt(rig.arn, dk->blob, ctx()).status();
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.message();
  EXPECT_NE(s.message().find("HTTP 502"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("not a KMS answer"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("<"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  EXPECT_EQ(rig.seen("Decrypt"), 3);

  // Once: the retry gets the real answer.
  rig.quirk({{"quirk", "html_error"}, {"quirk_status", 503}, {"count", 1}});
  EXPECT_TRUE(rig.client->decrypt(rig.arn, dk->blob, ctx()).ok());
  EXPECT_EQ(rig.seen("Decrypt"), 5);

  // A proxy's 403 in XML: not retried, a denial.
  rig.quirk({{"quirk", "xml_error"}});
  s = rig.client->decrypt(rig.arn, dk->blob, ctx()).status();
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.message();
  EXPECT_NE(s.message().find("HTTP 403"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("AccessDenied<"), std::string::npos) << s.message();
  EXPECT_EQ(rig.seen("Decrypt"), 6);

  // A 404 page: not retried, not a denial.
  rig.quirk({{"quirk", "html_error"}, {"quirk_status", 404}});
  s = rig.client->decrypt(rig.arn, dk->blob, ctx()).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.message();
  EXPECT_EQ(rig.seen("Decrypt"), 7);
}

TEST(KmsClientQuirks, KeyInAnotherRegionNeverReachesTheServer) {
  Rig rig(/*tls=*/true);
  Result<PlaintextAnswer> dk = rig.client->generate_data_key(rig.arn, ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();  // TLS to 127.0.0.1 with the test CA
  std::string elsewhere = rig.arn;
  elsewhere.replace(elsewhere.find(KmsLocal::kRegion), std::string(KmsLocal::kRegion).size(), "eu-west-1");
  Status s = rig.client->decrypt(elsewhere, dk->blob, ctx()).status();
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.message();
  s = rig.client->decrypt("arn:aws:kms:evil.com/x:111122223333:key/k", dk->blob, ctx()).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.message();
  EXPECT_EQ(rig.seen("Decrypt"), 0);
  EXPECT_TRUE(rig.client->decrypt(rig.arn, dk->blob, ctx()).ok());
  EXPECT_EQ(rig.seen("Decrypt"), 1);
}

}  // namespace
}  // namespace kmsfs::aws
