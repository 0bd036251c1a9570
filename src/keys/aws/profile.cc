// ~/.aws/config and ~/.aws/credentials.
#include <cctype>

#include "base/file_io.h"
#include "keys/aws/credentials.h"

namespace kmsfs::aws {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

IniFile load_ini(const std::string& path) {
  Result<Bytes> b = read_file(path, 1 << 20);
  if (!b.ok()) return {};  // a missing file is an empty one, as for the SDKs
  IniFile ini = parse_ini(as_chars(*b));
  secure_zero(b->data(), b->size());  // the credentials file holds secret keys
  return ini;
}

void wipe_ini(IniFile& ini) {
  for (auto& [section, kv] : ini) {
    for (auto& [k, v] : kv) wipe(v);
  }
}

}  // namespace

IniFile parse_ini(std::string_view text) {
  IniFile out;
  std::map<std::string, std::string>* section = nullptr;
  // The key whose indented lines are sub-settings: one set with nothing after its '='
  // ("kms =\n  endpoint_url = URL" is stored as "kms.endpoint_url").
  std::string parent;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    bool indented = !raw.empty() && (raw.front() == ' ' || raw.front() == '\t');
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = &out[std::string(trim(line.substr(1, line.size() - 2)))];
      parent.clear();
      continue;
    }
    if (!section) continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string key(trim(line.substr(0, eq)));
    for (char& c : key) c = char(std::tolower(static_cast<unsigned char>(c)));
    std::string value(trim(line.substr(eq + 1)));
    if (indented) {
      // A sub-setting of the key above; an indented line under a key with a value is a
      // continuation of that value, which no setting kmsfs reads has.
      if (!parent.empty()) (*section)[parent + "." + key] = std::move(value);
      continue;
    }
    parent = value.empty() ? key : std::string();
    (*section)[key] = std::move(value);
  }
  return out;
}

ProfileFiles ProfileFiles::load(const Env& env) {
  ProfileFiles f;
  std::string home = env.home();
  f.config_path = env.get("AWS_CONFIG_FILE").value_or(home + "/.aws/config");
  f.credentials_path = env.get("AWS_SHARED_CREDENTIALS_FILE").value_or(home + "/.aws/credentials");
  f.config = load_ini(f.config_path);
  f.credentials = load_ini(f.credentials_path);
  return f;
}

ProfileFiles::~ProfileFiles() {
  wipe_ini(config);
  wipe_ini(credentials);
}

std::string profile_name(const Env& env) {
  if (auto p = env.get("AWS_PROFILE")) return *p;
  if (auto p = env.get("AWS_DEFAULT_PROFILE")) return *p;
  return "default";
}

Result<std::map<std::string, std::string>> profile_settings(const ProfileFiles& files,
                                                            const std::string& profile) {
  std::map<std::string, std::string> out;
  bool found = false;
  // In the config file a profile is "[profile NAME]"; the default one may also be "[default]".
  for (const std::string& section :
       {profile == "default" ? std::string("default") : std::string(), "profile " + profile}) {
    if (section.empty()) continue;
    if (auto it = files.config.find(section); it != files.config.end()) {
      found = true;
      for (const auto& [k, v] : it->second) out[k] = v;
    }
  }
  // The credentials file's "[NAME]" wins over the config file.
  if (auto it = files.credentials.find(profile); it != files.credentials.end()) {
    found = true;
    for (const auto& [k, v] : it->second) out[k] = v;
  }
  if (!found) return Status(Code::kNotFound, "no AWS profile '" + profile + "' in " + files.config_path + " or " +
                                                 files.credentials_path);
  return out;
}

}  // namespace kmsfs::aws
