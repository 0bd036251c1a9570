// The AWS settings as the SDKs document them: environment over profile, the endpoint
// precedence (flag, AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, the profile's services section,
// its endpoint_url), AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, FIPS and dual-stack endpoints per
// partition, and a one-line error naming the variable for every invalid value.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "keys/aws/aws_kms_provider.h"
#include "keys/aws/settings.h"

namespace kmsfs::aws {
namespace {

namespace fs = std::filesystem;

class Settings : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "kmsfs-settings-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    env_.vars = {{"HOME", "/nonexistent"}, {"AWS_CONFIG_FILE", dir_ + "/config"},
                 {"AWS_SHARED_CREDENTIALS_FILE", dir_ + "/credentials"}};
  }
  void TearDown() override { fs::remove_all(dir_); }
  void config(const std::string& text) { std::ofstream(dir_ + "/config") << text; }
  AwsSettings resolve(AwsKmsOptions o = {}) {
    Result<AwsSettings> s = resolve_settings(o, env_);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? *s : AwsSettings{};
  }
  std::string error(AwsKmsOptions o = {}) {
    Result<AwsSettings> s = resolve_settings(o, env_);
    EXPECT_FALSE(s.ok());
    if (s.ok()) return "";
    EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(s.status().message().find('\n'), std::string::npos) << s.status().message();
    return s.status().message();
  }
  std::string dir_;
  Env env_;
};

AwsKmsOptions flag(std::string endpoint) {
  AwsKmsOptions o;
  o.endpoint = std::move(endpoint);
  return o;
}

constexpr const char* kProfiles = R"(
[default]
region = eu-west-1
endpoint_url = https://profile.example
services = local
max_attempts = 7
retry_mode = adaptive

[profile plain]
region = us-east-2
endpoint_url = https://plain.example

[services local]
s3 =
  endpoint_url = https://s3.example
kms =
  endpoint_url = https://kms-services.example
  # a comment among sub-keys
)";

TEST_F(Settings, TheConfigReaderReadsIndentedSubKeys) {
  IniFile ini = parse_ini(kProfiles);
  EXPECT_EQ(ini["services local"]["kms.endpoint_url"], "https://kms-services.example");
  EXPECT_EQ(ini["services local"]["s3.endpoint_url"], "https://s3.example");
  EXPECT_EQ(ini["services local"]["kms"], "");
  EXPECT_EQ(ini["default"]["region"], "eu-west-1");
  // An indented line under a key that has a value is not a sub-setting.
  IniFile odd = parse_ini("[default]\nregion = eu-west-1\n  endpoint_url = https://x\n");
  EXPECT_EQ(odd["default"].count("endpoint_url"), 0u);
  EXPECT_EQ(odd["default"].count("region.endpoint_url"), 0u);
}

TEST_F(Settings, EndpointPrecedenceIsTheSdks) {
  config(kProfiles);
  // Nothing in the environment: the services section beats the profile's endpoint_url.
  EXPECT_EQ(resolve().endpoint, "https://kms-services.example");
  EXPECT_EQ(resolve().endpoint_source, "[services local] kms.endpoint_url");
  env_.vars["AWS_ENDPOINT_URL"] = "https://global-env.example";
  EXPECT_EQ(resolve().endpoint, "https://global-env.example");
  env_.vars["AWS_ENDPOINT_URL_KMS"] = "https://kms-env.example";
  EXPECT_EQ(resolve().endpoint, "https://kms-env.example");
  EXPECT_EQ(resolve(flag("https://flag.example")).endpoint, "https://flag.example");
  EXPECT_EQ(resolve(flag("https://flag.example")).endpoint_source, "--kms-endpoint");
  // A profile with no services section: its endpoint_url.
  env_.vars.erase("AWS_ENDPOINT_URL");
  env_.vars.erase("AWS_ENDPOINT_URL_KMS");
  env_.vars["AWS_PROFILE"] = "plain";
  EXPECT_EQ(resolve().endpoint, "https://plain.example");
  EXPECT_EQ(resolve().region, "us-east-2");
}

TEST_F(Settings, IgnoreConfiguredEndpointUrlsKeepsOnlyTheFlag) {
  config(kProfiles);
  env_.vars["AWS_ENDPOINT_URL_KMS"] = "https://kms-env.example";
  env_.vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true";
  EXPECT_EQ(resolve().endpoint, "");
  EXPECT_EQ(resolve(flag("https://flag.example")).endpoint, "https://flag.example");
  // The profile's own setting does it too; the environment wins over it.
  env_.vars.erase("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  config(std::string(kProfiles) + "\n[profile quiet]\nendpoint_url = https://q.example\n"
                                  "ignore_configured_endpoint_urls = true\n");
  env_.vars["AWS_PROFILE"] = "quiet";
  EXPECT_EQ(resolve().endpoint, "");
  env_.vars["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "false";
  EXPECT_EQ(resolve().endpoint, "https://kms-env.example");
}

TEST_F(Settings, RetrySettingsFromEnvironmentOverProfile) {
  EXPECT_EQ(resolve().retry.max_attempts, 3);
  EXPECT_FALSE(resolve().retry.adaptive);
  config(kProfiles);
  EXPECT_EQ(resolve().retry.max_attempts, 7);
  EXPECT_TRUE(resolve().retry.adaptive);
  env_.vars["AWS_MAX_ATTEMPTS"] = "2";
  env_.vars["AWS_RETRY_MODE"] = "standard";
  EXPECT_EQ(resolve().retry.max_attempts, 2);
  EXPECT_FALSE(resolve().retry.adaptive);
  env_.vars["AWS_RETRY_MODE"] = "legacy";  // accepted, run as standard
  EXPECT_FALSE(resolve().retry.adaptive);
  EXPECT_EQ(resolve().retry.mode, "legacy");
}

TEST_F(Settings, FipsAndDualstackEndpointsFollowThePartition) {
  auto endpoint = [](std::string_view region, bool fips, bool dual) {
    Result<std::string> e = default_kms_endpoint(region, {.fips = fips, .dualstack = dual});
    return e.ok() ? *e : "error: " + e.status().message();
  };
  EXPECT_EQ(endpoint("eu-west-1", false, false), "https://kms.eu-west-1.amazonaws.com");
  EXPECT_EQ(endpoint("eu-west-1", true, false), "https://kms-fips.eu-west-1.amazonaws.com");
  EXPECT_EQ(endpoint("eu-west-1", false, true), "https://kms.eu-west-1.api.aws");
  EXPECT_EQ(endpoint("eu-west-1", true, true), "https://kms-fips.eu-west-1.api.aws");
  EXPECT_EQ(endpoint("us-gov-west-1", true, false), "https://kms-fips.us-gov-west-1.amazonaws.com");
  EXPECT_EQ(endpoint("us-gov-west-1", false, true), "https://kms.us-gov-west-1.api.aws");
  EXPECT_EQ(endpoint("cn-north-1", false, false), "https://kms.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(endpoint("cn-north-1", false, true), "https://kms.cn-north-1.api.amazonwebservices.com.cn");
  EXPECT_EQ(endpoint("us-iso-east-1", true, false), "https://kms-fips.us-iso-east-1.c2s.ic.gov");
  EXPECT_NE(endpoint("us-iso-east-1", false, true).find("has no dual-stack endpoints"), std::string::npos);
  EXPECT_NE(endpoint("us-isob-east-1", false, true).find("aws-iso-b"), std::string::npos);

  env_.vars["AWS_USE_FIPS_ENDPOINT"] = "TRUE";
  env_.vars["AWS_USE_DUALSTACK_ENDPOINT"] = "true";
  EXPECT_TRUE(resolve().variant.fips);
  EXPECT_TRUE(resolve().variant.dualstack);
  config("[default]\nuse_fips_endpoint = true\n");
  env_.vars.erase("AWS_USE_FIPS_ENDPOINT");
  env_.vars.erase("AWS_USE_DUALSTACK_ENDPOINT");
  EXPECT_TRUE(resolve().variant.fips);
  EXPECT_FALSE(resolve().variant.dualstack);
  // A Region without dual-stack endpoints is refused when the provider is made.
  env_.vars["AWS_REGION"] = "us-isob-east-1";
  env_.vars["AWS_USE_DUALSTACK_ENDPOINT"] = "true";
  auto p = AwsKmsProvider::create({}, env_);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("AWS_USE_DUALSTACK_ENDPOINT"), std::string::npos);
}

TEST_F(Settings, InvalidValuesNameTheVariable) {
  struct Case {
    const char* var;
    const char* value;
  };
  for (Case c : {Case{"AWS_MAX_ATTEMPTS", "0"}, Case{"AWS_MAX_ATTEMPTS", "three"}, Case{"AWS_MAX_ATTEMPTS", "21"},
                 Case{"AWS_RETRY_MODE", "fast"}, Case{"AWS_USE_FIPS_ENDPOINT", "yes"},
                 Case{"AWS_USE_DUALSTACK_ENDPOINT", "1"}, Case{"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "on"}}) {
    env_.vars[c.var] = c.value;
    std::string e = error();
    EXPECT_NE(e.find(c.var), std::string::npos) << e;
    EXPECT_NE(e.find(c.value), std::string::npos) << e;
    env_.vars.erase(c.var);
  }
  config("[profile dev]\nmax_attempts = -1\n");
  env_.vars["AWS_PROFILE"] = "dev";
  EXPECT_EQ(error(), "max_attempts in AWS profile 'dev' must be a number from 1 to 20, not '-1'");
  config("[profile dev]\nservices = missing\n");
  EXPECT_NE(error().find("[services missing]"), std::string::npos);
}

TEST_F(Settings, AConfiguredEndpointStillPassesTheSecurityCheck) {
  // Operator-chosen, from the config file, and still plain http only to loopback.
  config("[default]\nregion = eu-west-1\nendpoint_url = http://kms.internal.example\n");
  auto p = AwsKmsProvider::create({}, env_);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("endpoint_url in AWS profile 'default'"), std::string::npos)
      << p.status().message();
  config("[default]\nregion = eu-west-1\nendpoint_url = http://127.0.0.1:1\n");
  EXPECT_TRUE(AwsKmsProvider::create({}, env_).ok());
}

}  // namespace
}  // namespace kmsfs::aws

namespace kmsfs::aws {
namespace {

// With no credentials anywhere, the error names every source of the chain, in order, each
// with why it gave nothing, on one line (a journal shows it whole).
TEST_F(Settings, NoCredentialsListsEverySourceTried) {
  env_.vars["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:1";  // refused at once
  auto chain = make_default_chain({.env = env_, .http = make_curl_transport(), .profile = "", .region = "", .cache = {}});
  Result<std::shared_ptr<const Credentials>> c = chain->get();
  ASSERT_FALSE(c.ok());
  const std::string m = c.status().message();
  EXPECT_EQ(c.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  size_t at = 0;
  for (const char* source : {"environment (no AWS_ACCESS_KEY_ID", "profile default (no AWS profile 'default' in " ,
                             "web identity (no AWS_WEB_IDENTITY_TOKEN_FILE", "container credentials (no AWS_CONTAINER",
                             "IMDS (no instance metadata service at http://127.0.0.1:1"}) {
    size_t pos = m.find(source, at);
    EXPECT_NE(pos, std::string::npos) << source << " missing or out of order in: " << m;
    if (pos != std::string::npos) at = pos;
  }
  EXPECT_NE(m.find(dir_ + "/config"), std::string::npos) << m;

  // A profile with SSO settings says it is not supported, and the chain goes on.
  config("[default]\nsso_session = corp\n");
  chain = make_default_chain({.env = env_, .http = make_curl_transport(), .profile = "", .region = "", .cache = {}});
  c = chain->get();
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("SSO (sso_session, sso_start_url) is not supported"), std::string::npos);
  EXPECT_NE(c.status().message().find("IMDS ("), std::string::npos);
}

}  // namespace
}  // namespace kmsfs::aws
