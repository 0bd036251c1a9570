// The `kmsfs` command: CLI11 setup and dispatch. Every command returns a Status; the exit
// code comes from cli/exit_codes.h and an error is exactly one line on stderr:
// "kmsfs: COMMAND: MESSAGE".
#include <unistd.h>

#include <exception>
#include <iostream>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/mount_helper.h"
#include "cli/output.h"
#include "crypto/eager_binding.h"
#include "crypto/secure_buffer.h"

namespace {

using namespace kmsfs;
using namespace kmsfs::cli;

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

void print_error(const std::string& command, const std::string& message) {
  std::string line = "kmsfs: " + (command.empty() ? "" : command + ": ") + one_line(message) + "\n";
  (void)write_all(STDERR_FILENO, as_bytes(line));
}

// "keyring create" for `kmsfs keyring create ...`: the deepest subcommand that was parsed.
std::string selected_path(const CLI::App& app) {
  std::string path;
  const CLI::App* cur = &app;
  for (;;) {
    auto subs = cur->get_subcommands();
    if (subs.empty()) return path;
    cur = subs.front();
    path += (path.empty() ? "" : " ") + cur->get_name();
  }
}

// For `kmsfs keyring frobnicate` CLI11 reports "A subcommand is required"; the word after
// the selected command group is what the user got wrong, so name it instead.
std::optional<std::string> unexpected_word(const CLI::App& app, int argc, char** argv) {
  const CLI::App* group = &app;
  int i = 1;
  while (!group->get_subcommands().empty()) {
    group = group->get_subcommands().front();
    while (i < argc && group->get_name() != argv[i]) ++i;
    ++i;
  }
  if (group->get_subcommands([](const CLI::App*) { return true; }).empty() || i >= argc) return std::nullopt;
  return std::string(argv[i]);
}

// `kmsfs help [COMMAND [SUBCOMMAND]]`.
Status run_help(const CLI::App& app, const std::vector<std::string>& topic) {
  const CLI::App* target = &app;
  std::string path = "kmsfs";
  for (const auto& word : topic) {
    const CLI::App* next = nullptr;
    for (const CLI::App* sub : target->get_subcommands([](const CLI::App*) { return true; }))
      if (sub->get_name() == word) next = sub;
    if (next == nullptr)
      return Status(Code::kInvalidArgument, "unknown command '" + word + "' (see kmsfs --help)");
    target = next;
    path += " " + word;
  }
  return print(target->get_formatter()->make_help(target, path, CLI::AppFormatMode::Normal));
}

int run(int argc, char** argv) {
  CLI::App app{"kmsfs: an encrypted filesystem whose keys live in a keyring or a KMS", "kmsfs"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);

  Commands commands;
  add_keyring_commands(app, commands);
  add_init_command(app, commands);
  add_inspect_command(app, commands);
  add_cat_command(app, commands);
  add_encrypt_command(app, commands);
  add_path_commands(app, commands);
  add_mount_commands(app, commands);
  add_control_commands(app, commands);
  add_rotate_command(app, commands);
  add_fsck_command(app, commands);
  add_trust_commands(app, commands);
  std::vector<std::string> topic;
  CLI::App* help = app.add_subcommand("help", "Show the help of a command");
  help->add_option("COMMAND", topic, "The command (and subcommand), e.g. 'init' or 'keyring create'");
  commands.push_back({"help", help, [&] { return run_help(app, topic); }});
  // After the subcommands, which would otherwise inherit it.
  app.footer("Run 'kmsfs help COMMAND' or 'kmsfs COMMAND --help' for a command's options.\n"
             "Exit codes and examples: docs/CLI.md.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string cmd = selected_path(app);
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      if (auto word = unexpected_word(app, argc, argv)) {
        print_error(cmd, std::string(word->front() == '-' ? "unknown option '" : "unknown command '") +
                             *word + "' (see kmsfs " + (cmd.empty() ? "" : cmd + " ") + "--help)");
        return kExitUsage;
      }
    }
    print_error(cmd, std::string(e.what()) + " (see kmsfs " + (cmd.empty() ? "" : cmd + " ") + "--help)");
    return kExitUsage;
  }

  for (const Command& c : commands) {
    if (!c.app->parsed()) continue;
    Status s;
    try {
      s = c.run();
    } catch (const std::bad_alloc&) {
      s = Status(Code::kInternal, "out of memory (or locked memory: check RLIMIT_MEMLOCK)");
    } catch (const std::exception& e) {
      // Still through the command's own exit mapping: fsck must say "internal error" (8),
      // never 1 ("errors corrected") because something threw.
      s = Status(Code::kInternal, std::string("internal error: ") + e.what());
    }
    if (!s.ok() && !is_broken_pipe(s)) print_error(c.name, s.message());
    return c.exit_status ? c.exit_status(s) : exit_code(s);
  }
  print_error("", "no command given (see kmsfs --help)");
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything, the daemon has every library bound eagerly (crypto/eager_binding.h;
  // about 40 ms, so only for the long-lived process with many threads); then no core dumps
  // and no ptrace before any secret exists.
  // mount(8)'s and mount.fuse3's helper calls are mounts too (cli/mount_helper.h).
  const MountCall mount_call = classify_mount_call(argc, argv);
  if (mount_call != MountCall::kNone) reexec_with_eager_binding(argv);
  Status hardened = harden_process();
  if (!hardened.ok()) {
    print_error("", hardened.message());
    return exit_code(hardened);
  }
  try {
    if (mount_call != MountCall::kNone) return run_mount_call(mount_call, argc, argv, run);
    return run(argc, argv);
  } catch (const std::exception& e) {
    print_error("", std::string("internal error: ") + e.what());
  } catch (...) {
    print_error("", "internal error: unknown exception");
  }
  return kExitInternal;
}
