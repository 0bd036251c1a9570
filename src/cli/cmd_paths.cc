// Offline name tools for encrypted vaults: list a directory in plaintext, and translate
// paths both ways, so one file can be found and restored from a backup without mounting.
#include <sys/stat.h>

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "base/encoding.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/vault_path.h"
#include "format/layout.h"
#include "vault/paths.h"

namespace kmsfs::cli {

namespace {

struct PathOptions {
  std::string target;   // ls: BACKING[/PLAIN/PATH]
  std::string backing;  // encrypt-path / decrypt-path
  std::string path;
  bool long_format = false;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
};

char type_char(mode_t m) {
  if (S_ISDIR(m)) return 'd';
  if (S_ISLNK(m)) return 'l';
  if (S_ISFIFO(m)) return 'p';
  if (S_ISSOCK(m)) return 's';
  if (S_ISCHR(m)) return 'c';
  if (S_ISBLK(m)) return 'b';
  return '-';
}

Status run_ls(const PathOptions& o) {
  ASSIGN_OR_RETURN(VaultPath vp, split_vault_path(o.target));
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(vp.vault_dir, o.keyring, o.passphrase, o.aws));
  ASSIGN_OR_RETURN(Listing l, list_dir(*ov.vault, vp.rel));
  const Layout layout = Layout::of(ov.vault->config().header_size, ov.vault->config().block_size);
  // Names are escaped (base/encoding.h printable): one holding a newline or an escape
  // sequence stays one line and cannot drive the terminal.
  std::string out;
  for (const auto& e : l.entries) {
    if (!o.long_format) {
      out += printable(e.name) + "\n";
      continue;
    }
    uint64_t size = static_cast<uint64_t>(e.st.st_size);
    if (S_ISREG(e.st.st_mode)) size = layout.plaintext_size(size).plain_size;
    if (S_ISLNK(e.st.st_mode) && ov.vault->names()) size = NameCipher::link_plain_size(size);
    char when[32];
    std::tm tm{};
    gmtime_r(&e.st.st_mtim.tv_sec, &tm);
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
    out += fmt::format("{}{:04o} {:>12} {} {}  ({})\n", type_char(e.st.st_mode), e.st.st_mode & 07777, size,
                       when, printable(e.name), printable(e.backing));
  }
  RETURN_IF_ERROR(print(out));
  if (!l.undecryptable.empty()) {
    std::string msg = fmt::format("kmsfs: {} entr{} in {} do not decrypt:", l.undecryptable.size(),
                                  l.undecryptable.size() == 1 ? "y" : "ies", printable(o.target));
    for (const auto& n : l.undecryptable) msg += " '" + printable(n) + "'";
    msg += "\n";
    (void)write_all(STDERR_FILENO, as_bytes(msg));  // a warning: the listing itself succeeded
  }
  return Status::Ok();
}

// PATH may be relative to BACKING or start with it.
std::string inside(const std::string& backing, const std::string& path) {
  std::filesystem::path b = std::filesystem::path(backing).lexically_normal();
  std::filesystem::path p = std::filesystem::path(path).lexically_normal();
  auto rel = p.lexically_relative(b);
  if (!rel.empty() && *rel.begin() != "..") return rel == "." ? std::string() : rel.string();
  return path;
}

Status run_encrypt_path(const PathOptions& o) {
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(o.backing, o.keyring, o.passphrase, o.aws));
  ASSIGN_OR_RETURN(std::string rel, encrypt_path(*ov.vault, o.path));
  return print((rel.empty() ? o.backing : o.backing + "/" + rel) + "\n");
}

Status run_decrypt_path(const PathOptions& o) {
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(o.backing, o.keyring, o.passphrase, o.aws));
  ASSIGN_OR_RETURN(std::string rel, decrypt_path(*ov.vault, inside(o.backing, o.path)));
  return print(rel + "\n");
}

void common(CLI::App* cmd, PathOptions& o) {
  cmd->add_option("--keyring", o.keyring, "Keyring (default: $KMSFS_KEYRING, else the one the vault names)")
      ->type_name("KEYRING");
  add_passphrase_options(*cmd, o.passphrase);
  add_aws_options(*cmd, o.aws);
}

}  // namespace

void add_path_commands(CLI::App& app, Commands& out) {
  {
    auto o = std::make_shared<PathOptions>();
    CLI::App* cmd = app.add_subcommand("ls", "List a vault directory by plaintext names (no mount needed)");
    cmd->add_option("PATH", o->target, "BACKING or BACKING/PLAIN/PATH (a directory in the plaintext view)")->required();
    cmd->add_flag("-l,--long", o->long_format, "Type, mode, plaintext size, mtime (UTC) and the backing name");
    common(cmd, *o);
    cmd->footer("Entries whose names do not decrypt are named on standard error.\n\n"
                "Example:\n  kmsfs ls /backup/vault/projects/2026 -l");
    out.push_back({"ls", cmd, [o] { return run_ls(*o); }});
  }
  {
    auto o = std::make_shared<PathOptions>();
    CLI::App* cmd = app.add_subcommand("encrypt-path", "Print the backing path of a plaintext path");
    cmd->add_option("BACKING", o->backing, "The vault's backing directory")->required();
    cmd->add_option("PLAIN_PATH", o->path, "A path in the plaintext view, relative to the vault root")->required();
    common(cmd, *o);
    cmd->footer("Example:\n  cp -a \"$(kmsfs encrypt-path /backup/vault docs/report.pdf)\" /tmp/restore/");
    out.push_back({"encrypt-path", cmd, [o] { return run_encrypt_path(*o); }});
  }
  {
    auto o = std::make_shared<PathOptions>();
    CLI::App* cmd = app.add_subcommand("decrypt-path", "Print the plaintext path of a backing path");
    cmd->add_option("BACKING", o->backing, "The vault's backing directory")->required();
    cmd->add_option("CIPHER_PATH", o->path, "A backing path, relative to BACKING or starting with it")->required();
    common(cmd, *o);
    cmd->footer("Example:\n  kmsfs decrypt-path /srv/vault /srv/vault/Vq1a.../kmsfs.ln.Xb9...");
    out.push_back({"decrypt-path", cmd, [o] { return run_decrypt_path(*o); }});
  }
}

}  // namespace kmsfs::cli
