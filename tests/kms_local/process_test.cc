// kms-local as a process, through tests/support/kms_local.h (the helper other suites use to
// start it): port 0 and the port file, parallel instances, signed calls with kmsfs's own
// signer over a real socket, admin endpoints, clean SIGTERM with connections open, TLS,
// the state file across a restart, and refusals at start.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "kms_local.h"
#include "process.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

json parse(const std::string& s) { return json::parse(s, nullptr, false); }

TEST(KmsLocalProcess, ParallelInstancesOnPortZero) {
  KmsLocal a(KMS_LOCAL_BIN), b(KMS_LOCAL_BIN);
  EXPECT_NE(a.port(), b.port());
  for (KmsLocal* s : {&a, &b}) {
    auto [status, body] = s->admin("GET", "/__admin/health");
    EXPECT_EQ(status, 200) << body;
  }
  auto [status, body] = a.call("CreateKey", "{}");
  ASSERT_EQ(status, 200) << body << a.log();
  EXPECT_EQ(parse(body)["KeyMetadata"]["Arn"].get<std::string>().rfind(
                "arn:aws:kms:us-east-1:111122223333:key/", 0),
            0u);
  EXPECT_EQ(parse(b.call("ListKeys", "{}").second)["Keys"].size(), 0u);  // separate state
  EXPECT_EQ(parse(a.admin("GET", "/__admin/stats").second)["operations"]["CreateKey"]["ok"], 1);
}

TEST(KmsLocalProcess, WrongSecretOverTheWire) {
  KmsLocal s(KMS_LOCAL_BIN);
  auto [status, body] = s.call("ListKeys", "{}", "not-the-secret");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(parse(body)["__type"], "InvalidSignatureException");
}

TEST(KmsLocalProcess, SigtermStopsPromptlyWithAKeepAliveConnectionOpen) {
  KmsLocal s(KMS_LOCAL_BIN);
  // A client that keeps its connection open (as the AWS SDKs do) must not hold the stop
  // for cpp-httplib's keep-alive timeout.
  ProcessResult curl_run;
  auto start = std::chrono::steady_clock::now();
  std::thread idle([&] {
    curl_run = run({"curl", "-s", "--max-time", "20", s.endpoint() + "/__admin/health", "--next",
                    "--max-time", "20", s.endpoint() + "/__admin/health"});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  start = std::chrono::steady_clock::now();
  EXPECT_EQ(s.stop(), 0) << s.log();
  idle.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_NE(s.log().find("kms-local: stopped"), std::string::npos) << s.log();
}

TEST(KmsLocalProcess, SigtermRightAfterThePortFileIsNotLost) {
  for (int i = 0; i < 10; ++i) {
    KmsLocal s(KMS_LOCAL_BIN);
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(s.stop(), 0) << s.log();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  }
}

TEST(KmsLocalProcess, TlsAndAdminOverTls) {
  KmsLocal s(KMS_LOCAL_BIN, {.tls = true});
  EXPECT_EQ(s.endpoint().rfind("https://", 0), 0u);
  EXPECT_EQ(s.call("CreateKey", "{}").first, 200) << s.log();
  EXPECT_EQ(s.admin("POST", "/__admin/faults", R"({"throttle_rate":1.0})").first, 200);
  auto [status, body] = s.call("ListKeys", "{}");
  EXPECT_EQ(status, 400);
  EXPECT_EQ(parse(body)["__type"], "ThrottlingException");
}

TEST(KmsLocalProcess, StateFileAcrossARestart) {
  TempDir dir("kms-local-state");
  const std::string state = dir / "state.json";
  KmsLocal s(KMS_LOCAL_BIN, {.state_file = state});
  auto created = parse(s.call("CreateKey", "{}").second);
  std::string id = created["KeyMetadata"]["KeyId"];
  auto enc = parse(s.call("Encrypt", json{{"KeyId", id}, {"Plaintext", "a21zZnM="}}.dump()).second);
  EXPECT_EQ(s.stop(), 0);
  struct stat st {};
  ASSERT_EQ(::stat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  s.restart();
  auto [status, body] = s.call("Decrypt", json{{"CiphertextBlob", enc["CiphertextBlob"]}}.dump());
  EXPECT_EQ(status, 200) << body;
  EXPECT_EQ(parse(body)["Plaintext"], "a21zZnM=");
}

// The first IPv4 address of this host that is not loopback, if any.
std::string non_loopback_ipv4() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* i = list; i && found.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK)) continue;
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    found = buf;
  }
  ::freeifaddrs(list);
  return found;
}

TEST(KmsLocalProcess, AdminEndpointsAnswerOnlyLoopbackPeers) {
  const std::string ip = non_loopback_ipv4();
  if (ip.empty()) GTEST_SKIP() << "no non-loopback IPv4 address to test from";
  KmsLocal s(KMS_LOCAL_BIN, {.extra_args = {"--listen", "0.0.0.0"}});
  auto code = [&](const std::string& host) {
    return run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                "http://" + host + ":" + std::to_string(s.port()) + "/__admin/stats"})
        .out;
  };
  EXPECT_EQ(code("127.0.0.1"), "200");
  EXPECT_EQ(code(ip), "403");
}

TEST(KmsLocalProcess, RefusesToStartOnBadInput) {
  TempDir dir("kms-local-bad");
  ProcessResult no_creds = run({KMS_LOCAL_BIN, "--port-file", dir / "port"});
  EXPECT_EQ(no_creds.exit_code, 2) << no_creds.err;
  EXPECT_NE(no_creds.err.find("--credentials-file is required"), std::string::npos) << no_creds.err;
  ProcessResult missing = run({KMS_LOCAL_BIN, "--credentials-file", dir / "nope"});
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  EXPECT_THROW(KmsLocal(KMS_LOCAL_BIN, {.extra_args = {"--account-id", "12"}}), std::runtime_error);
  EXPECT_THROW(KmsLocal(KMS_LOCAL_BIN, {.extra_args = {"--throttle-rate", "2"}}), std::runtime_error);
  EXPECT_THROW(KmsLocal(KMS_LOCAL_BIN, {.extra_args = {"--tls-cert", dir / "none.pem", "--tls-key",
                                                       dir / "none.pem"}}),
               std::runtime_error);
  EXPECT_FALSE(std::filesystem::exists(dir / "port"));
}

}  // namespace
}  // namespace kmsfs::testing
