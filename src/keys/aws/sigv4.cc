#include "keys/aws/sigv4.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "crypto/kdf.h"

namespace kmsfs::aws {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Trims and collapses every run of whitespace (including folded continuation lines) into
// one space, as SigV4 requires.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool pending_space = false;
  for (char c : v) {
    if (is_ws(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

// Header names that are never signed: rewritten by proxies or added by the transport after
// signing, or the signature itself.
bool never_signed(std::string_view lname) {
  static constexpr std::string_view kSkip[] = {
      "authorization", "user-agent",        "x-amzn-trace-id",    "expect",
      "connection",    "transfer-encoding", "proxy-authorization", "x-amz-user-agent"};
  return std::find(std::begin(kSkip), std::end(kSkip), lname) != std::end(kSkip);
}

// Lowercase name -> values joined with ',' in request order.
std::map<std::string, std::string> grouped_headers(const HttpRequest& req) {
  std::map<std::string, std::string> out;
  for (const auto& [n, v] : req.headers) {
    std::string key = lower(canonical_value(n));
    auto [it, fresh] = out.try_emplace(key, canonical_value(v));
    if (!fresh) it->second += "," + canonical_value(v);
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, char sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

Signed finish(std::string canonical, const Credentials& creds, const SigningParams& p) {
  Signed s;
  s.canonical_request = std::move(canonical);
  s.string_to_sign = string_to_sign(p.amz_date, credential_scope(p.amz_date, p.region, p.service),
                                    s.canonical_request);
  s.signature = signature(creds.secret_access_key.span(), p.amz_date, p.region, p.service,
                          s.string_to_sign);
  return s;
}

// RFC 9110 token characters: what a header name may be made of. Anything else (a space, a
// ':' or ';', a control character) would put on the wire, or in SignedHeaders, a name
// other than the one signed.
bool is_token(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (std::isalnum(c) == 0 && std::string_view("!#$%&'*+-.^_`|~").find(char(c)) == std::string_view::npos)
      return false;
  }
  return true;
}

// A header value as it goes on the wire: visible characters, spaces, tabs and bytes from
// 0x80 up, and line breaks only as folds (followed by a space or tab: the suite's
// multiline value), so that no value can end its line and start another header.
bool is_wire_value(std::string_view v) {
  for (size_t i = 0; i < v.size(); ++i) {
    const auto c = static_cast<unsigned char>(v[i]);
    if (c == '\r' && i + 1 < v.size() && v[i + 1] == '\n') continue;
    if (c == '\n') {
      if (i + 1 == v.size() || (v[i + 1] != ' ' && v[i + 1] != '\t')) return false;
      continue;
    }
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// What the verifier insists on (verify_header_signature) and a server needs to recompute
// the signature, checked before signing so that the signer never sends a request that is
// refused however good its signature.
Status check_headers(const HttpRequest& req) {
  bool host = false;
  for (const auto& [n, v] : req.headers) {
    if (!is_token(n)) return Status(Code::kInvalidArgument, "SigV4: header name '" + uri_encode(n, false) + "' is not an HTTP token");
    if (!is_wire_value(v)) return Status(Code::kInvalidArgument, "SigV4: header " + n + " has a control character or a line break in its value");
    host = host || lower(n) == "host";
  }
  if (!host) return Status(Code::kInvalidArgument, "SigV4: the request has no Host header (it is always signed)");
  return Status::Ok();
}

Status check_params(const Credentials& creds, const SigningParams& p) {
  if (p.amz_date.size() != 16 || p.amz_date[8] != 'T' || p.amz_date[15] != 'Z') {
    return Status(Code::kInvalidArgument, "SigV4: amz_date must be YYYYMMDDTHHMMSSZ");
  }
  if (p.region.empty() || p.service.empty()) {
    return Status(Code::kInvalidArgument, "SigV4: region and service are required");
  }
  if (creds.access_key_id.empty() || creds.secret_access_key.empty()) {
    return Status(Code::kInvalidArgument, "SigV4: no credentials");
  }
  return Status::Ok();
}

}  // namespace

Credentials Credentials::make(std::string access_key_id, std::string_view secret,
                              std::string session_token) {
  Credentials c;
  c.access_key_id = std::move(access_key_id);
  c.secret_access_key = SecureBuffer::copy_of(as_bytes(secret));
  c.session_token = std::move(session_token);
  return c;
}

Credentials Credentials::clone() const {
  Credentials c;
  c.access_key_id = access_key_id;
  c.secret_access_key = secret_access_key.clone();
  c.session_token = session_token;
  c.expiration = expiration;
  return c;
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  time_t secs = std::chrono::system_clock::to_time_t(t);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

Result<std::string> amz_date_from_iso8601(std::string_view iso) {
  // YYYY-MM-DDTHH:MM:SSZ
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:ddZ";
  bool ok = iso.size() == kShape.size();
  std::string out;
  for (size_t i = 0; ok && i < iso.size(); ++i) {
    if (kShape[i] == 'd') {
      ok = std::isdigit(static_cast<unsigned char>(iso[i])) != 0;
      out += iso[i];
    } else {
      ok = iso[i] == kShape[i];
      if (kShape[i] == 'T' || kShape[i] == 'Z') out += iso[i];
    }
  }
  if (!ok) return Status(Code::kInvalidArgument, "not an ISO 8601 UTC time: " + std::string(iso));
  return out;
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string uri_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += char(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string canonical_path(std::string_view path, bool normalize) {
  if (path.empty()) return "/";
  if (!normalize) return uri_encode(path, /*keep_slash=*/true);
  std::vector<std::string> segs;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(pos, end - pos);
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segs.emplace_back(seg);
    }
    pos = end + 1;
  }
  std::string out = "/" + join(segs, '/');
  if (!segs.empty() && path.back() == '/') out += '/';
  return uri_encode(out, /*keep_slash=*/true);
}

std::string canonical_query(std::string_view raw) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t pos = 0;
  while (pos <= raw.size() && !raw.empty()) {
    size_t end = raw.find('&', pos);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view kv = raw.substr(pos, end - pos);
    pos = end + 1;
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    std::string key = uri_encode(uri_decode(kv.substr(0, eq)), false);
    std::string value =
        eq == std::string_view::npos ? "" : uri_encode(uri_decode(kv.substr(eq + 1)), false);
    if (key == "X-Amz-Signature") continue;
    params.emplace_back(std::move(key), std::move(value));
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

std::vector<std::string> headers_to_sign(const HttpRequest& req) {
  std::vector<std::string> out;
  for (const auto& [name, value] : grouped_headers(req)) {
    if (!never_signed(name)) out.push_back(name);
  }
  return out;  // sorted: grouped_headers is a std::map
}

Result<std::string> canonical_request(const HttpRequest& req,
                                      const std::vector<std::string>& signed_headers,
                                      std::string_view payload_hash, bool normalize_path) {
  auto grouped = grouped_headers(req);
  std::string out = req.method + "\n" + canonical_path(req.path, normalize_path) + "\n" +
                    canonical_query(req.query) + "\n";
  for (const std::string& h : signed_headers) {
    auto it = grouped.find(h);
    if (it == grouped.end()) {
      return Status(Code::kInvalidArgument, "SigV4: signed header '" + h + "' is missing");
    }
    out += h + ":" + it->second + "\n";
  }
  out += "\n" + join(signed_headers, ';') + "\n";
  out += payload_hash;
  return out;
}

std::string credential_scope(std::string_view amz_date, std::string_view region,
                             std::string_view service) {
  return std::string(amz_date.substr(0, 8)) + "/" + std::string(region) + "/" +
         std::string(service) + "/aws4_request";
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request) {
  return std::string(kAlgorithm) + "\n" + std::string(amz_date) + "\n" + std::string(scope) +
         "\n" + sha256_hex(canonical_request);
}

std::string signature(ByteSpan secret, std::string_view amz_date, std::string_view region,
                      std::string_view service, std::string_view sts) {
  // "AWS4" + secret is key material: build it in locked memory, and wipe each link of the
  // HMAC chain (the last one, the signing key, is valid for a whole day).
  SecureBuffer k_secret(4 + secret.size());
  std::copy_n("AWS4", 4, k_secret.data());
  std::copy(secret.begin(), secret.end(), k_secret.data() + 4);
  Digest32 k_date = hmac_sha256(k_secret.span(), as_bytes(amz_date.substr(0, 8)));
  Digest32 k_region = hmac_sha256(k_date, as_bytes(region));
  Digest32 k_service = hmac_sha256(k_region, as_bytes(service));
  Digest32 k_signing = hmac_sha256(k_service, as_bytes("aws4_request"));
  Digest32 sig = hmac_sha256(k_signing, as_bytes(sts));
  for (Digest32* d : {&k_date, &k_region, &k_service, &k_signing}) {
    secure_zero(d->data(), d->size());
  }
  return to_hex(sig);
}

std::string sha256_hex(std::string_view data) { return to_hex(sha256(as_bytes(data))); }

Result<Signed> sign_headers(HttpRequest& req, const Credentials& creds, const SigningParams& p) {
  RETURN_IF_ERROR(check_params(creds, p));
  HttpRequest out = req;
  for (std::string_view h :
       {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}) {
    out.remove_header(h);
  }
  std::string payload_hash = sha256_hex(out.body);
  if (!creds.session_token.empty()) out.headers.emplace_back("X-Amz-Security-Token", creds.session_token);
  out.headers.emplace_back("X-Amz-Date", p.amz_date);
  if (p.sign_body) out.headers.emplace_back("x-amz-content-sha256", payload_hash);
  // After adding ours: the session token is checked too. `req` is left alone on failure.
  RETURN_IF_ERROR(check_headers(out));

  std::vector<std::string> names = headers_to_sign(out);
  if (p.omit_session_token) std::erase(names, std::string("x-amz-security-token"));
  ASSIGN_OR_RETURN(std::string canonical,
                   canonical_request(out, names, payload_hash, p.normalize_path));
  Signed s = finish(std::move(canonical), creds, p);
  out.headers.emplace_back(
      "Authorization", std::string(kAlgorithm) + " Credential=" + creds.access_key_id + "/" +
                           credential_scope(p.amz_date, p.region, p.service) +
                           ", SignedHeaders=" + join(names, ';') + ", Signature=" + s.signature);
  req = std::move(out);
  return s;
}

Result<Signed> presign_query(HttpRequest& req, const Credentials& creds, const SigningParams& p) {
  RETURN_IF_ERROR(check_params(creds, p));
  std::vector<std::string> names = headers_to_sign(req);
  std::string scope = credential_scope(p.amz_date, p.region, p.service);
  // The order the suite's signed requests use; the canonical form sorts anyway.
  std::vector<std::pair<std::string, std::string>> added = {
      {"X-Amz-Algorithm", std::string(kAlgorithm)},
      {"X-Amz-Credential", creds.access_key_id + "/" + scope},
      {"X-Amz-Date", p.amz_date},
      {"X-Amz-SignedHeaders", join(names, ';')},
      {"X-Amz-Expires", std::to_string(p.expires.count())},
  };
  auto append = [](std::string& q, std::string_view k, std::string_view v) {
    if (!q.empty()) q += '&';
    q += uri_encode(k, false) + "=" + uri_encode(v, false);
  };
  std::string query = req.query;
  for (const auto& [k, v] : added) append(query, k, v);
  std::string signed_query = query;
  if (!creds.session_token.empty()) {
    if (!p.omit_session_token) append(query, "X-Amz-Security-Token", creds.session_token);
    append(signed_query, "X-Amz-Security-Token", creds.session_token);
  }

  HttpRequest to_sign = req;
  to_sign.query = query;
  ASSIGN_OR_RETURN(std::string canonical,
                   canonical_request(to_sign, names, sha256_hex(req.body), p.normalize_path));
  Signed s = finish(std::move(canonical), creds, p);
  append(signed_query, "X-Amz-Signature", s.signature);
  req.query = std::move(signed_query);
  return s;
}

Result<Authorization> parse_authorization(std::string_view value) {
  auto bad = [](std::string_view why) {
    return Status(Code::kInvalidArgument, "malformed Authorization header: " + std::string(why));
  };
  if (value.substr(0, kAlgorithm.size()) != kAlgorithm) return bad("not AWS4-HMAC-SHA256");
  value.remove_prefix(kAlgorithm.size());
  Authorization a;
  std::string credential, signed_headers;
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view part = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    while (!part.empty() && is_ws(part.front())) part.remove_prefix(1);
    while (!part.empty() && is_ws(part.back())) part.remove_suffix(1);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) return bad("component without '='");
    std::string_view k = part.substr(0, eq), v = part.substr(eq + 1);
    if (k == "Credential") credential = v;
    else if (k == "SignedHeaders") signed_headers = v;
    else if (k == "Signature") a.signature = v;
    else return bad("unknown component");
  }
  // AKID/date/region/service/aws4_request; the key id itself never contains '/'.
  std::vector<std::string> parts;
  for (size_t pos = 0;;) {
    size_t slash = credential.find('/', pos);
    parts.push_back(credential.substr(pos, slash - pos));
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  if (parts.size() != 5 || parts[4] != "aws4_request" || parts[1].size() != 8) {
    return bad("Credential is not AKID/YYYYMMDD/region/service/aws4_request");
  }
  a.access_key_id = parts[0];
  a.date = parts[1];
  a.region = parts[2];
  a.service = parts[3];
  for (size_t pos = 0; !signed_headers.empty();) {
    size_t semi = signed_headers.find(';', pos);
    a.signed_headers.push_back(signed_headers.substr(pos, semi - pos));
    if (semi == std::string::npos) break;
    pos = semi + 1;
  }
  if (a.signed_headers.empty() || a.signature.size() != 64) {
    return bad("no SignedHeaders or Signature");
  }
  return a;
}

Status verify_header_signature(const HttpRequest& req, const Authorization& auth,
                               ByteSpan secret, bool normalize_path) {
  auto denied = [](std::string why) {
    return Status(Code::kPermissionDenied, "SigV4 verification failed: " + why);
  };
  std::optional<std::string_view> date = req.header("x-amz-date");
  if (!date || date->size() != 16) return Status(Code::kInvalidArgument, "no X-Amz-Date header");
  if (date->substr(0, 8) != auth.date) return denied("credential scope date is not X-Amz-Date's");
  for (std::string_view must : {"host", "x-amz-date"}) {
    if (std::find(auth.signed_headers.begin(), auth.signed_headers.end(), must) ==
        auth.signed_headers.end()) {
      return denied(std::string(must) + " is not signed");
    }
  }
  if (!std::is_sorted(auth.signed_headers.begin(), auth.signed_headers.end())) {
    return denied("SignedHeaders are not sorted");
  }
  std::string payload_hash = sha256_hex(req.body);
  if (auto claimed = req.header("x-amz-content-sha256");
      claimed && !ct_equal(as_bytes(canonical_value(*claimed)), as_bytes(payload_hash))) {
    return denied("x-amz-content-sha256 is not the body's hash");
  }
  ASSIGN_OR_RETURN(std::string canonical,
                   canonical_request(req, auth.signed_headers, payload_hash, normalize_path));
  std::string sts = string_to_sign(*date, credential_scope(*date, auth.region, auth.service),
                                   canonical);
  std::string expected = signature(secret, *date, auth.region, auth.service, sts);
  if (!ct_equal(as_bytes(expected), as_bytes(auth.signature))) return denied("signature mismatch");
  return Status::Ok();
}

}  // namespace kmsfs::aws
