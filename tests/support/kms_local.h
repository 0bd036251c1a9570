// Runs tools/kms-local for a C++ test: a fresh directory with a credentials file, port 0
// and a port file (tests run in parallel), optional TLS with a throwaway self-signed
// certificate (openssl CLI), and a stop that always happens: the destructor sends SIGTERM
// and waits, and the child has PR_SET_PDEATHSIG so a crashed test takes it along.
//
//   kmsfs::testing::KmsLocal kms(KMS_LOCAL_BIN);          // KMS_LOCAL_BIN from CMake
//   run_with_env(kms.client_env(), ...);                   // AWS_ENDPOINT_URL_KMS etc.
//   kms.admin("POST", "/__admin/faults", R"({"throttle_rate":1})");
//   auto [status, answer] = kms.call("CreateKey", "{}");   // signed with keys/aws/sigv4.h
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "temp_dir.h"

namespace kmsfs::testing {

class KmsLocal {
 public:
  static constexpr const char* kAccessKeyId = "AKIDKMSLOCALTEST";
  static constexpr const char* kSecretAccessKey = "kms-local/test+secret/0123456789abcdefghij";
  static constexpr const char* kRegion = "us-east-1";
  static constexpr const char* kAccountId = "111122223333";

  struct Options {
    std::vector<std::string> extra_args{};  // e.g. {"--session-lifetime", "2"}
    bool tls = false;
    std::string state_file{};  // empty: keys in memory only
  };

  // Starts the server and waits for its port file. Throws std::runtime_error (with the
  // server's log) if it does not come up.
  explicit KmsLocal(std::string binary, Options options);
  explicit KmsLocal(std::string binary) : KmsLocal(std::move(binary), Options()) {}
  ~KmsLocal();
  KmsLocal(const KmsLocal&) = delete;
  KmsLocal& operator=(const KmsLocal&) = delete;

  int port() const { return port_; }
  std::string endpoint() const;  // http(s)://127.0.0.1:PORT
  const std::string& dir() const { return dir_.path(); }
  std::string credentials_file() const { return dir_ / "credentials"; }
  std::string ca_file() const { return options_.tls ? dir_ / "cert.pem" : ""; }
  std::string log() const;

  // What a client process needs to use this server and nothing else: endpoint (KMS and
  // STS), long-term test keys, region, no config files, no instance metadata,
  // AWS_CA_BUNDLE over TLS. The form of SpawnOptions::env.
  std::vector<std::pair<std::string, std::optional<std::string>>> client_env() const;
  // Sets client_env() in this process's own environment, for children started without an
  // explicit environment (a kmsfs mount started by MountedVault).
  void export_client_env() const;

  // An admin endpoint (GET/POST/DELETE /__admin/...): {HTTP status, body}.
  std::pair<int, std::string> admin(const std::string& method, const std::string& path,
                                    const std::string& body = "") const;
  // A KMS operation signed with kmsfs's SigV4 signer: {HTTP status, body}.
  std::pair<int, std::string> call(const std::string& operation, const std::string& json_body,
                                   const std::string& secret = kSecretAccessKey) const;
  // An STS query ("Action=AssumeRole&Version=2011-06-15&...", form-encoded), signed the
  // same way: {HTTP status, XML body}.
  std::pair<int, std::string> sts(const std::string& form_body) const;

  struct SessionCredentials {
    std::string access_key_id, secret_access_key, session_token;
    std::string expiration;  // ISO 8601, as STS answers it
  };
  // AssumeRole through sts(); throws std::runtime_error on failure.
  SessionCredentials assume_role(const std::string& role_name = "kmsfs-test") const;

  // SIGTERM and wait (SIGKILL after 15 s); the exit status, 0 for a clean stop.
  int stop();
  // Starts again on the same directory, state file and port (a client, or a mount, keeps
  // its endpoint). Keys survive only with Options::state_file.
  void restart();

 private:
  void start();

  std::string binary_;
  Options options_;
  TempDir dir_{"kms-local"};
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_status_ = -1;
};

}  // namespace kmsfs::testing
