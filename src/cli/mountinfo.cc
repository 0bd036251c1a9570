#include "cli/mountinfo.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace kmsfs::cli {

namespace {

// mountinfo writes ' ', '\t', '\n' and '\\' as \ooo.
std::string unescape(const std::string& t) {
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    auto octal = [&](size_t k) { return k < t.size() && t[k] >= '0' && t[k] <= '7'; };
    if (t[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((t[i + 1] - '0') * 64 + (t[i + 2] - '0') * 8 + (t[i + 3] - '0'));
      i += 3;
    } else {
      out += t[i];
    }
  }
  return out;
}

}  // namespace

std::string MountEntry::kmsfs_backing() const {
  if (fstype != "fuse.kmsfs" || !source.starts_with("kmsfs:")) return "";
  return source.substr(6);
}

std::vector<MountEntry> read_mountinfo() {
  std::vector<MountEntry> out;
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream in(line);
    std::vector<std::string> fields;
    for (std::string w; in >> w;) fields.push_back(w);
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || dash + 2 >= fields.end()) continue;
    out.push_back({unescape(fields[4]), *(dash + 1), unescape(*(dash + 2))});
  }
  return out;
}

std::optional<MountEntry> mount_at(const std::string& mountpoint) {
  std::optional<MountEntry> found;
  for (auto& m : read_mountinfo())
    if (m.mountpoint == mountpoint) found = std::move(m);
  return found;
}

}  // namespace kmsfs::cli
