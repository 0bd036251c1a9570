// Whole requests through the Dispatcher, signed with kmsfs's own SigV4 signer: protocol
// routing, every authentication failure AWS distinguishes, STS sessions used for KMS, fault
// injection and the counters. (The same checks against independent signers - awscli and
// botocore - are in the Python tests next to this file.)
#include "dispatcher.h"

#include <gtest/gtest.h>

#include "admin.h"
#include "base64.h"

namespace kmsfs::kms_local {
namespace {

using nlohmann::json;
constexpr const char* kRegion = "eu-west-1";
constexpr const char* kAccount = "111122223333";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

std::vector<LongTermKey> test_keys() {
  std::vector<LongTermKey> keys;
  keys.push_back({"alice", "AKIDALICE", SecureBuffer::copy_of(as_bytes(kSecret))});
  return keys;
}

// The text between <tag> and </tag> in an STS answer.
std::string xml_value(const std::string& xml, const std::string& tag) {
  size_t a = xml.find("<" + tag + ">"), b = xml.find("</" + tag + ">");
  if (a == std::string::npos || b == std::string::npos) return "";
  a += tag.size() + 2;
  return xml.substr(a, b - a);
}

struct Signer {
  std::string akid = "AKIDALICE";
  std::string secret = kSecret;
  std::string token;
  std::string region = kRegion;
  int skew_seconds = 0;
};

class DispatcherTest : public ::testing::Test {
 protected:
  aws::HttpRequest kms_request(const std::string& op, const json& body = json::object()) {
    aws::HttpRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"Host", "127.0.0.1:4599"},
                 {"Content-Type", "application/x-amz-json-1.1"},
                 {"X-Amz-Target", "TrentService." + op}};
    r.body = body.dump();
    return r;
  }
  aws::HttpRequest sts_request(const std::string& form) {
    aws::HttpRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"Host", "127.0.0.1:4599"},
                 {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
    r.body = form;
    return r;
  }
  Outcome send(aws::HttpRequest r, const Signer& s = {}, const char* service = nullptr) {
    if (!service) service = r.header("x-amz-target") ? "kms" : "sts";
    auto creds = aws::Credentials::make(s.akid, s.secret, s.token);
    aws::SigningParams p{.region = s.region,
                         .service = service,
                         .amz_date = aws::amz_date(std::chrono::system_clock::now() +
                                                   std::chrono::seconds(s.skew_seconds))};
    EXPECT_TRUE(aws::sign_headers(r, creds, p).ok());
    return dispatcher_.handle(r);
  }
  json ok_json(const Outcome& o) {
    EXPECT_EQ(o.reply.status, 200) << o.reply.body;
    EXPECT_EQ(o.result, "ok");
    return json::parse(o.reply.body, nullptr, false);
  }
  // KMS error: status, __type, message.
  void expect_kms_error(const Outcome& o, int status, const std::string& type,
                        const std::string& message_part = "") {
    EXPECT_EQ(o.reply.status, status);
    EXPECT_EQ(o.reply.content_type, "application/x-amz-json-1.1");
    json j = json::parse(o.reply.body, nullptr, false);
    EXPECT_EQ(j.value("__type", ""), type) << o.reply.body;
    EXPECT_NE(j.value("message", "").find(message_part), std::string::npos) << o.reply.body;
    EXPECT_EQ(o.result, type);
  }
  Signer assume_role() {
    Outcome o = send(sts_request("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A"
                                 "111122223333%3Arole%2Fkmsfs&RoleSessionName=test-session"));
    EXPECT_EQ(o.reply.status, 200) << o.reply.body;
    Signer s;
    s.akid = xml_value(o.reply.body, "AccessKeyId");
    s.secret = xml_value(o.reply.body, "SecretAccessKey");
    s.token = xml_value(o.reply.body, "SessionToken");
    return s;
  }

  CredentialStore creds_{test_keys(), kAccount};
  KmsService kms_{KeyStore(kRegion, kAccount), ""};
  StsService sts_{StsConfig{kAccount, std::nullopt}, creds_};
  Faults faults_;
  Stats stats_;
  Dispatcher dispatcher_{AuthPolicy{kRegion, 300}, kms_, sts_, creds_, faults_, stats_};
};

TEST_F(DispatcherTest, SignedKmsCall) {
  Outcome o = send(kms_request("CreateKey"));
  json j = ok_json(o);
  EXPECT_EQ(o.operation, "CreateKey");
  EXPECT_EQ(o.reply.content_type, "application/x-amz-json-1.1");
  EXPECT_EQ(o.reply.request_id.size(), 36u);
  EXPECT_EQ(j["KeyMetadata"]["KeyState"], "Enabled");
}

TEST_F(DispatcherTest, AuthenticationFailuresInKmsWords) {
  Signer wrong_secret;
  wrong_secret.secret = "not-the-secret";
  expect_kms_error(send(kms_request("ListKeys"), wrong_secret), 400, "InvalidSignatureException",
                   "The request signature we calculated does not match the signature you provided");
  Signer unknown;
  unknown.akid = "AKIDMALLORY";
  expect_kms_error(send(kms_request("ListKeys"), unknown), 400, "UnrecognizedClientException",
                   "The security token included in the request is invalid.");
  Signer late;
  late.skew_seconds = -360;
  expect_kms_error(send(kms_request("ListKeys"), late), 400, "InvalidSignatureException",
                   "Signature expired: ");
  Signer early;
  early.skew_seconds = 360;
  expect_kms_error(send(kms_request("ListKeys"), early), 400, "InvalidSignatureException",
                   "Signature not yet current: ");
  Signer within;
  within.skew_seconds = -200;
  ok_json(send(kms_request("ListKeys"), within));
  Signer other_region;
  other_region.region = "us-east-1";
  expect_kms_error(send(kms_request("ListKeys"), other_region), 400, "InvalidSignatureException",
                   "Credential should be scoped to a valid region.");
  expect_kms_error(send(kms_request("ListKeys"), {}, "sts"), 400, "InvalidSignatureException",
                   "Credential should be scoped to correct service: 'kms'.");
  Signer stray_token;
  stray_token.token = "made-up";
  expect_kms_error(send(kms_request("ListKeys"), stray_token), 400, "UnrecognizedClientException");
  expect_kms_error(dispatcher_.handle(kms_request("ListKeys")), 400,
                   "MissingAuthenticationTokenException");

  // A body changed after signing.
  aws::HttpRequest r = kms_request("DescribeKey", {{"KeyId", "alias/a"}});
  auto c = aws::Credentials::make("AKIDALICE", kSecret);
  ASSERT_TRUE(aws::sign_headers(r, c, {.region = kRegion, .service = "kms",
                                       .amz_date = aws::amz_date(std::chrono::system_clock::now())})
                  .ok());
  r.body = json{{"KeyId", "alias/b"}}.dump();
  expect_kms_error(dispatcher_.handle(r), 400, "InvalidSignatureException");
}

TEST_F(DispatcherTest, StsSessionCredentialsWorkForKms) {
  Signer session = assume_role();
  EXPECT_EQ(session.akid.substr(0, 4), "ASIA");
  ok_json(send(kms_request("CreateKey"), session));

  Outcome who = send(sts_request("Action=GetCallerIdentity&Version=2011-06-15"), session);
  EXPECT_EQ(xml_value(who.reply.body, "Arn"),
            "arn:aws:sts::111122223333:assumed-role/kmsfs/test-session");
  EXPECT_EQ(xml_value(who.reply.body, "Account"), kAccount);

  Signer no_token = session;
  no_token.token.clear();
  expect_kms_error(send(kms_request("ListKeys"), no_token), 400, "UnrecognizedClientException");
  Signer wrong_token = session;
  wrong_token.token[0] ^= 1;
  expect_kms_error(send(kms_request("ListKeys"), wrong_token), 400, "UnrecognizedClientException");
}

TEST_F(DispatcherTest, ExpiredSessionsAreRefusedAsExpired) {
  IssuedSession old = creds_.issue_session({"arn", "id"}, 900, now_seconds() - 1000);
  Signer s;
  s.akid = old.access_key_id;
  s.secret = old.secret;
  s.token = old.session_token;
  expect_kms_error(send(kms_request("ListKeys"), s), 400, "ExpiredTokenException",
                   "The security token included in the request is expired");
  Outcome sts = send(sts_request("Action=GetCallerIdentity&Version=2011-06-15"), s);
  EXPECT_EQ(sts.reply.status, 400);
  EXPECT_EQ(xml_value(sts.reply.body, "Code"), "ExpiredToken");
}

TEST_F(DispatcherTest, StsAnswersInXml) {
  Outcome o = send(sts_request("Action=AssumeRole&Version=2011-06-15&DurationSeconds=900&"
                               "RoleArn=arn:aws:iam::111122223333:role/a/b/R&RoleSessionName=s1"));
  ASSERT_EQ(o.reply.status, 200) << o.reply.body;
  EXPECT_EQ(o.reply.content_type, "text/xml");
  EXPECT_NE(o.reply.body.find("<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"),
            std::string::npos);
  EXPECT_EQ(xml_value(o.reply.body, "RequestId"), o.reply.request_id);
  EXPECT_EQ(xml_value(o.reply.body, "Arn"), "arn:aws:sts::111122223333:assumed-role/R/s1");
  std::string expiration = xml_value(o.reply.body, "Expiration");
  EXPECT_EQ(expiration.size(), 20u) << expiration;

  Signer wrong;
  wrong.secret = "nope";
  Outcome denied = send(sts_request("Action=GetCallerIdentity&Version=2011-06-15"), wrong);
  EXPECT_EQ(denied.reply.status, 403);
  EXPECT_EQ(xml_value(denied.reply.body, "Code"), "SignatureDoesNotMatch");
  EXPECT_EQ(xml_value(denied.reply.body, "Type"), "Sender");
  EXPECT_EQ(denied.result, "SignatureDoesNotMatch");

  for (const char* bad : {"Action=AssumeRole&Version=2011-06-15&RoleArn=nope&RoleSessionName=s1",
                          "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::111122223333:"
                          "role/R&RoleSessionName=s1&DurationSeconds=60"}) {
    Outcome v = send(sts_request(bad));
    EXPECT_EQ(v.reply.status, 400) << bad;
    EXPECT_EQ(xml_value(v.reply.body, "Code"), "ValidationError") << bad;
  }
  Outcome unknown = send(sts_request("Action=GetSessionToken&Version=2011-06-15"));
  EXPECT_EQ(xml_value(unknown.reply.body, "Code"), "InvalidAction");
}

TEST_F(DispatcherTest, WebIdentityIsUnsigned) {
  auto jwt = [](const json& claims) {
    std::string p = base64_encode(as_bytes(claims.dump()));
    for (char& c : p) c = c == '+' ? '-' : c == '/' ? '_' : c;
    while (!p.empty() && p.back() == '=') p.pop_back();
    return "eyJhbGciOiJSUzI1NiJ9." + p + ".c2ln";
  };
  std::string form = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn:aws:iam::"
                     "111122223333:role/web&RoleSessionName=pod&WebIdentityToken=";
  Outcome o = dispatcher_.handle(sts_request(
      form + jwt({{"sub", "system:serviceaccount:ns:sa"}, {"aud", {"sts.amazonaws.com"}},
                  {"iss", "https://oidc.example"}, {"exp", now_seconds() + 600}})));
  ASSERT_EQ(o.reply.status, 200) << o.reply.body;
  EXPECT_EQ(xml_value(o.reply.body, "SubjectFromWebIdentityToken"), "system:serviceaccount:ns:sa");
  EXPECT_EQ(xml_value(o.reply.body, "Audience"), "sts.amazonaws.com");
  Signer s;
  s.akid = xml_value(o.reply.body, "AccessKeyId");
  s.secret = xml_value(o.reply.body, "SecretAccessKey");
  s.token = xml_value(o.reply.body, "SessionToken");
  ok_json(send(kms_request("ListKeys"), s));

  Outcome expired = dispatcher_.handle(sts_request(form + jwt({{"exp", now_seconds() - 1}})));
  EXPECT_EQ(xml_value(expired.reply.body, "Code"), "ExpiredTokenException");
  Outcome garbage = dispatcher_.handle(sts_request(form + "not-a-jwt"));
  EXPECT_EQ(xml_value(garbage.reply.body, "Code"), "InvalidIdentityToken");
}

TEST_F(DispatcherTest, FaultsAndCounters) {
  faults_.set(FaultConfig{.throttle_rate = 1, .operations = {"Encrypt", "ListKeys"}, .count = 2});
  expect_kms_error(send(kms_request("ListKeys")), 400, "ThrottlingException", "Rate exceeded");
  ok_json(send(kms_request("CreateKey")));  // not a faulted operation
  expect_kms_error(send(kms_request("ListKeys")), 400, "ThrottlingException");
  ok_json(send(kms_request("ListKeys")));  // count spent: the configuration cleared itself
  EXPECT_EQ(faults_.get().throttle_rate, 0);

  faults_.set(FaultConfig{.error_rate = 1});
  expect_kms_error(send(kms_request("ListKeys")), 500, "KMSInternalException");
  Outcome sts = send(sts_request("Action=GetCallerIdentity&Version=2011-06-15"));
  EXPECT_EQ(sts.reply.status, 500);
  EXPECT_EQ(xml_value(sts.reply.body, "Code"), "InternalFailure");
  EXPECT_EQ(xml_value(sts.reply.body, "Type"), "Receiver");

  faults_.set(FaultConfig{.drop_rate = 1});
  Outcome dropped = send(kms_request("CreateKey"));
  EXPECT_TRUE(dropped.drop);
  EXPECT_EQ(dropped.reply.status, 200);  // it ran; the answer is what gets lost
  faults_.set({});

  json stats = stats_.to_json();
  EXPECT_EQ(stats["operations"]["ListKeys"]["ThrottlingException"], 2);
  EXPECT_EQ(stats["operations"]["ListKeys"]["ok"], 1);
  EXPECT_EQ(stats["operations"]["ListKeys"]["KMSInternalException"], 1);
  EXPECT_EQ(stats["operations"]["CreateKey"]["ok"], 1);
  EXPECT_EQ(stats["operations"]["CreateKey"]["ConnectionDropped"], 1);
  EXPECT_EQ(stats["operations"]["GetCallerIdentity"]["InternalFailure"], 1);
  EXPECT_EQ(stats["total"], 7);
}

// Answer quirks: what a client meets from something that is not quite KMS.
TEST_F(DispatcherTest, QuirksServeTolerableAndBrokenAnswers) {
  json key = ok_json(send(kms_request("CreateKey")));
  const std::string id = key["KeyMetadata"]["KeyId"];

  faults_.set(FaultConfig{.quirk = Quirk::kNulls});
  json gen = ok_json(send(kms_request("GenerateDataKey", {{"KeyId", id}, {"KeySpec", "AES_256"}})));
  EXPECT_TRUE(gen["EncryptionAlgorithm"].is_null());
  EXPECT_TRUE(gen["KmsLocalUnknownMember"].is_object());
  EXPECT_TRUE(gen["Plaintext"].is_string());
  json desc = ok_json(send(kms_request("DescribeKey", {{"KeyId", id}})));
  EXPECT_TRUE(desc["KeyMetadata"]["Enabled"].is_null());
  EXPECT_TRUE(desc["KeyMetadata"]["Description"].is_null());
  EXPECT_EQ(desc["KeyMetadata"]["KeyState"], "Enabled");

  faults_.set(FaultConfig{.operations = {"Decrypt", "DescribeKey"}, .quirk = Quirk::kMissingField});
  json dec = ok_json(send(kms_request("Decrypt", {{"KeyId", id}, {"CiphertextBlob", gen["CiphertextBlob"]}})));
  EXPECT_FALSE(dec.contains("Plaintext"));
  EXPECT_TRUE(dec.contains("KeyId"));
  desc = ok_json(send(kms_request("DescribeKey", {{"KeyId", id}})));
  EXPECT_FALSE(desc["KeyMetadata"].contains("Arn"));
  gen = ok_json(send(kms_request("GenerateDataKey", {{"KeyId", id}, {"KeySpec", "AES_256"}})));
  EXPECT_TRUE(gen.contains("CiphertextBlob"));  // not a quirked operation

  faults_.set(FaultConfig{.quirk = Quirk::kHtmlError, .quirk_status = 503});
  Outcome html = send(kms_request("Decrypt", {{"KeyId", id}, {"CiphertextBlob", gen["CiphertextBlob"]}}));
  EXPECT_EQ(html.reply.status, 503);
  EXPECT_EQ(html.reply.content_type, "text/html");
  EXPECT_NE(html.reply.body.find("<html>"), std::string::npos);
  EXPECT_EQ(html.result, "QuirkHtmlError");
  // STS is never quirked.
  Outcome sts = send(sts_request("Action=GetCallerIdentity&Version=2011-06-15"));
  EXPECT_EQ(sts.reply.status, 200);

  faults_.set(FaultConfig{.count = 1, .quirk = Quirk::kXmlError});
  Outcome xml = send(kms_request("ListKeys"));
  EXPECT_EQ(xml.reply.status, 403);
  EXPECT_EQ(xml.reply.content_type, "application/xml");
  EXPECT_NE(xml.reply.body.find("<Error>"), std::string::npos);
  ok_json(send(kms_request("ListKeys")));  // count spent
  EXPECT_EQ(faults_.get().quirk, Quirk::kNone);

  // The JSON form (POST /__admin/faults) and its checks.
  Result<FaultConfig> c = fault_config_from_json(json{{"quirk", "html_error"}, {"quirk_status", 502}});
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->quirk, Quirk::kHtmlError);
  EXPECT_EQ(to_json(*c)["quirk"], "html_error");
  EXPECT_EQ(fault_config_from_json(to_json(*c))->quirk_status, 502);
  EXPECT_FALSE(fault_config_from_json(json{{"quirk", "sometimes"}}).ok());
  EXPECT_FALSE(fault_config_from_json(json{{"quirk", 1}}).ok());
  EXPECT_FALSE(fault_config_from_json(json{{"quirk_status", 200}}).ok());
  EXPECT_FALSE(fault_config_from_json(json{{"quirk_status", "502"}}).ok());
}

TEST_F(DispatcherTest, JournalNamesKeyContextAndCallerButNoKeyMaterial) {
  json key = ok_json(send(kms_request("CreateKey")));
  const std::string id = key["KeyMetadata"]["KeyId"];
  json enc = ok_json(send(kms_request(
      "Encrypt", {{"KeyId", id}, {"Plaintext", "c2VjcmV0"}, {"EncryptionContext", {{"fs", "42"}}}})));
  const std::string blob = enc["CiphertextBlob"];
  Signer wrong;
  wrong.secret = "not-the-secret";
  send(kms_request("Decrypt", {{"KeyId", id}, {"CiphertextBlob", blob}, {"EncryptionContext", {{"fs", "42"}}}}),
       wrong);
  json j = stats_.journal();
  ASSERT_EQ(j.size(), 3u) << j;
  EXPECT_EQ(j[1]["operation"], "Encrypt");
  EXPECT_EQ(j[1]["result"], "ok");
  EXPECT_EQ(j[1]["KeyId"], id);
  EXPECT_EQ(j[1]["EncryptionContext"], (json{{"fs", "42"}}));
  EXPECT_NE(j[1]["caller"].get<std::string>().find(":user/"), std::string::npos) << j[1];
  EXPECT_EQ(j[2]["operation"], "Decrypt");
  EXPECT_EQ(j[2]["result"], "InvalidSignatureException");
  EXPECT_FALSE(j[2].contains("caller"));  // not authenticated: nobody to name
  EXPECT_EQ(j.dump().find("c2VjcmV0"), std::string::npos);
  EXPECT_EQ(j.dump().find(blob), std::string::npos);
  stats_.reset();
  EXPECT_TRUE(stats_.journal().empty());
}

TEST_F(DispatcherTest, NeitherKmsNorSts) {
  aws::HttpRequest r = sts_request("Foo=bar");
  Outcome o = send(r, {}, "kms");
  expect_kms_error(o, 400, "UnknownOperationException");
  expect_kms_error(send(kms_request("CreateGrant")), 400, "UnknownOperationException");
  EXPECT_EQ(stats_.to_json()["operations"]["(unknown)"]["UnknownOperationException"], 1);
}

TEST(Form, Decoding) {
  auto f = parse_form("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam&Name=a+b%2Bc&Empty=&Flag&&");
  EXPECT_EQ(f["Action"], "AssumeRole");
  EXPECT_EQ(f["RoleArn"], "arn:aws:iam");
  EXPECT_EQ(f["Name"], "a b+c");
  EXPECT_EQ(f["Empty"], "");
  EXPECT_TRUE(f.count("Flag"));
  EXPECT_EQ(f.size(), 5u);
}

TEST(Admin, Endpoints) {
  Faults faults;
  Stats stats;
  stats.record("Encrypt", "ok", {{"KeyId", "k1"}});
  HttpReply r = handle_admin("GET", "/__admin/stats", "", faults, stats);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["operations"]["Encrypt"]["ok"], 1);
  r = handle_admin("GET", "/__admin/requests", "", faults, stats);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body), json::parse(R"([{"KeyId":"k1","operation":"Encrypt","result":"ok"}])"));
  EXPECT_EQ(json::parse(handle_admin("DELETE", "/__admin/stats", "", faults, stats).body)["total"], 0);

  r = handle_admin("POST", "/__admin/faults", R"({"throttle_rate":0.25,"operations":["Decrypt"]})",
                   faults, stats);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(faults.get().throttle_rate, 0.25);
  EXPECT_EQ(json::parse(handle_admin("GET", "/__admin/faults", "", faults, stats).body)["operations"][0],
            "Decrypt");
  for (const char* bad : {"{", R"({"throttle_rate":2})", R"({"throttle_rate":0.6,"drop_rate":0.6})",
                          R"({"latency":5})", R"({"count":0})", R"({"operations":"Decrypt"})"}) {
    EXPECT_EQ(handle_admin("POST", "/__admin/faults", bad, faults, stats).status, 400) << bad;
  }
  EXPECT_EQ(faults.get().throttle_rate, 0.25);  // a refused update changes nothing
  handle_admin("DELETE", "/__admin/faults", "", faults, stats);
  EXPECT_EQ(faults.get().throttle_rate, 0);
  EXPECT_EQ(handle_admin("GET", "/__admin/health", "", faults, stats).status, 200);
  EXPECT_EQ(handle_admin("GET", "/__admin/nope", "", faults, stats).status, 404);
  EXPECT_EQ(handle_admin("PUT", "/__admin/stats", "", faults, stats).status, 405);
}

TEST(Faults, DrawPartitionsOneUniformDraw) {
  Faults f(FaultConfig{.latency_ms = 5, .throttle_rate = 0.2, .error_rate = 0.3, .drop_rate = 0.1});
  EXPECT_EQ(f.draw("Encrypt", 0.05).kind, FaultKind::kDrop);
  EXPECT_EQ(f.draw("Encrypt", 0.15).kind, FaultKind::kServerError);
  EXPECT_EQ(f.draw("Encrypt", 0.45).kind, FaultKind::kThrottle);
  FaultDecision none = f.draw("Encrypt", 0.7);
  EXPECT_EQ(none.kind, FaultKind::kNone);
  EXPECT_EQ(none.latency_ms, 5);
}

}  // namespace
}  // namespace kmsfs::kms_local
