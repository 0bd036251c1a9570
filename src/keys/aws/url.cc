#include "keys/aws/url.h"

namespace kmsfs::aws {

Result<Url> parse_url(std::string_view s) {
  auto bad = [&](std::string_view why) {
    return Status(Code::kInvalidArgument, "endpoint URL '" + std::string(s) + "': " + std::string(why));
  };
  size_t scheme_end = s.find("://");
  if (scheme_end == std::string_view::npos) return bad("no scheme (http:// or https://)");
  std::string_view scheme = s.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") return bad("scheme must be http or https");
  std::string_view rest = s.substr(scheme_end + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("no query or fragment allowed");
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return bad("no host");
  Url u;
  u.origin = std::string(scheme) + "://" + std::string(authority);
  u.host_header = std::string(authority);
  u.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  return u;
}

}  // namespace kmsfs::aws
