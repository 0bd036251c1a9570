// Every credential source of the AWS credential chain that can run on this machine, end to
// end: kmsfs finds the credentials, signs with them, and tools/kms-local (which verifies
// every signature and journals who signed) accepts the requests. The instance-metadata
// (IMDSv2) and container (ECS/EKS) endpoints are served by this test on 127.0.0.1 and hand
// out real temporary credentials from kms-local's STS, so the server can tell them apart.
// Finally a mount outlives several short STS sessions: the credentials are refreshed.
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "kms_local.h"
#include "mounted_vault.h"
#include "subprocess.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;
using Env = std::vector<std::pair<std::string, std::optional<std::string>>>;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

constexpr const char* kImdsToken = "imds-session-token";
constexpr const char* kEcsAuthorization = "ecs-authorization-token";

// The link-local endpoints an EC2 instance or an ECS task has, on 127.0.0.1: each
// credentials answer is a fresh AssumeRole session from kms-local (role kmsfs-imds or
// kmsfs-ecs), with the expiration STS gave it.
class MetadataEndpoints {
 public:
  explicit MetadataEndpoints(const KmsLocal& kms) : kms_(kms) {
    server_.Put("/latest/api/token", [](const httplib::Request& req, httplib::Response& res) {
      if (!req.has_header("X-aws-ec2-metadata-token-ttl-seconds")) {
        res.status = 400;
        return;
      }
      res.set_content(kImdsToken, "text/plain");
    });
    server_.Get(R"(/latest/meta-data/iam/security-credentials/(.*))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  if (req.get_header_value("X-aws-ec2-metadata-token") != kImdsToken) {
                    res.status = 401;
                    return;
                  }
                  if (req.matches[1].str().empty()) {
                    res.set_content("kmsfs-imds", "text/plain");
                    return;
                  }
                  if (req.matches[1].str() != "kmsfs-imds") {
                    res.status = 404;
                    return;
                  }
                  ++imds_fetches;
                  std::this_thread::sleep_for(std::chrono::milliseconds(imds_delay_ms.load()));
                  json j = session("kmsfs-imds");
                  j["Code"] = "Success";
                  j["Type"] = "AWS-HMAC";
                  res.set_content(j.dump(), "application/json");
                });
    server_.Get("/ecs-credentials", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") != kEcsAuthorization) {
        res.status = 401;
        return;
      }
      ++ecs_fetches;
      res.set_content(session("kmsfs-ecs").dump(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("metadata endpoints: cannot bind");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // bind_to_any_port already listens: connections queue until the loop accepts them.
  }
  ~MetadataEndpoints() {
    server_.stop();
    thread_.join();
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::atomic<int> imds_fetches{0}, ecs_fetches{0};
  std::atomic<int> imds_delay_ms{0};  // a slow metadata service

 private:
  json session(const std::string& role) const {
    auto c = kms_.assume_role(role);
    return {{"AccessKeyId", c.access_key_id},
            {"SecretAccessKey", c.secret_access_key},
            {"Token", c.session_token},
            {"Expiration", c.expiration}};
  }

  const KmsLocal& kms_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// The environment of a client that has no credentials but what `extra` gives it.
Env without_credentials(const KmsLocal& kms, Env extra) {
  Env env = kms.client_env();
  env.insert(env.end(), {{"AWS_ACCESS_KEY_ID", std::nullopt},
                         {"AWS_SECRET_ACCESS_KEY", std::nullopt},
                         {"AWS_SESSION_TOKEN", std::nullopt}});
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::string last_caller(const KmsLocal& kms, const std::string& op) {
  json j = parse(kms.admin("GET", "/__admin/requests").second);
  for (auto it = j.rbegin(); it != j.rend(); ++it) {
    if ((*it)["operation"] == op) return (*it)["result"] == "ok" ? (*it).value("caller", "") : "refused";
  }
  return "none";
}

class KmsCredentials : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [status, body] = kms_.call("CreateKey", "{}");
    ASSERT_EQ(status, 200) << body;
    const std::string id = parse(body)["KeyMetadata"]["KeyId"];
    ASSERT_EQ(kms_.call("CreateAlias", json{{"AliasName", "alias/creds"}, {"TargetKeyId", id}}.dump()).first, 200);
    std::ofstream(dir_ / "plain") << "signed by whoever the chain found\n";
    ::mkdir((dir_ / "vault").c_str(), 0700);
    ASSERT_EQ(kmsfs_with(kms_.client_env(), {"init", dir_ / "vault", "--kms-key", "alias/creds"}).exit_code, 0);
    ASSERT_EQ(kmsfs_with(kms_.client_env(), {"encrypt-file", dir_ / "vault", dir_ / "plain", "f.txt"}).exit_code, 0);
  }

  ProcessResult kmsfs_with(const Env& env, std::vector<std::string> args) {
    args.insert(args.begin(), kmsfs_bin());
    SpawnOptions o;
    o.env = env;
    o.timeout = std::chrono::seconds(60);
    ProcessResult r = run_process(args, o);
    EXPECT_EQ(r.exit_code, 0) << r.err << "\n" << kms_.log();
    return r;
  }

  // `kmsfs cat` with only the credentials `extra` provides; returns who signed its Decrypt.
  std::string cat_as(Env extra) {
    ProcessResult r = kmsfs_with(without_credentials(kms_, std::move(extra)), {"cat", dir_ / "vault/f.txt"});
    EXPECT_EQ(r.out, "signed by whoever the chain found\n");
    return last_caller(kms_, "Decrypt");
  }

  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string p = dir_ / name;
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }

  static std::string role_arn(const std::string& role) {
    return std::string("arn:aws:iam::") + KmsLocal::kAccountId + ":role/" + role;
  }
  static std::string assumed(const std::string& role) {
    return std::string("arn:aws:sts::") + KmsLocal::kAccountId + ":assumed-role/" + role + "/";
  }

  KmsLocal kms_{KMS_LOCAL_BIN};
  TempDir dir_{"kms-creds"};
};

TEST_F(KmsCredentials, Environment) {
  EXPECT_NE(cat_as({{"AWS_ACCESS_KEY_ID", KmsLocal::kAccessKeyId},
                    {"AWS_SECRET_ACCESS_KEY", KmsLocal::kSecretAccessKey}})
                .find(":user/tester"),
            std::string::npos);
  auto s = kms_.assume_role("kmsfs-env");
  EXPECT_EQ(cat_as({{"AWS_ACCESS_KEY_ID", s.access_key_id},
                    {"AWS_SECRET_ACCESS_KEY", s.secret_access_key},
                    {"AWS_SESSION_TOKEN", s.session_token}})
                .rfind(assumed("kmsfs-env"), 0),
            0u);
}

TEST_F(KmsCredentials, ProfileWithStaticKeys) {
  std::string creds = write("credentials", std::string("[dev]\naws_access_key_id = ") + KmsLocal::kAccessKeyId +
                                               "\naws_secret_access_key = " + KmsLocal::kSecretAccessKey + "\n");
  EXPECT_NE(cat_as({{"AWS_PROFILE", "dev"}, {"AWS_SHARED_CREDENTIALS_FILE", creds}}).find(":user/tester"),
            std::string::npos);
}

TEST_F(KmsCredentials, ProfileWithCredentialProcess) {
  auto s = kms_.assume_role("kmsfs-process");
  json out = {{"Version", 1},
              {"AccessKeyId", s.access_key_id},
              {"SecretAccessKey", s.secret_access_key},
              {"SessionToken", s.session_token},
              {"Expiration", s.expiration}};
  write("creds.json", out.dump());
  std::string config = write("config", "[profile proc]\ncredential_process = cat " + (dir_ / "creds.json") + "\n");
  EXPECT_EQ(cat_as({{"AWS_PROFILE", "proc"}, {"AWS_CONFIG_FILE", config}}).rfind(assumed("kmsfs-process"), 0), 0u);
}

TEST_F(KmsCredentials, ProfileAssumingARoleThroughSts) {
  std::string creds = write("credentials", std::string("[base]\naws_access_key_id = ") + KmsLocal::kAccessKeyId +
                                               "\naws_secret_access_key = " + KmsLocal::kSecretAccessKey + "\n");
  std::string config =
      write("config", "[profile app]\nrole_arn = " + role_arn("kmsfs-app") + "\nsource_profile = base\n");
  EXPECT_EQ(cat_as({{"AWS_PROFILE", "app"}, {"AWS_CONFIG_FILE", config}, {"AWS_SHARED_CREDENTIALS_FILE", creds}})
                .rfind(assumed("kmsfs-app"), 0),
            0u);
  EXPECT_GE(parse(kms_.admin("GET", "/__admin/stats").second)["operations"]["AssumeRole"]["ok"].get<int>(), 1);
}

TEST_F(KmsCredentials, WebIdentityToken) {
  std::string token = write("token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrbXNmcyJ9.c2ln");
  EXPECT_EQ(cat_as({{"AWS_WEB_IDENTITY_TOKEN_FILE", token}, {"AWS_ROLE_ARN", role_arn("kmsfs-web")}})
                .rfind(assumed("kmsfs-web"), 0),
            0u);
}

TEST_F(KmsCredentials, ContainerCredentialsEndpoint) {
  MetadataEndpoints md(kms_);
  EXPECT_EQ(cat_as({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", md.base() + "/ecs-credentials"},
                    {"AWS_CONTAINER_AUTHORIZATION_TOKEN", kEcsAuthorization}})
                .rfind(assumed("kmsfs-ecs"), 0),
            0u);
  EXPECT_EQ(md.ecs_fetches, 1);
}

TEST_F(KmsCredentials, InstanceMetadataV2) {
  MetadataEndpoints md(kms_);
  EXPECT_EQ(cat_as({{"AWS_EC2_METADATA_DISABLED", std::nullopt},
                    {"AWS_EC2_METADATA_SERVICE_ENDPOINT", md.base()}})
                .rfind(assumed("kmsfs-imds"), 0),
            0u);
  EXPECT_EQ(md.imds_fetches, 1);
}

// Sessions that live 6 s; a mount on instance credentials keeps opening files for 15 s
// while the metadata service takes 1.5 s per answer. Every request must be accepted, which
// needs fresh credentials fetched before the old ones expire (the cache refreshes at
// half-life when a session is shorter than its 5-minute refresh-ahead window), and no
// open may wait for the slow fetch: refreshing happens in the background.
TEST(KmsCredentialsRefresh, AMountOutlivesItsSessionCredentials) {
  KmsLocal::Options o;
  o.extra_args = {"--session-lifetime", "6"};
  KmsLocal kms(KMS_LOCAL_BIN, o);
  auto [status, body] = kms.call("CreateKey", "{}");
  ASSERT_EQ(status, 200) << body;
  const std::string id = parse(body)["KeyMetadata"]["KeyId"];
  MetadataEndpoints md(kms);
  kms.export_client_env();
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_EC2_METADATA_DISABLED");
  ::setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", md.base().c_str(), 1);

  VaultOptions vo;
  vo.key_args = std::vector<std::string>{"--kms-key", id};
  // A 1-second key TTL: the hot key is re-fetched from KMS every half second, so requests
  // keep flowing through the whole run.
  vo.mount_args = {"--key-ttl", "1"};
  MountedVault v(vo);
  write_file(v.at("f"), "still readable\n");
  const int fetches_at_start = md.imds_fetches;
  md.imds_delay_ms = 1500;
  int reads = 0;
  std::chrono::milliseconds slowest{0};
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15); std::chrono::steady_clock::now() < until;) {
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(read_file(v.at("f")), "still readable\n") << "read " << reads << "\n" << v.log();
    slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0));
    ++reads;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  // A read that waited for a credentials fetch would take the fetch's 1.5 s.
  EXPECT_LT(slowest.count(), 1200) << "an open waited for the credentials refresh";
  json s = parse(kms.admin("GET", "/__admin/stats").second)["operations"];
  EXPECT_GE(s["Decrypt"]["ok"].get<int>(), 15) << s;
  EXPECT_EQ(s["Decrypt"].size(), 1u) << "a Decrypt was refused: " << s;
  EXPECT_GE(md.imds_fetches - fetches_at_start, 3) << "15 s of 6-second sessions need several refreshes";
  EXPECT_EQ(last_caller(kms, "Decrypt").rfind("arn:aws:sts::111122223333:assumed-role/kmsfs-imds/", 0), 0u);
}

}  // namespace
}  // namespace kmsfs::testing
