// The KMS client and the provider against a scripted transport: the wire shape of each
// request (checked with the SigV4 verifier, as kms-local will), retries and their delays,
// error mapping, and the provider's checks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fake_transport.h"
#include "keys/aws/aws_kms_provider.h"
#include "keys/aws/kms_client.h"

namespace kmsfs::aws {
namespace {

using std::chrono::milliseconds;
using testing::FakeTransport;

const std::string kArn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const std::string kKey32B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Rig {
  std::shared_ptr<FakeTransport> http = std::make_shared<FakeTransport>();
  std::vector<milliseconds> sleeps;
  std::shared_ptr<KmsClient> client;

  explicit Rig(std::string region = "eu-west-1", std::string endpoint = "") {
    KmsClientOptions o;
    o.region = std::move(region);
    o.endpoint = std::move(endpoint);
    o.random = [] { return 0.5; };
    o.sleep = [this](milliseconds d) { sleeps.push_back(d); };
    o.clock = [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1714979289)); };
    client = std::make_shared<KmsClient>(
        http, make_static_provider(Credentials::make("AKIDTEST", "sekrit", "tok")), std::move(o));
  }
};

EncryptionContext ctx() {
  EncryptionContext c;
  EXPECT_TRUE(c.set("kmsfs:fs-id", "00112233445566778899aabbccddeeff").ok());
  EXPECT_TRUE(c.set("kmsfs:file-id", "ffeeddccbbaa99887766554433221100").ok());
  return c;
}

std::string header(const HttpCall& c, std::string_view name) {
  for (const auto& [k, v] : c.headers) {
    if (strcasecmp(k.c_str(), std::string(name).c_str()) == 0) return v;
  }
  return {};
}

// What the server side does: rebuild the request and verify the signature.
void expect_signed(const HttpCall& c, std::string_view secret = "sekrit") {
  HttpRequest r;
  r.method = c.method;
  size_t path_at = c.url.find('/', c.url.find("://") + 3);
  r.path = path_at == std::string::npos ? "/" : c.url.substr(path_at);
  r.headers = c.headers;
  r.body = c.body;
  Result<Authorization> a = parse_authorization(header(c, "authorization"));
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->service, "kms");
  EXPECT_TRUE(verify_header_signature(r, *a, as_bytes(secret)).ok());
}

TEST(KmsClient, DecryptRequestShape) {
  Rig rig;
  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 + R"("})");
  Result<PlaintextAnswer> a = rig.client->decrypt(kArn, Bytes{1, 2, 3}, ctx());
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->plaintext.size(), 32u);
  ASSERT_EQ(rig.http->calls.size(), 1u);
  const HttpCall& c = rig.http->calls[0];
  EXPECT_EQ(c.method, "POST");
  EXPECT_EQ(c.url, "https://kms.eu-west-1.amazonaws.com/");
  EXPECT_EQ(header(c, "content-type"), "application/x-amz-json-1.1");
  EXPECT_EQ(header(c, "x-amz-target"), "TrentService.Decrypt");
  EXPECT_EQ(header(c, "host"), "kms.eu-west-1.amazonaws.com");
  EXPECT_EQ(header(c, "x-amz-security-token"), "tok");
  EXPECT_EQ(header(c, "x-amz-date"), "20240506T070809Z");
  auto j = nlohmann::json::parse(c.body);
  EXPECT_EQ(j["KeyId"], kArn);  // Decrypt always names the key...
  EXPECT_EQ(j["EncryptionContext"]["kmsfs:file-id"], "ffeeddccbbaa99887766554433221100");  // ...and context
  expect_signed(c);
}

TEST(KmsClient, RegionAndEndpoint) {
  EXPECT_EQ(region_of_arn(kArn), "eu-west-1");
  EXPECT_EQ(region_of_arn("arn:aws-cn:kms:cn-north-1:111122223333:alias/x"), "cn-north-1");
  EXPECT_EQ(region_of_arn("arn:aws-cn:kms:cn-north-1:1:alias/x"), "");  // account: 12 digits
  EXPECT_EQ(region_of_arn("alias/x"), "");
  EXPECT_EQ(region_of_arn("arn:aws:kms"), "");
  EXPECT_EQ(*default_kms_endpoint("us-east-2"), "https://kms.us-east-2.amazonaws.com");
  EXPECT_EQ(*default_kms_endpoint("cn-north-1"), "https://kms.cn-north-1.amazonaws.com.cn");

  Rig none("");  // no region configured, none allowed
  EXPECT_EQ(none.client->region_for("alias/x").status().code(), Code::kInvalidArgument);
  // A key ARN does not teach the client its region any more (headers are untrusted)...
  EXPECT_EQ(none.client->region_for(kArn).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(none.client->region_for("alias/x").status().code(), Code::kInvalidArgument);
  // ...the operator allows it, and key ids and aliases then go there too.
  ASSERT_TRUE(none.client->allow_key_arn(kArn).ok());
  EXPECT_EQ(*none.client->region_for(kArn), "eu-west-1");
  EXPECT_EQ(*none.client->region_for("alias/x"), "eu-west-1");

  Rig other("us-east-1", "http://127.0.0.1:4566/kms");
  ASSERT_TRUE(other.client->allow_region("eu-west-1").ok());
  other.http->answer(200, R"({"KeyMetadata":{"Arn":")" + kArn + R"(","KeyId":"k","Enabled":true}})");
  ASSERT_TRUE(other.client->describe_key(kArn).ok());
  const HttpCall& c = other.http->calls[0];
  EXPECT_EQ(c.url, "http://127.0.0.1:4566/kms");
  EXPECT_EQ(header(c, "host"), "127.0.0.1:4566");
  // Signed for the key's region even through an override endpoint.
  EXPECT_NE(header(c, "authorization").find("/eu-west-1/kms/aws4_request"), std::string::npos);
  expect_signed(c);
}

TEST(KmsClient, RetriesThrottlingWithFullJitterThenSucceeds) {
  Rig rig;
  rig.http->answer(400, R"({"__type":"ThrottlingException","message":"Rate exceeded"})");
  rig.http->fail(Code::kUnavailable, "connection reset");
  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 + R"("})");
  ASSERT_TRUE(rig.client->decrypt(kArn, Bytes{1}, ctx()).ok());
  EXPECT_EQ(rig.http->calls.size(), 3u);
  EXPECT_EQ(rig.sleeps, (std::vector<milliseconds>{milliseconds(500), milliseconds(1000)}));
  // Each attempt is signed afresh.
  for (const HttpCall& c : rig.http->calls) expect_signed(c);
}

TEST(KmsClient, GivesUpAfterThreeAttemptsAsUnavailable) {
  Rig rig;
  for (int i = 0; i < 3; ++i) rig.http->answer(503, "");
  Status s = rig.client->decrypt(kArn, Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("3 attempts"), std::string::npos);
  EXPECT_EQ(rig.http->calls.size(), 3u);

  Rig down;
  for (int i = 0; i < 3; ++i) down.http->fail(Code::kUnavailable, "Could not connect");
  s = down.client->generate_data_key(kArn, ctx()).status();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("Could not connect"), std::string::npos);
}

TEST(KmsClient, NeverRetriesDenials) {
  struct Case {
    const char* type;
    Code code;
  };
  for (Case c : {Case{"AccessDeniedException", Code::kPermissionDenied},
                 Case{"DisabledException", Code::kPermissionDenied},
                 Case{"KMSInvalidStateException", Code::kPermissionDenied},
                 Case{"NotFoundException", Code::kNotFound},
                 Case{"InvalidCiphertextException", Code::kCorrupt}}) {
    Rig rig;
    rig.http->answer(400, std::string(R"({"__type":")") + c.type + R"(","message":"m"})");
    Status s = rig.client->decrypt(kArn, Bytes{1}, ctx()).status();
    EXPECT_EQ(s.code(), c.code) << c.type;
    EXPECT_EQ(rig.http->calls.size(), 1u) << c.type;
    EXPECT_TRUE(rig.sleeps.empty());
  }
  // The error type may come only as a header.
  Rig rig;
  rig.http->answer(400, "", {{"x-amzn-errortype", "AccessDeniedException:http://internal/"}});
  Status s = rig.client->decrypt(kArn, Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("KMS denied Decrypt on " + kArn), std::string::npos);
  // A TLS verification failure is not retried either.
  Rig tls;
  tls.http->fail(Code::kPermissionDenied, "SSL peer certificate");
  EXPECT_EQ(tls.client->decrypt(kArn, Bytes{1}, ctx()).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(tls.http->calls.size(), 1u);
}

TEST(KmsClient, EncryptBodyCarriesPlaintextAndIsSent) {
  Rig rig;
  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","CiphertextBlob":"AQID"})");
  Bytes pt(32, 7);
  Result<BlobAnswer> a = rig.client->encrypt(kArn, pt, ctx());
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->blob, (Bytes{1, 2, 3}));
  EXPECT_EQ(header(rig.http->calls[0], "x-amz-target"), "TrentService.Encrypt");
}

TEST(KmsClient, GenerateDataKeyRefusesAWrongSizedKey) {
  Rig rig;
  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","CiphertextBlob":"AQID","Plaintext":"AAAA"})");
  EXPECT_EQ(rig.client->generate_data_key(kArn, ctx()).status().code(), Code::kCorrupt);
}

// --- AwsKmsProvider ---

std::string describe(std::string_view arn, bool enabled = true, std::string state = "Enabled",
                     std::string usage = "ENCRYPT_DECRYPT", std::string spec = "SYMMETRIC_DEFAULT") {
  nlohmann::json j = {{"KeyMetadata",
                       {{"Arn", arn}, {"KeyId", "1234abcd"}, {"Enabled", enabled}, {"KeyState", state},
                        {"KeyUsage", usage}, {"KeySpec", spec}}}};
  return j.dump();
}

TEST(AwsKmsProvider, ResolveReturnsTheArnKmsAnswersAndCachesIt) {
  Rig rig;
  AwsKmsProvider p(rig.client);
  rig.http->answer(200, describe(kArn));
  Result<KeyRef> r = p.resolve("alias/kmsfs");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(*r, (KeyRef{ProviderId::kAwsKms, kArn, 0}));
  auto j = nlohmann::json::parse(rig.http->calls[0].body);
  EXPECT_EQ(j["KeyId"], "alias/kmsfs");
  EXPECT_EQ(header(rig.http->calls[0], "x-amz-target"), "TrentService.DescribeKey");
  ASSERT_TRUE(p.resolve("alias/kmsfs").ok());  // cached: no second call
  EXPECT_EQ(rig.http->calls.size(), 1u);
}

TEST(AwsKmsProvider, ResolveRefusesUnusableKeys) {
  struct Case {
    std::string answer;
    Code code;
    const char* says;
  };
  for (const Case& c : {Case{describe(kArn, false, "Disabled"), Code::kPermissionDenied, "disabled"},
                        Case{describe(kArn, false, "PendingDeletion"), Code::kPermissionDenied, "pending deletion"},
                        Case{describe(kArn, true, "Enabled", "SIGN_VERIFY"), Code::kInvalidArgument, "ENCRYPT_DECRYPT"},
                        Case{describe(kArn, true, "Enabled", "ENCRYPT_DECRYPT", "RSA_2048"), Code::kInvalidArgument, "SYMMETRIC_DEFAULT"}}) {
    Rig rig;
    AwsKmsProvider p(rig.client);
    rig.http->answer(200, c.answer);
    Status s = p.resolve(kArn).status();
    EXPECT_EQ(s.code(), c.code) << c.says;
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s.message();
  }
  Rig rig;
  AwsKmsProvider p(rig.client);
  rig.http->answer(400, R"({"__type":"NotFoundException","message":"Alias not found"})");
  EXPECT_EQ(p.resolve("alias/nope").status().code(), Code::kNotFound);
  EXPECT_EQ(p.resolve("").status().code(), Code::kInvalidArgument);
}

TEST(AwsKmsProvider, GenerateUnwrapRewrap) {
  Rig rig;
  AwsKmsProvider p(rig.client);
  KeyRef ref{ProviderId::kAwsKms, kArn, 0};
  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","CiphertextBlob":"AQID","Plaintext":")" + kKey32B64 + R"("})");
  Result<DataKey> dk = p.generate_data_key(ref, ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();
  EXPECT_EQ(dk->ref, ref);
  EXPECT_EQ(dk->wrapped, (Bytes{1, 2, 3}));
  EXPECT_EQ(dk->plaintext.size(), 32u);
  auto j = nlohmann::json::parse(rig.http->calls[0].body);
  EXPECT_EQ(j["KeySpec"], "AES_256");
  EXPECT_EQ(j["EncryptionContext"]["kmsfs:fs-id"], "00112233445566778899aabbccddeeff");

  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 + R"("})");
  Result<SecureBuffer> pt = p.unwrap(ref, dk->wrapped, ctx());
  ASSERT_TRUE(pt.ok());
  EXPECT_TRUE(ct_equal(pt->span(), dk->plaintext.span()));
  j = nlohmann::json::parse(rig.http->calls[1].body);
  EXPECT_EQ(j["KeyId"], kArn);
  EXPECT_EQ(j["CiphertextBlob"], "AQID");

  const std::string arn2 = "arn:aws:kms:eu-west-1:111122223333:key/other";
  rig.http->answer(200, R"({"KeyId":")" + arn2 + R"(","SourceKeyId":")" + kArn + R"(","CiphertextBlob":"BAUG"})");
  Result<Rewrapped> rw = p.rewrap(ref, dk->wrapped, ctx(), KeyRef{ProviderId::kAwsKms, arn2, 0});
  ASSERT_TRUE(rw.ok()) << rw.status().to_string();
  EXPECT_EQ(rw->ref.key_id, arn2);
  EXPECT_EQ(rw->wrapped, (Bytes{4, 5, 6}));
  j = nlohmann::json::parse(rig.http->calls[2].body);
  EXPECT_EQ(j["SourceKeyId"], kArn);
  EXPECT_EQ(j["DestinationKeyId"], arn2);
  EXPECT_EQ(header(rig.http->calls[2], "x-amz-target"), "TrentService.ReEncrypt");

  EXPECT_EQ(p.unwrap(KeyRef{ProviderId::kKeyring, "main", 1}, Bytes{1}, ctx()).status().code(),
            Code::kInvalidArgument);
  rig.http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":"AAAA"})");
  EXPECT_EQ(p.unwrap(ref, Bytes{1}, ctx()).status().code(), Code::kCorrupt);
}

TEST(AwsKmsProvider, SettingsFromEnvironment) {
  Env env;
  env.vars = {{"AWS_DEFAULT_REGION", "us-west-2"}, {"AWS_ENDPOINT_URL", "http://a"},
              {"HOME", "/nonexistent"}};
  AwsSettings s = resolve_settings({}, env).value();
  EXPECT_EQ(s.region, "us-west-2");
  EXPECT_EQ(s.endpoint, "http://a");
  env.vars["AWS_REGION"] = "eu-central-1";
  env.vars["AWS_ENDPOINT_URL_KMS"] = "http://b";
  s = resolve_settings({}, env).value();
  EXPECT_EQ(s.region, "eu-central-1");
  EXPECT_EQ(s.endpoint, "http://b");
  s = resolve_settings({.region = "ap-south-1", .endpoint = "http://c", .profile = ""}, env).value();
  EXPECT_EQ(s.region, "ap-south-1");
  EXPECT_EQ(s.endpoint, "http://c");
}

}  // namespace
}  // namespace kmsfs::aws
