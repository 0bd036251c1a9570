// The credential chain: parsing (INI profiles, credential_process, metadata JSON, STS XML),
// precedence, the refresh-ahead cache, and the HTTP sources against a local Python stand-in
// for IMDS, the container endpoint and STS (metadata_server.py).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "keys/aws/credentials.h"

extern char** environ;

namespace kmsfs::aws {
namespace {

namespace fs = std::filesystem;
using std::chrono::system_clock;

std::string secret_of(const Credentials& c) { return std::string(as_chars(c.secret_access_key.span())); }

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kmsfs-aws-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs metadata_server.py; kills exactly that process at the end.
class MetadataServer {
 public:
  MetadataServer() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::string script = std::string(KMSFS_SOURCE_DIR) + "/tests/unit/aws/metadata_server.py";
    const char* argv[] = {"python3", script.c_str(), nullptr};
    EXPECT_EQ(posix_spawnp(&pid_, "python3", &fa, nullptr, const_cast<char**>(argv), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    FILE* out = ::fdopen(fds[0], "r");
    char line[64] = {0};
    if (out && std::fgets(line, sizeof line, out)) port_ = std::atoi(line);
    if (out) std::fclose(out);
    EXPECT_GT(port_, 0) << "metadata_server.py did not start";
  }
  ~MetadataServer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string url(const std::string& path = "") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string log(HttpTransport& http) const {
    HttpCall c;
    c.url = url("/_log");
    c.no_proxy = true;
    Result<HttpResponse> r = http.send(c);
    return r.ok() ? std::string(r->body.data(), r->body.size()) : "";
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

Env env_of(std::map<std::string, std::string, std::less<>> vars) {
  Env e;
  e.vars = std::move(vars);
  return e;
}

// --- Pure parsing ---

TEST(Credentials, FromEnv) {
  EXPECT_EQ(credentials_from_env(env_of({})).status().code(), Code::kNotFound);
  EXPECT_EQ(credentials_from_env(env_of({{"AWS_ACCESS_KEY_ID", "AKID"}})).status().code(),
            Code::kInvalidArgument);
  Result<Credentials> c = credentials_from_env(env_of(
      {{"AWS_ACCESS_KEY_ID", "AKID"}, {"AWS_SECRET_ACCESS_KEY", "s3cr3t"}, {"AWS_SESSION_TOKEN", "tok"}}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->access_key_id, "AKID");
  EXPECT_EQ(secret_of(*c), "s3cr3t");
  EXPECT_EQ(c->session_token, "tok");
  EXPECT_FALSE(c->expiration);
  // Empty counts as unset, as in the SDKs.
  EXPECT_EQ(credentials_from_env(env_of({{"AWS_ACCESS_KEY_ID", ""}})).status().code(), Code::kNotFound);
}

TEST(Credentials, ParseIni) {
  IniFile ini = parse_ini(
      "# comment\n[default]\naws_access_key_id = AKID\n; another\nAWS_Secret_Access_Key=  sec  \n"
      "\n[profile dev]\nregion = eu-west-1\ns3 =\n  max_concurrent_requests = 20\nrole_arn=arn:r\n"
      "garbage line\n");
  EXPECT_EQ(ini["default"]["aws_access_key_id"], "AKID");
  EXPECT_EQ(ini["default"]["aws_secret_access_key"], "sec");
  EXPECT_EQ(ini["profile dev"]["region"], "eu-west-1");
  EXPECT_EQ(ini["profile dev"]["role_arn"], "arn:r");
  EXPECT_EQ(ini["profile dev"].count("max_concurrent_requests"), 0u);
}

TEST(Credentials, ProfileMergeAndFiles) {
  TempDir d;
  std::string cfg = d.write("config",
                            "[default]\nregion = us-east-1\n[profile dev]\nregion = eu-west-1\n"
                            "aws_access_key_id = FROMCONFIG\naws_secret_access_key = cfgsecret\n");
  std::string creds = d.write("credentials", "[dev]\naws_access_key_id = FROMCREDS\n");
  Env env = env_of({{"AWS_CONFIG_FILE", cfg}, {"AWS_SHARED_CREDENTIALS_FILE", creds}, {"HOME", "/nonexistent"}});
  ProfileFiles f = ProfileFiles::load(env);
  auto dev = profile_settings(f, "dev");
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ(dev->at("aws_access_key_id"), "FROMCREDS");  // the credentials file wins
  EXPECT_EQ(dev->at("aws_secret_access_key"), "cfgsecret");
  EXPECT_EQ(dev->at("region"), "eu-west-1");
  EXPECT_EQ(profile_settings(f, "default")->at("region"), "us-east-1");
  EXPECT_EQ(profile_settings(f, "nope").status().code(), Code::kNotFound);
  // "[dev]" in the config file is not the profile dev (it must be "[profile dev]").
  std::string cfg2 = d.write("config2", "[dev]\nregion = x\n");
  ProfileFiles f2 = ProfileFiles::load(env_of({{"AWS_CONFIG_FILE", cfg2}, {"HOME", "/nonexistent"}}));
  EXPECT_EQ(profile_settings(f2, "dev").status().code(), Code::kNotFound);

  EXPECT_EQ(profile_name(env_of({})), "default");
  EXPECT_EQ(profile_name(env_of({{"AWS_PROFILE", "dev"}})), "dev");
}

TEST(Credentials, CredentialProcessOutput) {
  WipedString ok(R"({"Version":1,"AccessKeyId":"AKID","SecretAccessKey":"sec","SessionToken":"t",)"
                 R"("Expiration":"2030-01-02T03:04:05Z"})");
  Result<Credentials> c = parse_credential_process_output(ok);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(secret_of(*c), "sec");
  EXPECT_EQ(c->session_token, "t");
  ASSERT_TRUE(c->expiration);
  EXPECT_EQ(system_clock::to_time_t(*c->expiration), 1893553445);
  EXPECT_TRUE(ok.empty());  // the output buffer was wiped

  WipedString v2(R"({"Version":2,"AccessKeyId":"A","SecretAccessKey":"s"})");
  EXPECT_EQ(parse_credential_process_output(v2).status().code(), Code::kUnsupported);
  WipedString nosecret(R"({"Version":1,"AccessKeyId":"A"})");
  EXPECT_EQ(parse_credential_process_output(nosecret).status().code(), Code::kInvalidArgument);
  WipedString notjson("oops");
  EXPECT_FALSE(parse_credential_process_output(notjson).ok());
}

TEST(Credentials, RunCredentialProcess) {
  TempDir d;
  std::string ok = d.write("ok.sh",
                           "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKPROC\", "
                           "\"SecretAccessKey\": \"procsecret\"}'\n", 0700);
  Result<Credentials> c = run_credential_process(ok);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key_id, "AKPROC");
  EXPECT_EQ(secret_of(*c), "procsecret");
  EXPECT_FALSE(c->expiration);

  std::string fails = d.write("fails.sh", "#!/bin/sh\necho 'no luck' >&2\nexit 3\n", 0700);
  Status s = run_credential_process(fails).status();
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("exit status 3"), std::string::npos);
  // Arguments go through the shell, as in the SDKs.
  std::string args = d.write("args.sh",
                             "#!/bin/sh\necho \"{\\\"Version\\\": 1, \\\"AccessKeyId\\\": \\\"$1\\\", "
                             "\\\"SecretAccessKey\\\": \\\"x\\\"}\"\n", 0700);
  c = run_credential_process(args + " 'AK ARG'");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key_id, "AK ARG");
}

TEST(Credentials, Iso8601) {
  EXPECT_EQ(system_clock::to_time_t(*parse_iso8601("2015-08-30T12:36:00Z")), 1440938160);
  EXPECT_EQ(system_clock::to_time_t(*parse_iso8601("2015-08-30T12:36:00.123Z")), 1440938160);
  EXPECT_EQ(system_clock::to_time_t(*parse_iso8601("2015-08-30T12:36:00+00:00")), 1440938160);
  EXPECT_FALSE(parse_iso8601("2015-08-30T12:36:00+02:00").ok());
  EXPECT_FALSE(parse_iso8601("yesterday").ok());
}

TEST(Credentials, StsXml) {
  WipedString xml("<AssumeRoleResponse><AssumeRoleResult><AssumedRoleUser><Arn>a</Arn></AssumedRoleUser>"
                  "<Credentials><AccessKeyId>ASIA</AccessKeyId><SecretAccessKey>s&amp;ec</SecretAccessKey>"
                  "<SessionToken>tok</SessionToken><Expiration>2030-01-02T03:04:05Z</Expiration>"
                  "</Credentials></AssumeRoleResult></AssumeRoleResponse>");
  Result<Credentials> c = parse_sts_credentials(xml, "AssumeRole");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key_id, "ASIA");
  EXPECT_EQ(secret_of(*c), "s&ec");
  EXPECT_EQ(c->session_token, "tok");
  EXPECT_TRUE(c->expiration);
  WipedString bad("<AssumeRoleResponse/>");
  EXPECT_FALSE(parse_sts_credentials(bad, "AssumeRole").ok());
}

// --- Cache ---

TEST(CredentialsCache, RefreshesAheadOfExpiryWithoutBlockingCallers) {
  std::atomic<int64_t> now_s{1'000'000};
  std::atomic<int> fetches{0};
  std::atomic<bool> fail{false};
  CacheOptions opts;
  opts.refresh_ahead = std::chrono::seconds(300);
  opts.retry_every = std::chrono::seconds(1);
  opts.clock = [&] { return system_clock::time_point(std::chrono::seconds(now_s.load())); };
  auto provider = make_caching_provider(
      "test",
      [&]() -> Result<Credentials> {
        if (fail) return Status(Code::kUnavailable, "metadata down");
        int n = ++fetches;
        Credentials c = Credentials::make("AK" + std::to_string(n), "s");
        c.expiration = system_clock::time_point(std::chrono::seconds(now_s.load() + 600));
        return c;
      },
      opts);

  auto c1 = provider->get();
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ((*c1)->access_key_id, "AK1");
  EXPECT_EQ((*provider->get())->access_key_id, "AK1");  // cached
  EXPECT_EQ(fetches, 1);

  now_s += 400;  // inside the refresh window, still valid: callers get the old ones at once
  EXPECT_EQ((*provider->get())->access_key_id.substr(0, 2), "AK");
  for (int i = 0; i < 100 && fetches < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(fetches, 2);  // refreshed in the background
  EXPECT_EQ((*provider->get())->access_key_id, "AK2");

  fail = true;
  now_s += 2000;  // expired and the source is down: the caller sees the error
  EXPECT_EQ(provider->get().status().code(), Code::kUnavailable);
  fail = false;
  EXPECT_EQ((*provider->get())->access_key_id.substr(0, 2), "AK");
}

// Credentials that expire sooner than refresh_ahead must not be fetched in a loop: they
// are refreshed at half their life, once per life.
TEST(CredentialsCache, ShortLivedCredentialsAreRefreshedAtHalfLifeNotInALoop) {
  std::atomic<int64_t> now_s{1'000'000};
  std::atomic<int> fetches{0};
  CacheOptions opts;
  opts.refresh_ahead = std::chrono::seconds(300);
  opts.clock = [&] { return system_clock::time_point(std::chrono::seconds(now_s.load())); };
  auto provider = make_caching_provider(
      "short",
      [&]() -> Result<Credentials> {
        int n = ++fetches;
        Credentials c = Credentials::make("AK" + std::to_string(n), "s");
        c.expiration = system_clock::time_point(std::chrono::seconds(now_s.load() + 60));
        return c;
      },
      opts);
  ASSERT_TRUE(provider->get().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(fetches, 1);  // 60 s to live, due at 30 s: nothing yet
  now_s += 31;
  for (int i = 0; i < 100 && fetches < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(fetches, 2);  // one refresh, then due again only 30 s later
  EXPECT_EQ((*provider->get())->access_key_id, "AK2");
}

TEST(CredentialsCache, StaticCredentialsAreFetchedOnce) {
  int fetches = 0;
  auto provider = make_caching_provider("static", [&]() -> Result<Credentials> {
    ++fetches;
    return Credentials::make("AK", "s");
  });
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(provider->get().ok());
  EXPECT_EQ(fetches, 1);
}

// --- The chain ---

struct NoHttp : HttpTransport {
  Result<HttpResponse> send(const HttpCall& c) override {
    return Status(Code::kUnavailable, "no network in this test: " + c.url);
  }
};

TEST(CredentialsChain, EnvironmentWinsOverProfile) {
  TempDir d;
  std::string creds = d.write("credentials", "[default]\naws_access_key_id = FROMFILE\naws_secret_access_key = f\n");
  Env env = env_of({{"AWS_SHARED_CREDENTIALS_FILE", creds}, {"AWS_CONFIG_FILE", d.path() + "/none"},
                    {"AWS_ACCESS_KEY_ID", "FROMENV"}, {"AWS_SECRET_ACCESS_KEY", "e"},
                    {"AWS_EC2_METADATA_DISABLED", "true"}});
  auto chain = make_default_chain({.env = env, .http = std::make_shared<NoHttp>(), .profile = "", .region = "", .cache = {}});
  EXPECT_EQ((*chain->get())->access_key_id, "FROMENV");
  EXPECT_EQ(chain->name(), "environment");

  env.vars.erase("AWS_ACCESS_KEY_ID");
  env.vars.erase("AWS_SECRET_ACCESS_KEY");
  chain = make_default_chain({.env = env, .http = std::make_shared<NoHttp>(), .profile = "", .region = "", .cache = {}});
  EXPECT_EQ((*chain->get())->access_key_id, "FROMFILE");
  EXPECT_EQ(chain->name(), "profile default");
}

TEST(CredentialsChain, ProfileCredentialProcess) {
  TempDir d;
  std::string script = d.write("p.sh",
                               "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKPROC\", "
                               "\"SecretAccessKey\": \"x\", \"Expiration\": \"2099-01-01T00:00:00Z\"}'\n",
                               0700);
  std::string cfg = d.write("config", "[profile build]\ncredential_process = " + script + "\n");
  Env env = env_of({{"AWS_CONFIG_FILE", cfg}, {"AWS_SHARED_CREDENTIALS_FILE", d.path() + "/none"},
                    {"AWS_PROFILE", "build"}, {"AWS_EC2_METADATA_DISABLED", "true"}});
  auto chain = make_default_chain({.env = env, .http = std::make_shared<NoHttp>(), .profile = "", .region = "", .cache = {}});
  Result<std::shared_ptr<const Credentials>> c = chain->get();
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ((*c)->access_key_id, "AKPROC");
  EXPECT_TRUE((*c)->expiration);
}

TEST(CredentialsChain, NamedProfileMustExistAndNothingConfiguredIsDenied) {
  TempDir d;
  Env env = env_of({{"AWS_CONFIG_FILE", d.path() + "/none"}, {"AWS_SHARED_CREDENTIALS_FILE", d.path() + "/none"},
                    {"AWS_PROFILE", "ghost"}, {"AWS_EC2_METADATA_DISABLED", "true"}});
  auto chain = make_default_chain({.env = env, .http = std::make_shared<NoHttp>(), .profile = "", .region = "", .cache = {}});
  Status s = chain->get().status();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("ghost"), std::string::npos);

  env.vars.erase("AWS_PROFILE");
  chain = make_default_chain({.env = env, .http = std::make_shared<NoHttp>(), .profile = "", .region = "", .cache = {}});
  s = chain->get().status();
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  for (const char* src : {"environment", "profile default", "web identity", "container credentials", "IMDS"}) {
    EXPECT_NE(s.message().find(src), std::string::npos) << src;
  }
}

// --- HTTP sources against metadata_server.py ---

TEST(CredentialsHttp, ImdsV2) {
  MetadataServer srv;
  auto http = make_curl_transport();
  Env env = env_of({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.url("/")}});
  Result<Credentials> c = credentials_from_imds(env, *http);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key_id, "ASIAMETA");
  EXPECT_EQ(secret_of(*c), "meta-secret");
  EXPECT_EQ(c->session_token, "meta-token");
  EXPECT_TRUE(c->expiration);
  std::string log = srv.log(*http);
  EXPECT_LT(log.find("\"method\": \"PUT\""), log.find("\"method\": \"GET\""));  // token first

  env.vars["AWS_EC2_METADATA_DISABLED"] = "TRUE";
  EXPECT_EQ(credentials_from_imds(env, *http).status().code(), Code::kNotFound);
}

TEST(CredentialsHttp, ImdsAbsentIsNotFound) {
  auto http = make_curl_transport();
  // Port 1 on loopback: connection refused at once.
  Env env = env_of({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1"}});
  EXPECT_EQ(credentials_from_imds(env, *http).status().code(), Code::kNotFound);
}

TEST(CredentialsHttp, ContainerCredentials) {
  MetadataServer srv;
  TempDir d;
  auto http = make_curl_transport();
  std::string token = d.write("token", "Bearer-ecs\n");
  Env env = env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.url("/ecs/creds")},
                    {"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token}});
  Result<Credentials> c = credentials_from_container(env, *http);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->access_key_id, "ASIAECS");

  env.vars.erase("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  env.vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong";
  EXPECT_EQ(credentials_from_container(env, *http).status().code(), Code::kPermissionDenied);

  env.vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = "http://169.254.169.254/creds";
  EXPECT_EQ(credentials_from_container(env, *http).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(credentials_from_container(env_of({}), *http).status().code(), Code::kNotFound);
}

TEST(CredentialsHttp, ProfileAssumeRoleThroughSts) {
  MetadataServer srv;
  TempDir d;
  std::string cfg = d.write("config",
                            "[profile base]\naws_access_key_id = AKBASE\naws_secret_access_key = b\n"
                            "[profile admin]\nrole_arn = arn:aws:iam::1:role/admin\nsource_profile = base\n"
                            "region = eu-west-1\n"
                            "[profile denied]\nrole_arn = arn:aws:iam::1:role/denied\nsource_profile = base\n"
                            "[profile loop]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = loop2\n"
                            "[profile loop2]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = loop\n");
  auto http = std::shared_ptr<HttpTransport>(make_curl_transport());
  Env env = env_of({{"AWS_CONFIG_FILE", cfg}, {"AWS_SHARED_CREDENTIALS_FILE", d.path() + "/none"},
                    {"AWS_ENDPOINT_URL_STS", srv.url("/")}, {"AWS_EC2_METADATA_DISABLED", "true"}});
  auto chain = make_default_chain({.env = env, .http = http, .profile = "admin", .region = "", .cache = {}});
  Result<std::shared_ptr<const Credentials>> c = chain->get();
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ((*c)->access_key_id, "ASIAROLE");
  EXPECT_EQ(secret_of(**c), "sts-secret&x");
  std::string log = srv.log(*http);
  EXPECT_NE(log.find("Credential=AKBASE/"), std::string::npos);  // signed with the source profile
  EXPECT_NE(log.find("/eu-west-1/sts/aws4_request"), std::string::npos);
  EXPECT_NE(log.find("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fadmin"), std::string::npos);

  chain = make_default_chain({.env = env, .http = http, .profile = "denied", .region = "", .cache = {}});
  EXPECT_EQ(chain->get().status().code(), Code::kPermissionDenied);
  chain = make_default_chain({.env = env, .http = http, .profile = "loop", .region = "", .cache = {}});
  EXPECT_EQ(chain->get().status().code(), Code::kInvalidArgument);
}

TEST(CredentialsHttp, WebIdentityFromEnvironment) {
  MetadataServer srv;
  TempDir d;
  auto http = std::shared_ptr<HttpTransport>(make_curl_transport());
  std::string token = d.write("jwt", "jwt-token\n");
  Env env = env_of({{"AWS_WEB_IDENTITY_TOKEN_FILE", token}, {"AWS_ROLE_ARN", "arn:aws:iam::1:role/web"},
                    {"AWS_ENDPOINT_URL", srv.url("/")}, {"AWS_CONFIG_FILE", d.path() + "/none"},
                    {"AWS_SHARED_CREDENTIALS_FILE", d.path() + "/none"}, {"AWS_EC2_METADATA_DISABLED", "true"}});
  auto chain = make_default_chain({.env = env, .http = http, .profile = "", .region = "", .cache = {}});
  Result<std::shared_ptr<const Credentials>> c = chain->get();
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ((*c)->access_key_id, "ASIAWEB");
  EXPECT_EQ(chain->name(), "web identity");

  d.write("jwt", "forged\n");
  Result<Credentials> bad = sts_assume_role_with_web_identity(*http, sts_options(env, ""), "arn:r", "s", token);
  EXPECT_EQ(bad.status().code(), Code::kPermissionDenied);
}

TEST(CredentialsHttp, CurlHonoursProxyEnvironmentExceptForMetadata) {
  MetadataServer srv;
  const char* old = std::getenv("http_proxy");
  std::string saved = old ? old : "";
  ::setenv("http_proxy", srv.url().c_str(), 1);
  auto http = make_curl_transport();  // libcurl reads the variable per request
  HttpCall c;
  c.url = "http://kmsfs-proxy-test.invalid/x";
  Result<HttpResponse> r = http->send(c);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(std::string(r->body.data(), r->body.size()), "via-proxy");
  c.no_proxy = true;  // what IMDS/ECS calls set: straight to the (unresolvable) host
  c.connect_timeout = std::chrono::milliseconds(2000);
  EXPECT_FALSE(http->send(c).ok());
  if (old) ::setenv("http_proxy", saved.c_str(), 1);
  else ::unsetenv("http_proxy");
}

}  // namespace
}  // namespace kmsfs::aws
