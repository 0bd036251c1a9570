// STS AssumeRole and AssumeRoleWithWebIdentity over the query protocol (form-encoded POST,
// XML answer). The XML is read by a minimal tag scan: the answer's shape is fixed and a
// general parser would copy the secret into strings we cannot wipe.
#include <thread>

#include "base/file_io.h"
#include "keys/aws/credentials.h"
#include "keys/aws/retry.h"
#include "keys/aws/url.h"

namespace kmsfs::aws {
namespace {

// The text of the first <tag>...</tag> inside `xml` (from `from`), entities undecoded.
std::optional<std::string_view> element(std::string_view xml, std::string_view tag, size_t from = 0) {
  std::string open = "<" + std::string(tag) + ">";
  std::string close = "</" + std::string(tag) + ">";
  size_t b = xml.find(open, from);
  if (b == std::string_view::npos) return std::nullopt;
  b += open.size();
  size_t e = xml.find(close, b);
  if (e == std::string_view::npos) return std::nullopt;
  return xml.substr(b, e - b);
}

template <typename S>
void xml_unescape_into(std::string_view in, S& out) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  for (size_t i = 0; i < in.size(); ++i) {
    bool done = false;
    if (in[i] == '&') {
      for (const auto& [ent, ch] : kEntities) {
        if (in.substr(i, ent.size()) == ent) {
          out += ch;
          i += ent.size() - 1;
          done = true;
          break;
        }
      }
    }
    if (!done) out += in[i];
  }
}

std::string form_pair(std::string_view k, std::string_view v) {
  return uri_encode(k, false) + "=" + uri_encode(v, false);
}

Status sts_error(long status, std::string_view body, std::string_view action) {
  std::string code, message;
  if (auto c = element(body, "Code")) xml_unescape_into(*c, code);
  if (auto m = element(body, "Message")) xml_unescape_into(*m, message);
  std::string what = "STS " + std::string(action) + ": " + (code.empty() ? "HTTP " + std::to_string(status) : code) +
                     (message.empty() ? "" : ": " + message);
  RetryClass rc = classify_http(status, code);
  if (rc != RetryClass::kNever) return Status(Code::kUnavailable, what);
  if (code == "AccessDenied" || code == "ExpiredTokenException" || code == "InvalidIdentityToken" ||
      code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" || status == 403) {
    return Status(Code::kPermissionDenied, what);
  }
  return Status(Code::kInvalidArgument, what);
}

// Sends a form body to STS with the standard retries; `sign` is null for web identity
// (that call is authenticated by the token, not SigV4).
Result<Credentials> sts_call(HttpTransport& http, const StsOptions& o, const Credentials* sign,
                             std::string body, std::string_view action) {
  WipeOnExit wipe_body(body);  // holds the web identity token
  std::string region = o.region.empty() ? "us-east-1" : o.region;
  std::string endpoint = o.endpoint;
  if (endpoint.empty()) {
    endpoint = o.region.empty() ? "https://sts.amazonaws.com"
                                : "https://sts." + o.region +
                                      (o.region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com");
  }
  ASSIGN_OR_RETURN(Url url, parse_url(endpoint));
  RetryPolicy policy;
  Status last;
  for (int attempt = 0; attempt < policy.max_attempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(backoff_delay(policy, attempt - 1, default_random01()));
    HttpRequest req;
    req.method = "POST";
    req.path = url.path;
    req.headers = {{"Host", url.host_header},
                   {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
    req.body = body;
    if (sign) {
      auto now = o.clock ? o.clock() : std::chrono::system_clock::now();
      SigningParams sp{.region = region, .service = "sts", .amz_date = amz_date(now)};
      RETURN_IF_ERROR(sign_headers(req, *sign, sp).status());
    }
    HttpCall hc;
    hc.method = "POST";
    hc.url = url.origin + url.path;
    hc.headers = std::move(req.headers);
    hc.body = std::move(req.body);
    WipeOnExit wipe_sent(hc.body);
    Result<HttpResponse> r = http.send(hc);
    if (!r.ok()) {
      if (r.status().code() != Code::kUnavailable) return r.status();
      last = r.status().with_context("STS " + std::string(action));
      continue;
    }
    if (r->status == 200) return parse_sts_credentials(r->body, action);
    last = sts_error(r->status, std::string_view(r->body.data(), r->body.size()), action);
    if (last.code() != Code::kUnavailable) return last;
  }
  return last;
}

}  // namespace

StsOptions sts_options(const Env& env, std::string region) {
  StsOptions o;
  o.region = std::move(region);
  if (o.region.empty()) o.region = env.get("AWS_REGION").value_or(env.get("AWS_DEFAULT_REGION").value_or(""));
  o.endpoint = env.get("AWS_ENDPOINT_URL_STS").value_or(env.get("AWS_ENDPOINT_URL").value_or(""));
  return o;
}

Result<Credentials> parse_sts_credentials(WipedString& xml, std::string_view action) {
  std::string_view s(xml.data(), xml.size());
  auto bad = [&](std::string_view what) {
    wipe(xml);
    return Status(Code::kUnavailable, "STS " + std::string(action) + ": malformed answer (" +
                                          std::string(what) + ")");
  };
  size_t at = s.find("<Credentials>");
  if (at == std::string_view::npos) return bad("no Credentials");
  auto id = element(s, "AccessKeyId", at);
  auto secret = element(s, "SecretAccessKey", at);
  auto token = element(s, "SessionToken", at);
  auto exp = element(s, "Expiration", at);
  if (!id || !secret || !token || !exp) return bad("incomplete Credentials");
  Credentials c;
  xml_unescape_into(*id, c.access_key_id);
  xml_unescape_into(*token, c.session_token);
  WipedString sec;
  xml_unescape_into(*secret, sec);
  c.secret_access_key = SecureBuffer::copy_of(as_bytes(std::string_view(sec.data(), sec.size())));
  wipe(sec);
  Result<std::chrono::system_clock::time_point> t = parse_iso8601(*exp);
  wipe(xml);
  if (!t.ok()) return Status(Code::kUnavailable, "STS " + std::string(action) + ": " + t.status().message());
  c.expiration = *t;
  return c;
}

Result<Credentials> sts_assume_role(HttpTransport& http, const StsOptions& o,
                                    const Credentials& source, const std::string& role_arn,
                                    const std::string& session_name,
                                    const std::string& external_id) {
  std::string body = form_pair("Action", "AssumeRole") + "&" + form_pair("Version", "2011-06-15") +
                     "&" + form_pair("RoleArn", role_arn) + "&" +
                     form_pair("RoleSessionName", session_name);
  if (!external_id.empty()) body += "&" + form_pair("ExternalId", external_id);
  return sts_call(http, o, &source, std::move(body), "AssumeRole");
}

Result<Credentials> sts_assume_role_with_web_identity(HttpTransport& http, const StsOptions& o,
                                                      const std::string& role_arn,
                                                      const std::string& session_name,
                                                      const std::string& token_file) {
  // Read at every fetch: Kubernetes rotates projected service account tokens.
  Result<Bytes> tok = read_file(token_file, 64 * 1024);
  if (!tok.ok()) return tok.status().with_context("web identity token file");
  std::string_view t = as_chars(*tok);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.remove_suffix(1);
  std::string body = form_pair("Action", "AssumeRoleWithWebIdentity") + "&" +
                     form_pair("Version", "2011-06-15") + "&" + form_pair("RoleArn", role_arn) +
                     "&" + form_pair("RoleSessionName", session_name) + "&" +
                     form_pair("WebIdentityToken", t);
  secure_zero(tok->data(), tok->size());
  return sts_call(http, o, nullptr, std::move(body), "AssumeRoleWithWebIdentity");
}

}  // namespace kmsfs::aws
