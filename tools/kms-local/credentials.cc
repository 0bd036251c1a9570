#include "credentials.h"

#include "base/file_io.h"
#include "base64.h"
#include "crypto/kdf.h"
#include "crypto/random.h"

namespace kmsfs::kms_local {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// `n` characters of [A-Z2-7], like the ids AWS prints.
std::string random_id(size_t n) {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  for (size_t i = 0; i < n; ++i) out += kChars[random_uniform(32)];
  return out;
}

// Sessions that expired this long ago are forgotten (until then, using one is answered
// "expired", not "unknown", as AWS does).
constexpr double kForgetAfter = 86400;

}  // namespace

std::string derived_unique_id(std::string_view prefix, std::string_view seed) {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  Digest32 h = sha256(as_bytes(seed));
  std::string out(prefix);
  for (size_t i = 0; i < 17; ++i) out += kChars[h[i] % 32];
  return out;
}

Result<std::vector<LongTermKey>> parse_credentials(std::string_view text) {
  std::vector<LongTermKey> out;
  std::optional<LongTermKey> cur;
  std::map<std::string, bool> seen;
  auto finish = [&](size_t line) -> Status {
    if (!cur) return Status::Ok();
    if (cur->access_key_id.empty() || cur->secret.empty()) {
      return Status(Code::kInvalidArgument,
                    "credentials file: section [" + cur->name + "] before line " +
                        std::to_string(line) + " needs aws_access_key_id and aws_secret_access_key");
    }
    if (seen[cur->access_key_id]) {
      return Status(Code::kInvalidArgument,
                    "credentials file: access key " + cur->access_key_id + " appears twice");
    }
    seen[cur->access_key_id] = true;
    out.push_back(std::move(*cur));
    cur.reset();
    return Status::Ok();
  };
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']' || line.size() < 3) {
        return Status(Code::kInvalidArgument,
                      "credentials file: line " + std::to_string(line_no) + ": bad section header");
      }
      RETURN_IF_ERROR(finish(line_no));
      cur = LongTermKey{std::string(trim(line.substr(1, line.size() - 2))), "", {}};
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || !cur) {
      return Status(Code::kInvalidArgument, "credentials file: line " + std::to_string(line_no) +
                                                ": expected 'name = value' inside a [section]");
    }
    std::string_view key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key == "aws_access_key_id") cur->access_key_id = std::string(value);
    if (key == "aws_secret_access_key") cur->secret = SecureBuffer::copy_of(as_bytes(value));
  }
  RETURN_IF_ERROR(finish(line_no + 1));
  if (out.empty()) return Status(Code::kInvalidArgument, "credentials file: no credentials");
  return out;
}

Result<std::vector<LongTermKey>> load_credentials_file(const std::string& path) {
  ASSIGN_OR_RETURN(Bytes raw, read_file(path, 1 << 20));
  auto keys = parse_credentials(as_chars(raw));
  secure_zero(raw.data(), raw.size());
  if (!keys.ok()) return keys.status().with_context(path);
  return keys;
}

CredentialStore::CredentialStore(std::vector<LongTermKey> keys, std::string account_id)
    : account_id_(std::move(account_id)) {
  for (LongTermKey& k : keys) {
    std::string id = k.access_key_id;
    long_term_.emplace(std::move(id), std::move(k));
  }
}

KeyLookup CredentialStore::lookup(const std::string& access_key_id) const {
  KeyLookup out;
  if (auto it = long_term_.find(access_key_id); it != long_term_.end()) {
    out.kind = KeyLookup::kLongTerm;
    out.secret = it->second.secret.clone();
    out.principal.arn = "arn:aws:iam::" + account_id_ + ":user/" + it->second.name;
    out.principal.user_id = derived_unique_id("AIDA", access_key_id);
    return out;
  }
  std::lock_guard lock(mu_);
  if (auto it = sessions_.find(access_key_id); it != sessions_.end()) {
    out.kind = KeyLookup::kSession;
    out.secret = it->second.secret.clone();
    out.session_token = it->second.token;
    out.expiration = it->second.expiration;
    out.principal = it->second.principal;
  }
  return out;
}

IssuedSession CredentialStore::issue_session(Principal principal, double lifetime_seconds,
                                             double now) {
  IssuedSession s;
  s.access_key_id = "ASIA" + random_id(16);
  uint8_t secret[30], token[96];
  random_bytes(secret);
  random_bytes(token);
  s.secret = base64_encode(secret);  // 40 characters, the length of an AWS secret key
  s.session_token = base64_encode(token);
  s.expiration = now + lifetime_seconds;
  std::lock_guard lock(mu_);
  std::erase_if(sessions_, [&](const auto& e) { return e.second.expiration + kForgetAfter < now; });
  sessions_[s.access_key_id] = Session{SecureBuffer::copy_of(as_bytes(s.secret)), s.session_token,
                                       s.expiration, std::move(principal)};
  secure_zero(secret, sizeof secret);
  return s;
}

}  // namespace kmsfs::kms_local
