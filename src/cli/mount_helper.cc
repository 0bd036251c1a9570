#include "cli/mount_helper.h"

#include <unistd.h>

#include <cstdio>
#include <string_view>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/exit_codes.h"

namespace kmsfs::cli {

namespace {

std::string_view basename_of(std::string_view p) {
  const size_t slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

bool is_kmsfs_command(const std::string& word) {
  CLI::App app;
  Commands c;
  add_keyring_commands(app, c);
  add_init_command(app, c);
  add_inspect_command(app, c);
  add_cat_command(app, c);
  add_encrypt_command(app, c);
  add_path_commands(app, c);
  add_mount_commands(app, c);
  add_control_commands(app, c);
  add_rotate_command(app, c);
  add_fsck_command(app, c);
  add_trust_commands(app, c);
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == word) return true;
  return word == "help";
}

void say(const std::string& line) { std::fprintf(stderr, "mount.kmsfs: %s\n", line.c_str()); }

std::vector<char*> c_argv(std::vector<std::string>& words) {
  std::vector<char*> out;
  for (auto& w : words) out.push_back(w.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

MountCall classify_mount_call(int argc, char** argv) {
  if (argc >= 1 && basename_of(argv[0]) == "mount.kmsfs") return MountCall::kHelper;
  if (argc < 2) return MountCall::kNone;
  const std::string first = argv[1];
  if (first == "mount") return MountCall::kMount;
  if (argc < 3 || first.empty() || first[0] == '-') return MountCall::kNone;
  if (first.find('/') != std::string::npos || first.starts_with("kmsfs#")) return MountCall::kHelper;
  // mount.fuse3 with a config NAME as the fstab source.
  const std::string conf = mount_config_dir() + "/" + first + ".conf";
  if (std::string_view(argv[2]).starts_with("/") && ::access(conf.c_str(), F_OK) == 0 && !is_kmsfs_command(first))
    return MountCall::kHelper;
  return MountCall::kNone;
}

int mount8_exit_code(int kmsfs_exit) {
  if (kmsfs_exit == kExitOk) return kMountOk;
  if (kmsfs_exit == kExitUsage) return kMountUsage;
  return kMountFailure;
}

Result<HelperCall> parse_helper_args(const std::vector<std::string>& args) {
  HelperCall c;
  std::vector<std::string> positionals;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      positionals.push_back(a);
      continue;
    }
    // -o, -t and -N take a value, attached or in the next word; -s -f -n -v may be grouped.
    for (size_t j = 1; j < a.size(); ++j) {
      const char f = a[j];
      if (f == 'o' || f == 't' || f == 'N') {
        std::string v;
        if (j + 1 < a.size()) v = a.substr(j + 1);
        else if (i + 1 < args.size()) v = args[++i];
        else return Status(Code::kInvalidArgument, std::string("-") + f + " needs a value");
        if (f == 'o') c.options += (c.options.empty() ? "" : ",") + v;
        if (f == 't') c.type = v;
        break;  // -N: mount(8)'s namespace; this process already runs in it
      }
      if (f == 's') c.sloppy = true;
      else if (f == 'f') c.fake = true;
      else if (f == 'n') c.no_mtab = true;
      else if (f == 'v') c.verbose = true;
      else return Status(Code::kInvalidArgument, std::string("unknown flag -") + f);
    }
  }
  if (positionals.size() != 2)
    return Status(Code::kInvalidArgument, "usage: mount.kmsfs BACKING|NAME MOUNTPOINT [-sfnv] [-o OPTIONS]");
  c.source = positionals[0];
  c.target = positionals[1];
  if (c.source.starts_with("kmsfs#")) c.source = c.source.substr(6);
  return c;
}

bool is_fstab_only_option(const std::string& item) {
  static const char* const kExact[] = {"nofail", "_netdev", "auto", "noauto", "user", "users", "nouser",
                                       "owner", "group", "defaults", "rw"};
  for (const char* e : kExact)
    if (item == e) return true;
  return item.starts_with("comment=") || item.starts_with("user=") || item.starts_with("x-") || item.starts_with("X-");
}

ExpandedMount helper_mount_words(const HelperCall& call, const EnvLookup& getenv) {
  MountSettings cmdline;
  for (const auto& item : split_mount_options(call.options)) {
    if (is_fstab_only_option(item)) continue;
    if (Status s = add_mount_option(cmdline, item); !s.ok()) {
      ExpandedMount r;
      r.error = s;
      r.exit_code = exit_code(s);
      return r;
    }
  }
  cmdline.values["mountpoint"] = call.target;
  std::optional<std::string> config;
  if (call.source.find('/') == std::string::npos) {
    config = mount_config_dir() + "/" + call.source + ".conf";
  } else {
    cmdline.values["backing"] = call.source;
  }
  return expand_mount_layers(std::move(cmdline), config, {}, getenv);
}

int run_mount_call(MountCall kind, int argc, char** argv, const std::function<int(int, char**)>& run) {
  std::vector<std::string> args(argv + 1, argv + argc);
  ExpandedMount expanded;
  bool fake = false, verbose = false;
  if (kind == MountCall::kMount) {
    expanded = expand_mount_words(std::vector<std::string>(args.begin() + 1, args.end()), process_env);
    if (!expanded.error.ok()) {
      std::fprintf(stderr, "kmsfs: mount: %s\n", expanded.error.message().c_str());
      return expanded.exit_code;
    }
  } else {
    auto call = parse_helper_args(args);
    if (!call.ok()) {
      say(call.status().message());
      return kMountUsage;
    }
    fake = call->fake;
    verbose = call->verbose;
    expanded = helper_mount_words(*call, process_env);
    if (!expanded.error.ok()) {
      say(expanded.error.message());
      return mount8_exit_code(expanded.exit_code);
    }
  }
  std::vector<std::string> words = {"kmsfs", "mount"};
  words.insert(words.end(), expanded.words.begin(), expanded.words.end());
  if (verbose || fake) {
    std::string line;
    for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
    std::printf("mount.kmsfs: %s%s\n", fake ? "would run: " : "running: ", line.c_str());
    std::fflush(stdout);
  }
  if (fake) return kMountOk;
  std::vector<char*> cargv = c_argv(words);
  const int rc = run(static_cast<int>(words.size()), cargv.data());
  return kind == MountCall::kHelper ? mount8_exit_code(rc) : rc;
}

}  // namespace kmsfs::cli
