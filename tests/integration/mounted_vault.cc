#include "mounted_vault.h"

#include "kms_local.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace kmsfs::testing {

std::string kmsfs_bin() { return KMSFS_BIN; }

std::vector<std::string> matrix_init_args() {
  std::vector<std::string> out;
  const char* env = ::getenv("KMSFS_TEST_INIT_ARGS");
  if (!env) return out;
  std::istringstream in(env);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

namespace {

// Lives until the test process exits, after every MountedVault (they are test locals).
std::unique_ptr<KmsLocal>& shared_kms() {
  static std::unique_ptr<KmsLocal> kms;
  return kms;
}

const char* kms_mode() {
  const char* mode = ::getenv("KMSFS_TEST_KMS");
  return mode && *mode ? mode : nullptr;
}

void start_shared_kms(const std::string& mode) {
  if (mode != "http" && mode != "tls") throw std::runtime_error("KMSFS_TEST_KMS must be http or tls, not " + mode);
  KmsLocal::Options o;
  o.tls = mode == "tls";
  auto kms = std::make_unique<KmsLocal>(KMS_LOCAL_BIN, o);
  auto [status, body] = kms->call("CreateKey", R"({"Description":"kmsfs mount tests"})");
  const std::string marker = R"("KeyId":")";
  size_t at = body.find(marker);
  if (status != 200 || at == std::string::npos) throw std::runtime_error("kms-local CreateKey: " + body);
  const std::string key_id = body.substr(at + marker.size(), 36);
  auto alias = kms->call("CreateAlias", R"({"AliasName":"alias/kmsfs-test","TargetKeyId":")" + key_id + "\"}");
  if (alias.first != 200) throw std::runtime_error("kms-local CreateAlias: " + alias.second);
  kms->export_client_env();
  shared_kms() = std::move(kms);
}

}  // namespace

std::vector<std::string> key_init_args(const std::string& keyring) {
  const char* mode = kms_mode();
  if (!mode) return {"--keyring", keyring, "--key", "main"};
  if (!shared_kms()) start_shared_kms(mode);
  return {"--kms-key", "alias/kmsfs-test"};
}

ProcessResult kmsfs(const std::vector<std::string>& args, bool check, const ProcessOptions& opts) {
  std::vector<std::string> argv = {kmsfs_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = run(argv, opts);
  if (check && r.exit_code != 0) {
    std::string cmd;
    for (const auto& a : args) cmd += a + " ";
    ADD_FAILURE() << "kmsfs " << cmd << "exited " << r.exit_code << ": " << r.err;
  }
  return r;
}

MountedVault::MountedVault(VaultOptions opts) : tmp_("kmsfs-it", "/var/tmp"), opts_(std::move(opts)) {
  backing_ = tmp_ / "backing";
  mnt_ = tmp_ / "mnt";
  keyring_ = tmp_ / "keyring";
  log_path_ = tmp_ / "daemon.log";
  ::mkdir(backing_.c_str(), 0755);
  ::mkdir(mnt_.c_str(), 0755);
  struct stat st {};
  ::stat(tmp_.path().c_str(), &st);
  parent_dev_ = st.st_dev;
  kmsfs({"keyring", "create", keyring_, "--no-passphrase", "--key", "main"});
  std::vector<std::string> init = {"init", backing_};
  for (const auto& a : opts_.key_args ? *opts_.key_args : key_init_args(keyring_)) init.push_back(a);
  for (const auto& a : matrix_init_args()) init.push_back(a);
  for (const auto& a : opts_.init_args) init.push_back(a);
  kmsfs(init);
  mount();
}

std::string MountedVault::backing_at(const std::string& rel) const {
  auto r = kmsfs({"encrypt-path", backing_, rel, "--keyring", keyring_});
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (r.exit_code != 0 || out.empty()) throw std::runtime_error("kmsfs encrypt-path " + rel + " failed: " + r.err);
  return out;
}

bool MountedVault::mounted() const {
  struct stat st {};
  return ::stat(mnt_.c_str(), &st) == 0 && st.st_dev != parent_dev_;
}

void MountedVault::mount() {
  std::vector<std::string> argv = opts_.daemon_prefix;
  for (const auto& a : {kmsfs_bin(), std::string("mount"), backing_, mnt_, std::string("--foreground"),
                        std::string("--keyring"), keyring_})
    argv.push_back(a);
  for (const auto& a : opts_.mount_args) argv.push_back(a);
  daemon_ = std::make_unique<Background>(argv, log_path_);
  for (int i = 0; i < 500; ++i) {
    if (mounted()) return;
    if (!daemon_->running()) throw std::runtime_error("kmsfs mount exited during start-up: " + log());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("kmsfs mount did not come up in 10 s: " + log());
}

int MountedVault::unmount() {
  if (!daemon_) return -1;
  if (mounted() && ::umount2(mnt_.c_str(), 0) != 0) {
    // Busy (a test failed with files open): detach, the daemon then exits when idle.
    ::umount2(mnt_.c_str(), MNT_DETACH);
  }
  int rc = daemon_->wait(std::chrono::seconds(20));
  if (rc == -1) {
    daemon_->kill(SIGKILL);
    rc = daemon_->wait(std::chrono::seconds(10));
    ::umount2(mnt_.c_str(), MNT_DETACH);
  }
  daemon_.reset();
  return rc;
}

MountedVault::~MountedVault() {
  // A dead daemon leaves ENOTCONN behind: detach that too.
  if (daemon_) unmount();
  struct stat st;
  if (::stat(mnt_.c_str(), &st) != 0 && errno == ENOTCONN) ::umount2(mnt_.c_str(), MNT_DETACH);
}

std::string MountedVault::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<std::string, double> MountedVault::scrape_metrics() const {
  const std::string marker = "metrics at http://127.0.0.1:";
  const std::string text = log();
  const size_t at = text.rfind(marker);  // the latest daemon's
  if (at == std::string::npos) {
    ADD_FAILURE() << "the daemon logged no metrics port:\n" << text;
    return {};
  }
  const size_t from = at + marker.size();
  const std::string port = text.substr(from, text.find('/', from) - from);
  ProcessResult scrape = run({"/usr/bin/curl", "-sf", "http://127.0.0.1:" + port + "/metrics"});
  if (scrape.exit_code != 0) {
    ADD_FAILURE() << "curl of port " << port << ": " << scrape.err;
    return {};
  }
  const std::string parser =
      "import sys\n"
      "from prometheus_client.parser import text_string_to_metric_families\n"
      "for fam in text_string_to_metric_families(sys.stdin.read()):\n"
      "    for s in fam.samples:\n"
      "        labels = ','.join(k + '=' + v for k, v in sorted(s.labels.items()))\n"
      "        print(s.name + ('{' + labels + '}' if labels else ''), repr(float(s.value)), sep='\\t')\n";
  ProcessOptions po;
  po.stdin_data = scrape.out;
  ProcessResult parsed = run({"/usr/bin/python3", "-c", parser}, po);
  if (parsed.exit_code != 0) {
    ADD_FAILURE() << "the Prometheus parser refused the exposition: " << parsed.err << "\n" << scrape.out;
    return {};
  }
  std::map<std::string, double> out;
  std::istringstream lines(parsed.out);
  for (std::string line; std::getline(lines, line);) {
    const size_t tab = line.find('\t');
    if (tab != std::string::npos) out[line.substr(0, tab)] = std::stod(line.substr(tab + 1));
  }
  return out;
}

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  std::string out;
  char buf[1 << 16];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int e = errno;
  ::close(fd);
  if (n < 0) throw std::runtime_error("read " + path + ": " + std::strerror(e));
  return out;
}

void write_file(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error("write " + path + ": " + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) throw std::runtime_error("close " + path + ": " + std::strerror(errno));
}

std::string pattern(size_t n, uint64_t seed) {
  std::string b(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& c : b) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return b;
}

}  // namespace kmsfs::testing
