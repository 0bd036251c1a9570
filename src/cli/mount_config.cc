#include "cli/mount_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/exit_codes.h"

namespace kmsfs::cli {

namespace {

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string unquote(std::string v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) return v.substr(1, v.size() - 2);
  return v;
}

std::string normalize_key(std::string k) {
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

const MountOptionSpec* spec_by_key(const std::string& key) {
  for (const auto& s : mount_option_specs())
    if (s.key == key) return &s;
  return nullptr;
}

const MountOptionSpec* spec_by_flag(const std::string& flag) {
  for (const auto& s : mount_option_specs())
    if (s.flag == flag || (!s.short_flag.empty() && s.short_flag == flag)) return &s;
  return nullptr;
}

Result<std::string> flag_value(const std::string& key, const std::string& v) {
  std::string l = v;
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "" || l == "1" || l == "true" || l == "yes" || l == "on") return std::string("true");
  if (l == "0" || l == "false" || l == "no" || l == "off") return std::string("false");
  return Status(Code::kInvalidArgument, key + "=" + v + ": a flag takes true or false");
}

// Command-line words into `layer`; words it does not know go to `extra`, positional ones
// to `positionals`. Shared by the command line and the legacy KMSFS_OPTIONS fragment.
struct ParsedWords {
  std::vector<std::string> positionals;
  std::vector<std::string> extra;
  std::optional<std::string> config;
  bool help = false;
};

Status parse_words(const std::vector<std::string>& w, MountSettings& layer, ParsedWords& out) {
  bool only_positionals = false;
  for (size_t i = 0; i < w.size(); ++i) {
    const std::string& word = w[i];
    if (only_positionals || word.size() < 2 || word[0] != '-') {
      out.positionals.push_back(word);
      continue;
    }
    if (word == "--") {
      only_positionals = true;
      continue;
    }
    if (word == "-h" || word == "--help") {
      out.help = true;
      out.extra.push_back(word);
      continue;
    }
    if (word == "--config" || word.starts_with("--config=")) {
      if (word.size() > 8) out.config = word.substr(9);
      else if (i + 1 < w.size()) out.config = w[++i];
      else return Status(Code::kInvalidArgument, "--config: a FILE is needed");
      continue;
    }
    if (word == "-o" || (word.starts_with("-o") && word[1] == 'o')) {
      std::string list;
      if (word.size() > 2) list = word.substr(2);
      else if (i + 1 < w.size()) list = w[++i];
      else return Status(Code::kInvalidArgument, "-o: a list of options is needed");
      for (const auto& item : split_mount_options(list)) RETURN_IF_ERROR(add_mount_option(layer, item));
      continue;
    }
    const size_t eq = word.find('=');
    const std::string name = word.substr(0, eq);
    const MountOptionSpec* spec = spec_by_flag(name);
    if (spec == nullptr) {
      out.extra.push_back(word);
      continue;
    }
    if (spec->takes_value) {
      if (eq != std::string::npos) layer.values[spec->key] = word.substr(eq + 1);
      else if (i + 1 < w.size()) layer.values[spec->key] = w[++i];
      else return Status(Code::kInvalidArgument, name + ": a value is needed");
    } else {
      ASSIGN_OR_RETURN(layer.values[spec->key], flag_value(spec->key, eq == std::string::npos ? "" : word.substr(eq + 1)));
    }
  }
  return Status::Ok();
}

std::vector<std::string> split_spaces(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// A `KMSFS_OPTIONS=-o allow_other --key-ttl 60` value of the EnvironmentFile form.
Status add_legacy_fragment(MountSettings& layer, const std::string& value, const std::string& where) {
  ParsedWords pw;
  RETURN_IF_ERROR(parse_words(split_spaces(value), layer, pw));
  if (!pw.positionals.empty() || !pw.extra.empty() || pw.config)
    return Status(Code::kInvalidArgument, where + ": options '" + value + "': only mount options and flags belong here");
  return Status::Ok();
}

Status set_value(MountSettings& layer, const std::string& key, const std::string& value, const std::string& where) {
  if (key == "backing" || key == "mountpoint") {
    layer.values[key] = value;
    return Status::Ok();
  }
  if (key == "options") {
    if (!value.empty() && value[0] == '-') return add_legacy_fragment(layer, value, where);
    for (const auto& item : split_mount_options(value)) RETURN_IF_ERROR(add_mount_option(layer, item));
    return Status::Ok();
  }
  const MountOptionSpec* spec = spec_by_key(key);
  if (spec == nullptr || key == "config")
    return Status(Code::kInvalidArgument, where + ": unknown setting '" + key + "' (see kmsfs mount --help)");
  if (spec->takes_value) {
    layer.values[key] = value;
  } else {
    auto v = flag_value(key, value);
    if (!v.ok()) return Status(Code::kInvalidArgument, where + ": " + v.status().message());
    layer.values[key] = *v;
  }
  return Status::Ok();
}

}  // namespace

std::string mount_config_dir() {
  const char* d = std::getenv("KMSFS_CONFIG_DIR");
  return d != nullptr && *d != '\0' ? d : "/etc/kmsfs";
}

const std::vector<MountOptionSpec>& mount_option_specs() {
  static const std::vector<MountOptionSpec> specs = [] {
    CLI::App app;
    Commands commands;
    add_mount_commands(app, commands);
    std::vector<MountOptionSpec> out;
    for (const CLI::Option* o : app.get_subcommand("mount")->get_options()) {
      if (o->get_lnames().empty()) continue;  // positionals, -o
      const std::string l = o->get_lnames().front();
      if (l == "help" || l == "config") continue;
      MountOptionSpec s;
      s.key = normalize_key(l);
      s.flag = "--" + l;
      if (!o->get_snames().empty()) s.short_flag = "-" + o->get_snames().front();
      s.takes_value = o->get_expected_max() != 0;  // flags expect no value
      out.push_back(std::move(s));
    }
    return out;
  }();
  return specs;
}

Status add_mount_option(MountSettings& layer, const std::string& item) {
  const size_t eq = item.find('=');
  const std::string key = normalize_key(item.substr(0, eq));
  const MountOptionSpec* spec = spec_by_key(key);
  // default_permissions, allow_other, ro, ... are FUSE's and the kernel's.
  if (spec == nullptr) {
    if (std::find(layer.options.begin(), layer.options.end(), item) == layer.options.end()) layer.options.push_back(item);
    return Status::Ok();
  }
  if (spec->takes_value) {
    if (eq == std::string::npos) return Status(Code::kInvalidArgument, "mount option " + key + " needs a value (" + key + "=...)");
    layer.values[key] = item.substr(eq + 1);
  } else {
    ASSIGN_OR_RETURN(layer.values[key], flag_value(key, eq == std::string::npos ? "" : item.substr(eq + 1)));
  }
  return Status::Ok();
}

Result<MountSettings> parse_mount_config(std::string_view text, const std::string& where) {
  MountSettings layer;
  std::istringstream in{std::string(text)};
  int lineno = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++lineno;
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    const std::string at = where + ":" + std::to_string(lineno);
    const size_t eq = line.find('=');
    std::string key = trim(line.substr(0, eq));
    std::string value = eq == std::string::npos ? "" : unquote(trim(line.substr(eq + 1)));
    if (key.starts_with("KMSFS_")) {  // the EnvironmentFile form
      key = key.substr(6);
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    key = normalize_key(key);
    if (key.empty()) return Status(Code::kInvalidArgument, at + ": a line must be KEY = VALUE");
    if (eq == std::string::npos) {
      const MountOptionSpec* spec = spec_by_key(key);
      if (spec == nullptr || spec->takes_value)
        return Status(Code::kInvalidArgument, at + ": '" + key + "' needs a value (KEY = VALUE)");
    }
    if ((key == "backing" || key == "mountpoint") && !value.starts_with("/"))
      return Status(Code::kInvalidArgument, at + ": " + key + " must be an absolute path");
    RETURN_IF_ERROR(set_value(layer, key, value, at));
  }
  return layer;
}

Result<MountSettings> mount_settings_from_env(const EnvLookup& getenv) {
  MountSettings layer;
  std::vector<std::string> keys = {"backing", "mountpoint", "options"};
  for (const auto& s : mount_option_specs())
    if (s.key != "keyring") keys.push_back(s.key);  // KMSFS_KEYRING: read by the keyring locator
  for (const auto& key : keys) {
    std::string name = "KMSFS_" + key;
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (auto v = getenv(name); v && !v->empty()) RETURN_IF_ERROR(set_value(layer, key, *v, "$" + name));
  }
  return layer;
}

Status check_config_file_safety(const std::string& path, bool running_as_root) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::Io(errno, "config file " + path);
  if (!S_ISREG(st.st_mode)) return Status(Code::kInvalidArgument, "config file " + path + " is not a regular file");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Status(Code::kPermissionDenied, "config file " + path + " is writable by group or others (chmod go-w " + path + ")");
  if (running_as_root && st.st_uid != 0)
    return Status(Code::kPermissionDenied, "config file " + path + " is not owned by root (chown root " + path + ")");
  return Status::Ok();
}

std::vector<std::string> merged_mount_words(const MountSettings& cmdline, const MountSettings& env,
                                            const MountSettings& file, const std::vector<std::string>& extra) {
  std::map<std::string, std::string> v = file.values;
  for (const auto& [k, x] : env.values) v[k] = x;
  for (const auto& [k, x] : cmdline.values) v[k] = x;
  std::vector<std::string> out;
  if (v.contains("backing")) out.push_back(v["backing"]);
  if (v.contains("mountpoint")) out.push_back(v["mountpoint"]);
  for (const auto& [k, x] : v) {
    if (k == "backing" || k == "mountpoint") continue;
    const MountOptionSpec* spec = spec_by_key(k);
    if (spec == nullptr) continue;
    if (!spec->takes_value) {
      if (x == "true") out.push_back(spec->flag);
    } else {
      out.push_back(spec->flag + "=" + x);  // one word: a value may start with '-'
    }
  }
  // Generic options accumulate, the command line's last (so its `rw` beats a file's `ro`).
  std::vector<std::string> opts;
  for (const MountSettings* l : {&file, &env, &cmdline})
    for (const auto& o : l->options)
      if (std::find(opts.begin(), opts.end(), o) == opts.end()) opts.push_back(o);
  for (const auto& o : opts) {
    out.push_back("-o");
    const size_t eq = o.find('=');
    // Quoted again: `kmsfs mount` splits -o at the commas outside quotes.
    out.push_back(o.find(',') == std::string::npos || eq == std::string::npos ? o
                                                                              : o.substr(0, eq + 1) + '"' + o.substr(eq + 1) + '"');
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

ExpandedMount load_mount_config(const std::string& path, MountSettings& out) {
  ExpandedMount r;
  if (Status s = check_config_file_safety(path, ::geteuid() == 0); !s.ok()) {
    r.error = s;
    r.exit_code = s.code() == Code::kPermissionDenied ? kExitUnsafeConfig : exit_code(s);
    return r;
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    r.error = Status::Io(errno ? errno : EIO, "config file " + path);
    r.exit_code = exit_code(r.error);
    return r;
  }
  auto parsed = parse_mount_config(text.str(), path);
  if (!parsed.ok()) {
    r.error = parsed.status();
    r.exit_code = exit_code(r.error);
    return r;
  }
  out = std::move(*parsed);
  return r;
}

ExpandedMount expand_mount_words(const std::vector<std::string>& words, const EnvLookup& getenv) {
  ExpandedMount r;
  auto fail = [&r](Status s) {
    r.exit_code = exit_code(s);
    r.error = std::move(s);
    return r;
  };
  MountSettings cmdline;
  ParsedWords pw;
  if (Status s = parse_words(words, cmdline, pw); !s.ok()) return fail(s);
  if (pw.help) {  // the CLI's own help, untouched
    r.words = words;
    return r;
  }
  std::optional<std::string> config = pw.config;
  if (pw.positionals.size() == 1 && pw.positionals[0].find('/') == std::string::npos) {
    if (config) return fail(Status(Code::kInvalidArgument, "give a config NAME or --config FILE, not both"));
    config = mount_config_dir() + "/" + pw.positionals[0] + ".conf";
    if (::access(config->c_str(), F_OK) != 0)
      return fail(Status::Io(errno, "no config file for vault '" + pw.positionals[0] + "': " + *config));
  } else if (pw.positionals.size() == 2) {
    cmdline.values["backing"] = pw.positionals[0];
    cmdline.values["mountpoint"] = pw.positionals[1];
  } else {
    pw.extra.insert(pw.extra.begin(), pw.positionals.begin(), pw.positionals.end());
  }
  return expand_mount_layers(std::move(cmdline), config, pw.extra, getenv);
}

ExpandedMount expand_mount_layers(MountSettings cmdline, const std::optional<std::string>& config,
                                  const std::vector<std::string>& extra, const EnvLookup& getenv) {
  ExpandedMount r;
  auto fail = [&r](Status s) {
    r.exit_code = exit_code(s);
    r.error = std::move(s);
    return r;
  };
  auto env = mount_settings_from_env(getenv);
  if (!env.ok()) return fail(env.status());
  MountSettings file;
  if (config) {
    ExpandedMount loaded = load_mount_config(*config, file);
    if (!loaded.error.ok()) return loaded;
    // KMSFS_KEYRING outranks the file too, though the locator (not a flag) reads it.
    if (auto k = getenv("KMSFS_KEYRING"); k && !k->empty()) file.values.erase("keyring");
    for (const char* key : {"backing", "mountpoint"})
      if (!file.values.contains(key) && !env->values.contains(key) && !cmdline.values.contains(key))
        return fail(Status(Code::kInvalidArgument, "config file " + *config + " names no " + key));
  }
  r.words = merged_mount_words(cmdline, *env, file, extra);
  return r;
}

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

}  // namespace kmsfs::cli
