// HttpRequest helpers and the request.txt form of the AWS signing test suite.
#include <strings.h>

#include "keys/aws/sigv4.h"

namespace kmsfs::aws {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

std::optional<std::string_view> HttpRequest::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return std::string_view(v);
  }
  return std::nullopt;
}

void HttpRequest::remove_header(std::string_view name) {
  std::erase_if(headers, [&](const auto& h) { return iequals(h.first, name); });
}

Result<HttpRequest> parse_http_request(std::string_view text) {
  HttpRequest req;
  size_t pos = 0;
  auto next_line = [&](std::string_view& line) {
    if (pos >= text.size()) return false;
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = end + 1;
    return true;
  };

  std::string_view line;
  if (!next_line(line)) return Status(Code::kInvalidArgument, "empty HTTP request");
  size_t first = line.find(' ');
  size_t last = line.rfind(' ');
  if (first == std::string_view::npos || last == first) {
    return Status(Code::kInvalidArgument, "malformed HTTP request line");
  }
  req.method = std::string(line.substr(0, first));
  std::string_view target = line.substr(first + 1, last - first - 1);
  size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));

  while (next_line(line)) {
    if (line.empty()) {
      if (pos < text.size()) req.body = std::string(text.substr(pos));
      break;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      if (req.headers.empty()) return Status(Code::kInvalidArgument, "continuation line first");
      req.headers.back().second += "\n";
      req.headers.back().second += line;
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Status(Code::kInvalidArgument, "malformed HTTP header line");
    }
    req.headers.emplace_back(std::string(line.substr(0, colon)),
                             std::string(line.substr(colon + 1)));
  }
  return req;
}

std::string to_http_text(const HttpRequest& req) {
  std::string out = req.method + " " + req.path;
  if (!req.query.empty()) out += "?" + req.query;
  out += " HTTP/1.1\n";
  for (const auto& [n, v] : req.headers) out += n + ":" + v + "\n";
  out += "\n";
  out += req.body;
  return out;
}

}  // namespace kmsfs::aws
