// Just enough URL handling for AWS endpoints: scheme://host[:port][/path].
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace kmsfs::aws {

struct Url {
  std::string origin;       // "https://kms.eu-west-1.amazonaws.com:8443"
  std::string host_header;  // "kms.eu-west-1.amazonaws.com:8443" (port only if explicit)
  std::string path;         // "/" if none; no query
};
// kInvalidArgument unless http:// or https:// with a host; a query or fragment is refused.
Result<Url> parse_url(std::string_view url);

}  // namespace kmsfs::aws
