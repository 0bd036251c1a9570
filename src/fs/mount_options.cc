#include "fs/mount_options.h"

namespace kmsfs {

namespace {

// What libfuse's option-group parser undoes (fuse_opt.c): `\,`, `\\` and `\NNN`.
void append_escaped(std::string& out, const std::string& opt) {
  for (char c : opt) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
}

}  // namespace

std::vector<std::string> split_mount_options(const std::vector<std::string>& raw) {
  std::vector<std::string> out;
  for (const auto& r : raw) {
    size_t start = 0;
    while (start <= r.size()) {
      size_t comma = r.find(',', start);
      std::string o = r.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!o.empty()) out.push_back(o);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

std::string fuse_option_string(const std::string& backing, const std::vector<std::string>& options) {
  std::string opts;
  append_escaped(opts, "fsname=kmsfs:" + backing);
  opts += ",subtype=kmsfs";
  bool allow_other = false, default_permissions = false;
  for (const auto& o : options) {
    if (o == "allow_other") allow_other = true;
    if (o == "default_permissions") default_permissions = true;
    opts += ',';
    append_escaped(opts, o);
  }
  if (allow_other && !default_permissions) opts += ",default_permissions";
  return opts;
}

}  // namespace kmsfs
