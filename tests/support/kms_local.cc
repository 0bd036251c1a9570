#include "kms_local.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "keys/aws/sigv4.h"
#include "process.h"

namespace kmsfs::testing {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

int decode(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

}  // namespace

KmsLocal::KmsLocal(std::string binary, Options options)
    : binary_(std::move(binary)), options_(std::move(options)) {
  std::ofstream(credentials_file()) << "[tester]\naws_access_key_id = " << kAccessKeyId
                                    << "\naws_secret_access_key = " << kSecretAccessKey << "\n";
  ::chmod(credentials_file().c_str(), 0600);
  if (options_.tls) {
    ProcessResult r = run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                           "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                           "-keyout", dir_ / "key.pem", "-out", ca_file()});
    if (r.exit_code != 0) throw std::runtime_error("openssl req failed: " + r.err);
  }
  start();
}

KmsLocal::~KmsLocal() { stop(); }

void KmsLocal::start() {
  const std::string port_file = dir_ / "port";
  ::unlink(port_file.c_str());
  std::vector<std::string> argv = {binary_, "--credentials-file", credentials_file(), "--region",
                                   kRegion, "--port", std::to_string(port_), "--port-file", port_file};
  if (options_.tls) {
    argv.insert(argv.end(), {"--tls-cert", ca_file(), "--tls-key", dir_ / "key.pem"});
  }
  if (!options_.state_file.empty()) argv.insert(argv.end(), {"--state-file", options_.state_file});
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());

  int log_fd = ::open((dir_ / "server.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open the kms-local log");
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Dies with the test even if the test is SIGKILLed (a ctest timeout).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  if (pid_ < 0) throw std::runtime_error("fork failed");
  exit_status_ = -1;

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (::access(port_file.c_str(), R_OK) != 0) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("kms-local exited with " + std::to_string(decode(st)) + ":\n" + log());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop();
      throw std::runtime_error("kms-local did not write its port file:\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  port_ = std::stoi(slurp(port_file));
}

int KmsLocal::stop() {
  if (pid_ <= 0) return exit_status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int st = 0;
  while (::waitpid(pid_, &st, WNOHANG) != pid_) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  exit_status_ = decode(st);
  return exit_status_;
}

void KmsLocal::restart() {
  stop();
  start();
}

std::string KmsLocal::endpoint() const {
  return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

std::string KmsLocal::log() const { return slurp(dir_ / "server.log"); }

std::vector<std::pair<std::string, std::optional<std::string>>> KmsLocal::client_env() const {
  std::vector<std::pair<std::string, std::optional<std::string>>> env = {
      {"AWS_ENDPOINT_URL_KMS", endpoint()},
      {"AWS_ENDPOINT_URL_STS", endpoint()},
      {"AWS_ACCESS_KEY_ID", kAccessKeyId},
      {"AWS_SECRET_ACCESS_KEY", kSecretAccessKey},
      {"AWS_SESSION_TOKEN", std::nullopt},
      {"AWS_REGION", kRegion},
      {"AWS_DEFAULT_REGION", kRegion},
      {"AWS_PROFILE", std::nullopt},
      {"AWS_CONFIG_FILE", "/dev/null"},
      {"AWS_SHARED_CREDENTIALS_FILE", "/dev/null"},
      {"AWS_EC2_METADATA_DISABLED", "true"},
      {"AWS_CA_BUNDLE", std::nullopt}};
  if (options_.tls) env.back().second = ca_file();
  return env;
}

void KmsLocal::export_client_env() const {
  for (const auto& [name, value] : client_env()) {
    if (value) {
      ::setenv(name.c_str(), value->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
}

namespace {

// One client per call: tests make few calls, and a fresh connection each time keeps a
// stopped server from looking alive through a pooled socket.
std::unique_ptr<httplib::Client> client_for(const std::string& endpoint, const std::string& ca) {
  auto c = std::make_unique<httplib::Client>(endpoint);
  if (!ca.empty()) c->set_ca_cert_path(ca.c_str());
  c->set_connection_timeout(5);
  c->set_read_timeout(30);
  return c;
}

std::pair<int, std::string> answer(const httplib::Result& r) {
  if (!r) return {-1, "no answer: " + httplib::to_string(r.error())};
  return {r->status, r->body};
}

}  // namespace

std::pair<int, std::string> KmsLocal::admin(const std::string& method, const std::string& path,
                                            const std::string& body) const {
  auto c = client_for(endpoint(), ca_file());
  if (method == "GET") return answer(c->Get(path.c_str()));
  if (method == "DELETE") return answer(c->Delete(path.c_str()));
  return answer(c->Post(path.c_str(), body, "application/json"));
}

namespace {

// POST / signed for `service` with the test credentials.
std::pair<int, std::string> signed_post(const std::string& endpoint, const std::string& ca,
                                        int port, const char* service,
                                        std::vector<std::pair<std::string, std::string>> headers,
                                        const std::string& content_type, const std::string& body,
                                        const std::string& secret) {
  aws::HttpRequest req;
  req.method = "POST";
  req.path = "/";
  req.headers = {{"Host", "127.0.0.1:" + std::to_string(port)}, {"Content-Type", content_type}};
  req.headers.insert(req.headers.end(), headers.begin(), headers.end());
  req.body = body;
  auto creds = aws::Credentials::make(KmsLocal::kAccessKeyId, secret);
  aws::SigningParams p{.region = KmsLocal::kRegion,
                       .service = service,
                       .amz_date = aws::amz_date(std::chrono::system_clock::now())};
  if (!aws::sign_headers(req, creds, p).ok()) return {-1, "signing failed"};
  httplib::Headers out;
  for (const auto& [k, v] : req.headers) {
    if (k != "Content-Type" && k != "Host") out.emplace(k, v);  // cpp-httplib sends these
  }
  return answer(client_for(endpoint, ca)->Post("/", out, req.body, content_type.c_str()));
}

std::string xml_value(const std::string& xml, const std::string& tag) {
  size_t a = xml.find("<" + tag + ">"), b = xml.find("</" + tag + ">");
  if (a == std::string::npos || b == std::string::npos) return "";
  a += tag.size() + 2;
  return xml.substr(a, b - a);
}

}  // namespace

std::pair<int, std::string> KmsLocal::call(const std::string& operation,
                                           const std::string& json_body,
                                           const std::string& secret) const {
  return signed_post(endpoint(), ca_file(), port_, "kms",
                     {{"X-Amz-Target", "TrentService." + operation}},
                     "application/x-amz-json-1.1", json_body, secret);
}

std::pair<int, std::string> KmsLocal::sts(const std::string& form_body) const {
  return signed_post(endpoint(), ca_file(), port_, "sts", {},
                     "application/x-www-form-urlencoded; charset=utf-8", form_body,
                     kSecretAccessKey);
}

KmsLocal::SessionCredentials KmsLocal::assume_role(const std::string& role_name) const {
  auto [status, xml] = sts("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A" +
                           std::string(kAccountId) + "%3Arole%2F" + role_name +
                           "&RoleSessionName=kmsfs-test");
  if (status != 200) throw std::runtime_error("AssumeRole: " + std::to_string(status) + " " + xml);
  return {xml_value(xml, "AccessKeyId"), xml_value(xml, "SecretAccessKey"),
          xml_value(xml, "SessionToken"), xml_value(xml, "Expiration")};
}

}  // namespace kmsfs::testing
