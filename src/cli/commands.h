// The registry main() dispatches on: each cmd_*.cc adds its CLI11 subcommand(s) and a
// run function that returns a Status. Options live in a struct owned by the run closure.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "base/status.h"

namespace kmsfs::cli {

struct Command {
  Command(std::string n, CLI::App* a, std::function<Status()> r, std::function<int(const Status&)> e = {})
      : name(std::move(n)), app(a), run(std::move(r)), exit_status(std::move(e)) {}

  std::string name;         // "init", "keyring create": names the command in error lines
  CLI::App* app = nullptr;  // selected when app->parsed()
  std::function<Status()> run;
  // The exit status, for a command that does not follow cli/exit_codes.h's table
  // (fsck); unset: exit_code(status).
  std::function<int(const Status&)> exit_status;
};
using Commands = std::vector<Command>;

void add_keyring_commands(CLI::App& app, Commands& out);
void add_init_command(CLI::App& app, Commands& out);
void add_inspect_command(CLI::App& app, Commands& out);
void add_cat_command(CLI::App& app, Commands& out);
void add_encrypt_command(CLI::App& app, Commands& out);
void add_path_commands(CLI::App& app, Commands& out);  // ls, encrypt-path, decrypt-path
void add_mount_commands(CLI::App& app, Commands& out);  // mount, umount
void add_control_commands(CLI::App& app, Commands& out);  // stats, flush-keys, status
void add_rotate_command(CLI::App& app, Commands& out);
void add_fsck_command(CLI::App& app, Commands& out);
void add_trust_commands(CLI::App& app, Commands& out);  // trust accept/show/list/distrust/forget

// The --version text: program version and the on-disk format versions it reads/writes.
std::string version_text();

}  // namespace kmsfs::cli
