// Just enough URL handling for AWS endpoints: scheme://host[:port][/path].
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace kmsfs::aws {

struct Url {
  std::string scheme;       // "http" or "https"
  std::string host;         // "kms.eu-west-1.amazonaws.com", "127.0.0.1", "::1" (no brackets)
  std::string origin;       // "https://kms.eu-west-1.amazonaws.com:8443"
  std::string host_header;  // "kms.eu-west-1.amazonaws.com:8443" (port only if explicit)
  std::string path;         // "/" if none; no query
};
// kInvalidArgument unless http:// or https:// with a host; a query or fragment is refused.
Result<Url> parse_url(std::string_view url);

// 127.0.0.0/8 (dotted quad), ::1, "localhost" (any case, optional trailing dot).
bool is_loopback_host(std::string_view host);

// Plain http:// only to a loopback host (tools/kms-local, a test server) unless
// `allow_insecure` (KMSFS_KMS_ALLOW_INSECURE_ENDPOINT=1): a KMS request carries a
// signature and an answer carries plaintext keys. kInvalidArgument otherwise.
Status check_endpoint_security(const Url& url, bool allow_insecure);

}  // namespace kmsfs::aws
