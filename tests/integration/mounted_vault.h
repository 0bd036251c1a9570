// A real kmsfs mount for integration tests: keyring + vault made with the real binary,
// `kmsfs mount --foreground` as a child process, unmounted (lazily and by SIGKILL if it
// must) when the object goes away, so no test leaves a mount behind even when it fails.
#pragma once

#include <sys/stat.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "process.h"
#include "temp_dir.h"

namespace kmsfs::testing {

std::string kmsfs_bin();
// Extra `kmsfs init` arguments of the option-matrix slice (env KMSFS_TEST_INIT_ARGS).
std::vector<std::string> matrix_init_args();
// With KMSFS_TEST_KMS=http or tls, vaults are made under a key in a tools/kms-local server
// (one per test process, started on first use) instead of the keyring, and the process
// environment points every kmsfs it runs at that server: the whole mount suite then runs
// against the AWS KMS provider. Returns the `kmsfs init` key arguments either way.
std::vector<std::string> key_init_args(const std::string& keyring);
// Runs the kmsfs binary; fails the current test (ADD_FAILURE) if it exits non-zero and
// `check` is set.
ProcessResult kmsfs(const std::vector<std::string>& args, bool check = true, const ProcessOptions& opts = {});

struct VaultOptions {
  // Replaces key_init_args() (e.g. {"--kms-key", "alias/x"} for a test's own server).
  std::optional<std::vector<std::string>> key_args;
  std::vector<std::string> init_args;   // added after the matrix args
  std::vector<std::string> mount_args;  // e.g. {"-o", "allow_other"}
  // Runs the daemon through these first, e.g. {"/usr/bin/prlimit", "--nofile=256:256", "--"}.
  std::vector<std::string> daemon_prefix;
};

class MountedVault {
 public:
  explicit MountedVault(VaultOptions opts = {});
  ~MountedVault();
  MountedVault(const MountedVault&) = delete;
  MountedVault& operator=(const MountedVault&) = delete;

  const std::string& mnt() const { return mnt_; }
  const std::string& backing() const { return backing_; }
  const std::string& keyring() const { return keyring_; }
  std::string at(const std::string& rel) const { return mnt_ + "/" + rel; }
  // The backing path of a plaintext path, from `kmsfs encrypt-path` (names are encrypted
  // by default; this is also how a user finds a file in a backup).
  std::string backing_at(const std::string& rel) const;
  const TempDir& tmp() const { return tmp_; }

  void mount();
  // Unmounts and waits for the daemon to exit; returns its exit code.
  int unmount();
  void remount() {
    unmount();
    mount();
  }
  bool mounted() const;
  pid_t daemon_pid() const { return daemon_ ? daemon_->pid() : -1; }
  void kill_daemon(int sig) {
    if (daemon_) daemon_->kill(sig);
  }
  // Everything the daemon logged so far.
  std::string log() const;
  // Every sample the daemon serves at `--metrics-listen 127.0.0.1:0` (the port it logged
  // last), read by the Prometheus project's own parser: "name{label=value,...}" (labels
  // sorted; the bare name without labels) -> value. Fails the test if it cannot.
  std::map<std::string, double> scrape_metrics() const;

 private:
  TempDir tmp_;
  std::string backing_, mnt_, keyring_, log_path_;
  VaultOptions opts_;
  std::unique_ptr<Background> daemon_;
  dev_t parent_dev_ = 0;
};

// Reads/writes whole files through plain syscalls; throw on failure (tests catch nothing:
// an exception fails the test with its message).
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);
// Bytes of pseudo-random data, reproducible from the seed.
std::string pattern(size_t n, uint64_t seed);

}  // namespace kmsfs::testing
