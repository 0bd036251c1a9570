// The sources that need no network: the environment and credential_process; and the
// parsing shared by the sources that answer in JSON.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "keys/aws/credentials.h"

extern char** environ;

namespace kmsfs::aws {

using nlohmann::json;
using std::chrono::system_clock;

Env Env::process() {
  Env e;
  for (char** p = environ; p && *p; ++p) {
    std::string_view kv(*p);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    e.vars.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return e;
}

std::optional<std::string> Env::get(std::string_view name) const {
  auto it = vars.find(name);
  if (it == vars.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

std::string Env::home() const { return get("HOME").value_or(""); }

Result<Credentials> credentials_from_env(const Env& env) {
  auto id = env.get("AWS_ACCESS_KEY_ID");
  auto secret = env.get("AWS_SECRET_ACCESS_KEY");
  if (!id && !secret) return Status(Code::kNotFound, "no AWS_ACCESS_KEY_ID in the environment");
  if (!id || !secret) {
    return Status(Code::kInvalidArgument,
                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together");
  }
  return Credentials::make(*id, *secret, env.get("AWS_SESSION_TOKEN").value_or(""));
}

Result<system_clock::time_point> parse_iso8601(std::string_view s) {
  struct tm tm {};
  int frac_end = 0;
  std::string str(s);
  if (sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac_end) != 6) {
    return Status(Code::kInvalidArgument, "not an ISO 8601 time: " + str);
  }
  std::string_view rest = s.substr(size_t(frac_end));
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    while (!rest.empty() && std::isdigit(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
  }
  if (rest != "Z" && rest != "+00:00" && rest != "+0000") {
    return Status(Code::kInvalidArgument, "not a UTC ISO 8601 time: " + str);
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  if (t == time_t(-1)) return Status(Code::kInvalidArgument, "not an ISO 8601 time: " + str);
  return system_clock::from_time_t(t);
}

namespace {

// Moves a secret string out of a parsed JSON tree into locked memory and wipes the tree's
// copy (nlohmann had to materialise it; this is the one copy we can reach).
Result<SecureBuffer> take_secret(json& j, const char* name, std::string_view source) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string() || it->get_ref<std::string&>().empty()) {
    return Status(Code::kInvalidArgument, std::string(source) + ": no " + name);
  }
  std::string& s = it->get_ref<std::string&>();
  SecureBuffer out = SecureBuffer::copy_of(as_bytes(s));
  wipe(s);
  return out;
}

Result<Credentials> credentials_from_json(json& j, const char* token_field, std::string_view source) {
  Credentials c;
  auto id = j.find("AccessKeyId");
  if (id == j.end() || !id->is_string() || id->get<std::string>().empty()) {
    return Status(Code::kInvalidArgument, std::string(source) + ": no AccessKeyId");
  }
  c.access_key_id = id->get<std::string>();
  ASSIGN_OR_RETURN(c.secret_access_key, take_secret(j, "SecretAccessKey", source));
  if (auto t = j.find(token_field); t != j.end() && t->is_string()) {
    c.session_token = t->get<std::string>();
    wipe(t->get_ref<std::string&>());
  }
  if (auto e = j.find("Expiration"); e != j.end() && e->is_string() && !e->get<std::string>().empty()) {
    Result<system_clock::time_point> exp = parse_iso8601(e->get<std::string>());
    if (!exp.ok()) return exp.status().with_context(std::string(source) + ": Expiration");
    c.expiration = *exp;
  }
  return c;
}

}  // namespace

Result<Credentials> parse_credential_process_output(WipedString& text) {
  json j = json::parse(std::string_view(text.data(), text.size()), nullptr, false);
  wipe(text);
  if (j.is_discarded() || !j.is_object()) {
    return Status(Code::kInvalidArgument, "credential_process: output is not a JSON object");
  }
  auto v = j.find("Version");
  if (v == j.end() || !v->is_number_integer() || v->get<int>() != 1) {
    return Status(Code::kUnsupported, "credential_process: output Version must be 1");
  }
  return credentials_from_json(j, "SessionToken", "credential_process");
}

Result<Credentials> parse_metadata_credentials(WipedString& text, std::string_view source) {
  json j = json::parse(std::string_view(text.data(), text.size()), nullptr, false);
  wipe(text);
  if (j.is_discarded() || !j.is_object()) {
    return Status(Code::kUnavailable, std::string(source) + ": answer is not a JSON object");
  }
  if (auto code = j.find("Code"); code != j.end() && code->is_string() && *code != "Success") {
    return Status(Code::kPermissionDenied,
                  std::string(source) + ": credentials not available (" + code->get<std::string>() + ")");
  }
  return credentials_from_json(j, "Token", source);
}

Result<Credentials> run_credential_process(const std::string& command) {
  // The command line is the user's own config; it goes to /bin/sh like the SDKs do. Its
  // stderr is inherited so the user sees why it failed; stdout carries the secret.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::Io(errno, "credential_process: pipe");
  UniqueFd rd(fds[0]), wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/bin/sh", &fa, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return Status::Io(rc, "credential_process: spawning /bin/sh");
  wr.reset();

  WipedString out;
  constexpr size_t kMax = 64 * 1024;
  constexpr int kTimeoutMs = 60 * 1000;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  Status failure;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{rd.get(), POLLIN, 0};
    int pr = left.count() > 0 ? ::poll(&p, 1, int(left.count())) : 0;
    if (pr == 0) {
      failure = Status(Code::kUnavailable, "credential_process: timed out after 60 s");
      break;
    }
    if (pr < 0) {
      if (errno == EINTR) continue;
      failure = Status::Io(errno, "credential_process: poll");
      break;
    }
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (out.size() + size_t(n) > kMax) {
      failure = Status(Code::kInvalidArgument, "credential_process: output over 64 KiB");
      break;
    }
    out.append(buf, size_t(n));
  }
  secure_zero(buf, sizeof buf);
  if (!failure.ok()) ::kill(pid, SIGKILL);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
  }
  if (!failure.ok()) {
    wipe(out);
    return failure;
  }
  if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
    wipe(out);
    return Status(Code::kPermissionDenied,
                  "credential_process failed (exit status " +
                      std::to_string(WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst)) + ")");
  }
  return parse_credential_process_output(out);
}

}  // namespace kmsfs::aws
