// AWS Signature Version 4 as pure functions: no clock, no I/O, no global state. The client
// signs with sign_headers(); a server (tools/kms-local) verifies with parse_authorization()
// + verify_header_signature(), which recompute the same canonical request. Checked against
// the AWS signing test suite (tests/fixtures/sigv4).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"

namespace kmsfs::aws {

struct HttpRequest {
  std::string method;  // "POST"
  std::string path;    // as on the wire, without the query: "/"
  std::string query;   // raw, without the '?'
  // In order; names keep their case and values their raw bytes (a continuation line stays
  // "\n  value2"), because canonicalisation is the signer's job, not the parser's.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // First value of a header, case-insensitively.
  std::optional<std::string_view> header(std::string_view name) const;
  void remove_header(std::string_view name);  // every occurrence, case-insensitively
};

// A request in the test suite's request.txt form: request line, "Name:value" lines
// (continuation lines start with whitespace), an empty line, then the body verbatim. The
// request target may contain spaces (the suite has "/example space/"): the method is up to
// the first space and the version after the last one.
Result<HttpRequest> parse_http_request(std::string_view text);
// The inverse, with "HTTP/1.1", "\n" line ends and the path?query target.
std::string to_http_text(const HttpRequest& req);

// Long-term or temporary AWS credentials. Move-only: the secret lives in locked memory and
// copies of it should be visible in review (clone()).
struct Credentials {
  std::string access_key_id;
  SecureBuffer secret_access_key;
  std::string session_token;  // empty for long-term keys
  std::optional<std::chrono::system_clock::time_point> expiration;  // none: never expires

  static Credentials make(std::string access_key_id, std::string_view secret,
                          std::string session_token = {});
  Credentials clone() const;
};

struct SigningParams {
  std::string region;
  std::string service;
  std::string amz_date;        // "YYYYMMDDTHHMMSSZ", see amz_date()
  bool normalize_path = true;  // remove "." / ".." / empty segments (every service but S3)
  bool sign_body = false;      // add and sign x-amz-content-sha256
  // Sign without the session token and add X-Amz-Security-Token after signing (what some
  // services expect; the suite's post-sts-header-after). Default: the token is signed.
  bool omit_session_token = false;
  std::chrono::seconds expires{3600};  // presign_query() only
};

std::string amz_date(std::chrono::system_clock::time_point t);
// "2015-08-30T12:36:00Z" -> "20150830T123600Z" (the suite's context.json form).
Result<std::string> amz_date_from_iso8601(std::string_view iso);

// What the signer computed, for tests and for logging at trace level (nothing secret).
struct Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // lowercase hex
};

// Adds [X-Amz-Security-Token], X-Amz-Date, [x-amz-content-sha256] and Authorization,
// replacing any from an earlier attempt (a retry re-signs with a fresh date).
Result<Signed> sign_headers(HttpRequest& req, const Credentials& creds, const SigningParams& p);
// Appends the X-Amz-* query parameters (presigned URL); headers are left alone.
Result<Signed> presign_query(HttpRequest& req, const Credentials& creds, const SigningParams& p);

// --- The pieces, for a verifier and for tests. ---

// RFC 3986 unreserved characters kept, everything else %XX (uppercase); '/' kept if
// keep_slash.
std::string uri_encode(std::string_view s, bool keep_slash);
// %XX decoded; anything else (including '+') kept as is.
std::string uri_decode(std::string_view s);
std::string canonical_path(std::string_view path, bool normalize);
// Every parameter decoded then re-encoded, sorted by key then value; X-Amz-Signature is
// left out so that a verifier can pass a presigned query as received.
std::string canonical_query(std::string_view raw_query);
// Lowercase names of the headers sign_headers() signs: all of them but a few that proxies
// and SDKs rewrite (authorization, user-agent, x-amzn-trace-id, expect, connection...).
std::vector<std::string> headers_to_sign(const HttpRequest& req);
// kInvalidArgument if a signed header is missing from the request.
Result<std::string> canonical_request(const HttpRequest& req,
                                      const std::vector<std::string>& signed_headers,
                                      std::string_view payload_hash, bool normalize_path);
std::string credential_scope(std::string_view amz_date, std::string_view region,
                             std::string_view service);
std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request);
// HMAC chain "AWS4"+secret -> date -> region -> service -> "aws4_request" -> string to sign.
std::string signature(ByteSpan secret, std::string_view amz_date, std::string_view region,
                      std::string_view service, std::string_view string_to_sign);
std::string sha256_hex(std::string_view data);

// "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request,
//  SignedHeaders=host;x-amz-date, Signature=<hex>"
struct Authorization {
  std::string access_key_id;
  std::string date;  // YYYYMMDD
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;
  std::string signature;
};
Result<Authorization> parse_authorization(std::string_view value);

// Server side: recomputes the signature of a header-signed request from its X-Amz-Date,
// the SignedHeaders and the body, and compares it in constant time. kPermissionDenied on a
// mismatch (or a scope date that is not X-Amz-Date's day, or an x-amz-content-sha256 that
// is not the body's hash); kInvalidArgument on a malformed request. The caller checks the
// clock skew, region, service and which access key it is.
Status verify_header_signature(const HttpRequest& req, const Authorization& auth,
                               ByteSpan secret, bool normalize_path = true);

}  // namespace kmsfs::aws
