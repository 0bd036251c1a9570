// What the KMS client does with key names and answers it must not trust: key references
// come from file headers in the backing directory, which an attacker may write. Strict key
// ARNs, the endpoint host built only from a checked region, region confinement (zero
// requests for a key in a region the operator did not allow), http:// only to loopback,
// no exception from a key id JSON cannot carry, and answers that are not KMS's (a proxy's
// HTML or XML page) classified by status without dumping them.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "fake_transport.h"
#include "keys/aws/aws_kms_provider.h"
#include "keys/aws/kms_arn.h"
#include "keys/aws/kms_client.h"
#include "keys/aws/url.h"

namespace kmsfs::aws {
namespace {

using std::chrono::milliseconds;
using testing::FakeTransport;

const std::string kArn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const std::string kKey32B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

EncryptionContext ctx() {
  EncryptionContext c;
  EXPECT_TRUE(c.set("kmsfs:fs-id", "00112233445566778899aabbccddeeff").ok());
  return c;
}

std::shared_ptr<KmsClient> client_over(std::shared_ptr<HttpTransport> http, std::string region,
                                       std::string endpoint = "", bool insecure = false) {
  KmsClientOptions o;
  o.region = std::move(region);
  o.endpoint = std::move(endpoint);
  o.allow_insecure_endpoint = insecure;
  o.random = [] { return 0.0; };
  o.sleep = [](milliseconds) {};
  return std::make_shared<KmsClient>(
      std::move(http), make_static_provider(Credentials::make("AKIDTEST", "sekrit")), std::move(o));
}

TEST(KmsArn, AcceptsTheShapesKmsUses) {
  struct Case {
    const char* arn;
    const char* partition;
    const char* region;
    bool alias;
    const char* resource;
  };
  for (const Case& c : {
           Case{"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "aws",
                "us-east-1", false, "1234abcd-12ab-34cd-56ef-1234567890ab"},
           Case{"arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", "aws",
                "eu-west-1", false, "mrk-1234abcd12ab34cd56ef1234567890ab"},
           Case{"arn:aws:kms:ap-southeast-2:111122223333:alias/team/kmsfs_prod-1", "aws",
                "ap-southeast-2", true, "team/kmsfs_prod-1"},
           Case{"arn:aws-cn:kms:cn-northwest-1:111122223333:key/k", "aws-cn", "cn-northwest-1", false, "k"},
           Case{"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/k", "aws-us-gov", "us-gov-west-1", false, "k"},
           Case{"arn:aws-iso:kms:us-iso-east-1:111122223333:key/k", "aws-iso", "us-iso-east-1", false, "k"},
           Case{"arn:aws-iso-b:kms:us-isob-east-1:111122223333:key/k", "aws-iso-b", "us-isob-east-1", false, "k"},
       }) {
    Result<KmsArn> a = parse_kms_arn(c.arn);
    ASSERT_TRUE(a.ok()) << c.arn << ": " << a.status().to_string();
    EXPECT_EQ(a->partition, c.partition);
    EXPECT_EQ(a->region, c.region);
    EXPECT_EQ(a->account, "111122223333");
    EXPECT_EQ(a->alias, c.alias);
    EXPECT_EQ(a->resource, c.resource);
    EXPECT_TRUE(check_kms_key_name(c.arn).ok()) << c.arn;
  }
}

TEST(KmsArn, RefusesEverythingElse) {
  const std::string long_id(200, 'a');
  const std::string overlong = "arn:aws:kms:us-east-1:111122223333:alias/" + std::string(600, 'a');
  for (const std::string& bad : {
           // Attacker strings: a host of their choosing in the region field.
           std::string("arn:aws:kms:evil.com/x:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1@evil:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1.evil.com:111122223333:key/k"),
           std::string("arn:aws:kms:evil.com#:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1/..:111122223333:key/k"),
           std::string("arn:aws:kms:127.0.0.1:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/k@evil.com"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/k/../x"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/k:extra"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/k\n2024 fake log line"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/k\0x", 41),
           // Unicode: look-alike dashes and letters, and bytes that are not UTF-8.
           std::string("arn:aws:kms:us\u2010east-1:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/\u00e9"),
           std::string("arn:aws:kms:us-\xd0\xb5" "ast-1:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/\xff"),
           // Structure.
           std::string("arn:aws:kms:us-east-1:11112222333:key/k"),     // 11 digits
           std::string("arn:aws:kms:us-east-1:1111222233334:key/k"),   // 13
           std::string("arn:aws:kms:us-east-1:11112222333a:key/k"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/"),
           std::string("arn:aws:kms:us-east-1:111122223333:alias/"),
           std::string("arn:aws:kms:us-east-1:111122223333:grant/k"),
           std::string("arn:aws:kms:us-east-1:111122223333:key/" + long_id),
           overlong,
           std::string("arn:aws:s3:us-east-1:111122223333:key/k"),
           std::string("arn:aws:kms::111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1::key/k"),
           std::string("arn:aws:kms:us-east-1:111122223333"),
           std::string("arn:aws:kms"),
           std::string("ARN:aws:kms:us-east-1:111122223333:key/k"),
           std::string("arn:evil:kms:us-east-1:111122223333:key/k"),
           std::string("arn::kms:us-east-1:111122223333:key/k"),
           // Region shape and partition consistency.
           std::string("arn:aws:kms:US-EAST-1:111122223333:key/k"),
           std::string("arn:aws:kms:us-east:111122223333:key/k"),
           std::string("arn:aws:kms:us--east-1:111122223333:key/k"),
           std::string("arn:aws:kms:u-east-1:111122223333:key/k"),
           std::string("arn:aws:kms:use-ast-1:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1x:111122223333:key/k"),
           std::string("arn:aws:kms:us-east-1-:111122223333:key/k"),
           std::string("arn:aws:kms:us-" + std::string(40, 'e') + "-1:111122223333:key/k"),
           std::string("arn:aws:kms:cn-north-1:111122223333:key/k"),         // cn- outside aws-cn
           std::string("arn:aws-cn:kms:us-east-1:111122223333:key/k"),      // aws-cn outside cn-
           std::string("arn:aws:kms:us-gov-west-1:111122223333:key/k"),
           std::string("arn:aws-us-gov:kms:us-west-1:111122223333:key/k"),
           std::string("arn:aws:kms:us-iso-east-1:111122223333:key/k"),
           std::string("arn:aws-iso:kms:us-isob-east-1:111122223333:key/k"),
           std::string("arn:aws-iso-b:kms:us-iso-east-1:111122223333:key/k"),
       }) {
    Result<KmsArn> a = parse_kms_arn(bad);
    EXPECT_FALSE(a.ok()) << bad;
    EXPECT_EQ(a.status().code(), Code::kInvalidArgument) << bad;
    // The refusal never repeats the refused text (it may be crafted for the logs).
    if (bad.size() > 20) {
      EXPECT_EQ(a.status().message().find(bad.substr(12)), std::string::npos);
    }
    EXPECT_FALSE(check_kms_key_name(bad).ok()) << bad;
  }
}

TEST(KmsArn, KeyIdsAliasesRegionsEndpoints) {
  for (const char* ok : {"1234abcd-12ab-34cd-56ef-1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab",
                         "alias/kmsfs", "alias/aws/ebs", "alias/a_b-C/9"}) {
    EXPECT_TRUE(check_kms_key_name(ok).ok()) << ok;
  }
  for (const char* bad : {"", "alias/", "alias/a b", "alias/a.b", "key/k", "a.b", "k k", "\xc3\xa9",
                          "alias/\xff", "k\r\n"}) {
    EXPECT_EQ(check_kms_key_name(bad).code(), Code::kInvalidArgument) << bad;
  }
  for (const char* r : {"us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-10", "il-central-1"}) {
    EXPECT_TRUE(valid_region(r)) << r;
  }
  for (const char* r : {"", "us", "us-1", "us-east", "useast-1", "us-east-1.", "us_east-1", "us-east-1/x",
                        "evil.com", "us-east-1 ", "-us-east-1"}) {
    EXPECT_FALSE(valid_region(r)) << r;
  }
  EXPECT_EQ(*default_kms_endpoint("us-gov-west-1"), "https://kms.us-gov-west-1.amazonaws.com");
  EXPECT_EQ(*default_kms_endpoint("cn-north-1"), "https://kms.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(*default_kms_endpoint("us-iso-east-1"), "https://kms.us-iso-east-1.c2s.ic.gov");
  EXPECT_EQ(*default_kms_endpoint("us-isob-east-1"), "https://kms.us-isob-east-1.sc2s.sgov.gov");
  EXPECT_FALSE(default_kms_endpoint("evil.com/x").ok());
  EXPECT_FALSE(default_kms_endpoint("us-east-1@evil").ok());
}

// Whatever the bytes: no exception, and an accepted ARN yields an endpoint whose host is
// kms.REGION.SUFFIX with only [a-z0-9.-] in it. Mutations of a valid ARN (one character
// replaced by any byte) are the interesting neighbourhood.
RC_GTEST_PROP(KmsArnProperty, AcceptedArnsGiveOnlyPlainHostNames, ()) {
  const std::string base = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab";
  std::string s = *rc::gen::oneOf(
      rc::gen::arbitrary<std::string>(),
      rc::gen::map(rc::gen::pair(rc::gen::inRange<size_t>(0, base.size()), rc::gen::arbitrary<char>()),
                   [&](const std::pair<size_t, char>& m) {
                     std::string t = base;
                     t[m.first] = m.second;
                     return t;
                   }));
  Result<KmsArn> a = parse_kms_arn(s);
  RC_ASSERT(check_kms_key_name(s).ok() == a.ok() || !s.starts_with("arn:"));
  if (!a.ok()) return;
  Result<std::string> e = default_kms_endpoint(a->region);
  RC_ASSERT(e.ok());
  const std::string host = e->substr(std::string("https://").size());
  RC_ASSERT(host.starts_with("kms." + a->region + "."));
  for (char c : host) RC_ASSERT((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-');
  RC_ASSERT(s == "arn:" + a->partition + ":kms:" + a->region + ":" + a->account + ":" +
                     (a->alias ? "alias/" : "key/") + a->resource);
}

// --- Region confinement ---

TEST(KmsTrust, KeyArnInAnotherRegionIsRefusedWithoutARequest) {
  auto http = std::make_shared<FakeTransport>();
  auto client = client_over(http, "us-east-1");
  for (int op = 0; op < 5; ++op) {
    Status s;
    switch (op) {
      case 0: s = client->decrypt(kArn, Bytes{1}, ctx()).status(); break;
      case 1: s = client->generate_data_key(kArn, ctx()).status(); break;
      case 2: s = client->encrypt(kArn, Bytes{1}, ctx()).status(); break;
      case 3: s = client->describe_key(kArn).status(); break;
      case 4:
        s = client->reencrypt("arn:aws:kms:us-east-1:111122223333:key/k", Bytes{1}, ctx(), kArn, ctx())
                .status();
        break;
    }
    EXPECT_EQ(s.code(), Code::kPermissionDenied) << op;
    EXPECT_NE(s.message().find("region eu-west-1"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("us-east-1"), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);
  }
  // The source key of a ReEncrypt is checked too.
  EXPECT_EQ(client->reencrypt(kArn, Bytes{1}, ctx(), "arn:aws:kms:us-east-1:111122223333:key/k", ctx())
                .status()
                .code(),
            Code::kPermissionDenied);
  // Malformed ARNs, with a host in them, are refused the same way.
  for (const char* evil : {"arn:aws:kms:evil.com/x:111122223333:key/k",
                           "arn:aws:kms:us-east-1@evil:111122223333:key/k"}) {
    EXPECT_EQ(client->decrypt(evil, Bytes{1}, ctx()).status().code(), Code::kInvalidArgument);
  }
  EXPECT_TRUE(http->calls.empty());

  // Once the operator names a key in that region (the layer above calls allow_region or
  // allow_key_arn), requests go to that region's default endpoint.
  EXPECT_FALSE(client->allow_region("evil.com/x").ok());
  EXPECT_FALSE(client->allow_key_arn("arn:aws:kms:evil.com/x:111122223333:key/k").ok());
  ASSERT_TRUE(client->allow_region("eu-west-1").ok());
  EXPECT_EQ(client->allowed_regions(), (std::vector<std::string>{"us-east-1", "eu-west-1"}));
  http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 + R"("})");
  ASSERT_TRUE(client->decrypt(kArn, Bytes{1}, ctx()).ok());
  ASSERT_EQ(http->calls.size(), 1u);
  EXPECT_EQ(http->calls[0].url, "https://kms.eu-west-1.amazonaws.com/");

  // Through the options too, as the provider's creator would pass the named keys' regions.
  auto http2 = std::make_shared<FakeTransport>();
  KmsClientOptions o;
  o.region = "us-east-1";
  o.allowed_regions = {"eu-west-1", "not a region"};
  KmsClient c2(http2, make_static_provider(Credentials::make("A", "s")), std::move(o));
  EXPECT_EQ(c2.allowed_regions(), (std::vector<std::string>{"us-east-1", "eu-west-1"}));
}

// The strongest form: a real socket on 127.0.0.1, a real libcurl transport, the endpoint
// the operator configured. A refused key makes no connection at all.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Listener() {
    for (int c : accepted_) ::close(c);
    ::close(fd_);
  }
  // Connections made so far (accepted and kept open, so the count only grows).
  int connections() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) break;
      accepted_.push_back(c);
    }
    return static_cast<int>(accepted_.size());
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> accepted_;
};

TEST(KmsTrust, RefusedKeyMakesZeroConnections) {
  Listener l;
  CurlOptions co;
  co.connect_timeout = milliseconds(500);
  co.timeout = milliseconds(300);  // the listener never answers
  std::shared_ptr<HttpTransport> curl = make_curl_transport(co);
  auto client = client_over(curl, "us-east-1", l.endpoint());

  Status s = client->decrypt(kArn, Bytes{1}, ctx()).status();  // eu-west-1: not allowed
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
  s = client->decrypt("arn:aws:kms:evil.com/x:111122223333:key/k", Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.to_string();
  EXPECT_EQ(l.connections(), 0);

  // The control: a key in the configured region does reach the listener.
  s = client->decrypt("arn:aws:kms:us-east-1:111122223333:key/k", Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.to_string();
  EXPECT_GE(l.connections(), 1);
}

// --- Endpoint scheme ---

TEST(KmsTrust, PlainHttpOnlyToLoopback) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost", "LocalHost", "localhost."}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host : {"128.0.0.1", "127.0.0.1.evil.com", "localhost.evil.com", "10.0.0.1", "::2",
                           "::ffff:8.8.8.8", "0.0.0.0", "127.1", "evil.com", ""}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
  for (const char* ok : {"http://127.0.0.1:4566", "http://[::1]:8080/kms", "http://localhost:1",
                         "https://kms.example.com", "https://10.0.0.1:443"}) {
    Result<Url> u = parse_url(ok);
    ASSERT_TRUE(u.ok()) << ok;
    EXPECT_TRUE(check_endpoint_security(*u, false).ok()) << ok;
  }
  for (const char* bad : {"http://kms.example.com", "http://10.0.0.1:4566", "http://127.0.0.1.nip.io",
                          "http://[::2]:80"}) {
    Result<Url> u = parse_url(bad);
    ASSERT_TRUE(u.ok()) << bad;
    Status s = check_endpoint_security(*u, false);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("KMSFS_KMS_ALLOW_INSECURE_ENDPOINT"), std::string::npos);
    EXPECT_TRUE(check_endpoint_security(*u, true).ok()) << bad;
  }

  // The client refuses before sending; the opt-in lets it through.
  auto http = std::make_shared<FakeTransport>();
  auto client = client_over(http, "eu-west-1", "http://kms.internal.example:4566");
  EXPECT_EQ(client->check_endpoint().code(), Code::kInvalidArgument);
  Status s = client->decrypt(kArn, Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("not loopback"), std::string::npos) << s.message();
  EXPECT_TRUE(http->calls.empty());
  auto insecure = client_over(http, "eu-west-1", "http://kms.internal.example:4566", true);
  EXPECT_TRUE(insecure->check_endpoint().ok());
  http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 + R"("})");
  EXPECT_TRUE(insecure->decrypt(kArn, Bytes{1}, ctx()).ok());
  EXPECT_EQ(http->calls.size(), 1u);

  // The provider reads the opt-in from the environment and refuses at creation otherwise.
  Env env;
  env.vars = {{"HOME", "/nonexistent"}, {"AWS_REGION", "eu-west-1"},
              {"AWS_ENDPOINT_URL_KMS", "http://kms.internal.example:4566"}};
  EXPECT_FALSE(resolve_settings({}, env)->allow_insecure_endpoint);
  auto p = AwsKmsProvider::create({}, env);
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  env.vars["KMSFS_KMS_ALLOW_INSECURE_ENDPOINT"] = "1";
  EXPECT_TRUE(resolve_settings({}, env)->allow_insecure_endpoint);
  EXPECT_TRUE(AwsKmsProvider::create({}, env).ok());
  env.vars["AWS_ENDPOINT_URL_KMS"] = "http://127.0.0.1:4566";
  env.vars.erase("KMSFS_KMS_ALLOW_INSECURE_ENDPOINT");
  EXPECT_TRUE(AwsKmsProvider::create({}, env).ok());
}

// --- Key ids and contexts JSON cannot carry ---

TEST(KmsTrust, NonUtf8KeyIdIsAStatusNotAnException) {
  auto http = std::make_shared<FakeTransport>();
  auto client = client_over(http, "us-east-1");
  for (const std::string& id : {std::string("\xff\xfe"), std::string("alias/\xc3"),
                                 std::string("arn:aws:kms:us-east-1:111122223333:key/\xe2\x82"),
                                 std::string("k\n")}) {
    EXPECT_NO_THROW({
      EXPECT_FALSE(client->decrypt(id, Bytes{1}, ctx()).ok());
      EXPECT_FALSE(client->generate_data_key(id, ctx()).ok());
      EXPECT_FALSE(client->describe_key(id).ok());
      EXPECT_FALSE(client->encrypt(id, Bytes{1}, ctx()).ok());
    });
  }
  EXPECT_TRUE(http->calls.empty());
  AwsKmsProvider p(client);
  EXPECT_NO_THROW({
    EXPECT_FALSE(p.unwrap(KeyRef{ProviderId::kAwsKms, "\xff", 0}, Bytes{1}, ctx()).ok());
    EXPECT_FALSE(p.resolve("alias/\xff").ok());
  });
  EXPECT_TRUE(http->calls.empty());
}

// --- Answers that are not KMS's ---

TEST(KmsTrust, ErrorPagesAreClassifiedByStatusAndNotDumped) {
  const std::string html = "<html><head><title>502 Bad Gateway</title></head><body>secret-internal-host</body></html>";
  const std::string xml = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>secret-internal-host</Message></Error>";
  struct Case {
    long status;
    std::string body;
    Code code;
    size_t attempts;
  };
  for (const Case& c : {Case{502, html, Code::kUnavailable, 3}, Case{503, xml, Code::kUnavailable, 3},
                        Case{429, "Too Many Requests", Code::kUnavailable, 3},
                        Case{504, "", Code::kUnavailable, 3}, Case{403, xml, Code::kPermissionDenied, 1},
                        Case{404, html, Code::kInvalidArgument, 1}, Case{400, xml, Code::kInvalidArgument, 1}}) {
    auto http = std::make_shared<FakeTransport>();
    auto client = client_over(http, "eu-west-1");
    for (size_t i = 0; i < c.attempts; ++i) http->answer(c.status, c.body, {{"content-type", "text/html"}});
    Status s = client->decrypt(kArn, Bytes{1}, ctx()).status();
    EXPECT_EQ(s.code(), c.code) << c.status << " " << s.message();
    EXPECT_EQ(http->calls.size(), c.attempts) << c.status;
    EXPECT_NE(s.message().find("HTTP " + std::to_string(c.status)), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find("secret-internal-host"), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('<'), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
    if (!c.body.empty()) {
      EXPECT_NE(s.message().find("not a KMS answer"), std::string::npos) << s.message();
    }
  }
}

TEST(KmsTrust, OkAnswerMissingARequiredFieldIsAClearError) {
  auto http = std::make_shared<FakeTransport>();
  auto client = client_over(http, "eu-west-1");
  http->answer(200, R"({"KeyId":")" + kArn + R"("})");
  Status s = client->decrypt(kArn, Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_NE(s.message().find("KMS Decrypt"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("Plaintext"), std::string::npos) << s.message();
  http->answer(200, R"({"Plaintext":")" + kKey32B64 + R"(","KeyId":null})");
  s = client->decrypt(kArn, Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_NE(s.message().find("KeyId"), std::string::npos) << s.message();
  http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 + R"("})");
  s = client->generate_data_key(kArn, ctx()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_NE(s.message().find("CiphertextBlob"), std::string::npos) << s.message();
  http->answer(200, "<html>captive portal</html>");
  s = client->encrypt(kArn, Bytes{1}, ctx()).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_EQ(s.message().find("captive"), std::string::npos) << s.message();
  // Nulls and unknown members where the SDKs accept them.
  http->answer(200, R"({"KeyId":")" + kArn + R"(","Plaintext":")" + kKey32B64 +
                        R"(","EncryptionAlgorithm":null,"KeyMaterialId":null,"Unknown":{"a":[1,2]}})");
  EXPECT_TRUE(client->decrypt(kArn, Bytes{1}, ctx()).ok());
}

TEST(KmsTrust, ProviderKeepsTheAskedKeyWhenTheAnswerNamesAnotherRegion) {
  auto http = std::make_shared<FakeTransport>();
  auto client = client_over(http, "eu-west-1");
  AwsKmsProvider p(client);
  const std::string elsewhere = "arn:aws:kms:us-west-2:111122223333:key/k";
  http->answer(200, R"({"KeyId":")" + elsewhere + R"(","CiphertextBlob":"AQID","Plaintext":")" + kKey32B64 + R"("})");
  Result<DataKey> dk = p.generate_data_key(KeyRef{ProviderId::kAwsKms, kArn, 0}, ctx());
  ASSERT_TRUE(dk.ok()) << dk.status().to_string();
  EXPECT_EQ(dk->ref.key_id, kArn);  // the header never records a region the client may not use
  http->answer(200, R"({"KeyMetadata":{"Arn":")" + elsewhere + R"(","KeyId":"k","Enabled":true,)"
                    R"("KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT"}})");
  EXPECT_EQ(p.resolve("alias/x").status().code(), Code::kCorrupt);
}

}  // namespace
}  // namespace kmsfs::aws
