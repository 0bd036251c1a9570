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

std::vector<std::string> split_mount_options(std::string_view list) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : list) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> split_mount_options(const std::vector<std::string>& raw) {
  std::vector<std::string> out;
  for (const auto& r : raw)
    for (auto& o : split_mount_options(std::string_view(r))) out.push_back(std::move(o));
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
