// kmsfs cat BACKING_FILE: decrypts one backing file to stdout, without a mount.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "cli/commands.h"
#include "cli/file_stream.h"
#include "cli/keyring_locator.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "format/backing_file.h"
#include "cli/vault_path.h"
#include "vault/paths.h"
#include "vault/vault.h"

namespace kmsfs::cli {

namespace {

struct CatOptions {
  std::string file;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
};

// A path that is not there as a backing file is read as BACKING/PLAIN/PATH.
Result<std::string> backing_file_of(const CatOptions& o) {
  struct stat st;
  if (::lstat(o.file.c_str(), &st) == 0) return o.file;
  auto vp = split_vault_path(o.file);
  if (!vp.ok()) return Status::Io(ENOENT, o.file + " (neither a backing file nor a path inside a vault)");
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(vp->vault_dir, o.keyring, o.passphrase, o.aws));
  ASSIGN_OR_RETURN(std::string rel, encrypt_path(*ov.vault, vp->rel));
  std::string path = vp->vault_dir + "/" + rel;
  if (::lstat(path.c_str(), &st) != 0) return Status(Code::kNotFound, o.file + ": no such file in the vault", ENOENT);
  return path;
}

Status run_cat(const CatOptions& o) {
  ASSIGN_OR_RETURN(std::string file, backing_file_of(o));
  ASSIGN_OR_RETURN(auto posix, PosixBackingFile::open(file, O_RDONLY));
  std::shared_ptr<BackingFile> backing(std::move(posix));
  auto providers = make_providers(
      {[&o, &file] { return locate_keyring({o.keyring, "", file}); }, o.passphrase.source(), o.aws});
  ASSIGN_OR_RETURN(auto f, open_crypt_file(backing, *providers));
  StreamResult r = stream_plaintext(*f, [](ByteSpan b) { return write_all(STDOUT_FILENO, b); });
  return r.status;
}

}  // namespace

void add_cat_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<CatOptions>();
  CLI::App* cmd = app.add_subcommand("cat", "Decrypt one backing file to standard output (no mount needed)");
  cmd->add_option("FILE", o->file, "An encrypted file in a backing directory, or BACKING/PLAIN/PATH (a path in the plaintext view of a vault)")->required();
  cmd->add_option("--keyring", o->keyring,
                  "Keyring to unwrap the file key with (default: $KMSFS_KEYRING, else the "
                  "keyring named by the nearest kmsfs.conf above the file)")
      ->type_name("KEYRING");
  add_passphrase_options(*cmd, o->passphrase);
  add_aws_options(*cmd, o->aws);
  cmd->footer(
      "Only authenticated bytes are written: a damaged block stops the output before any of\n"
      "its bytes, and the command exits 5 naming the file, its id and the block.\n\n"
      "Examples:\n  kmsfs cat /backup/vault/docs/report.pdf --passphrase-file /run/kmsfs/pw > report.pdf\n"
      "  kmsfs cat /backup/vault/Vq1aZ.../KcP0s... > report.pdf");
  out.push_back({"cat", cmd, [o] { return run_cat(*o); }});
}

}  // namespace kmsfs::cli
