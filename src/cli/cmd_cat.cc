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
  bool backing_path = false;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
  NamedKey named;
};

Status run_cat(const CatOptions& o) {
  ASSIGN_OR_RETURN(ResolvedFile resolved, resolve_backing_file(o.file, o.backing_path, o.keyring, o.passphrase, o.aws));
  const std::string& file = resolved.path;
  ASSIGN_OR_RETURN(auto posix, PosixBackingFile::open(file, O_RDONLY));
  std::shared_ptr<BackingFile> backing(std::move(posix));
  std::unique_ptr<KeyProviders> own;
  KeyProviders* providers = resolved.vault ? resolved.vault->providers.get() : nullptr;
  if (!providers) {
    ASSIGN_OR_RETURN(own, providers_for_file(file, o.keyring, o.passphrase, o.aws, o.named));
    providers = own.get();
  }
  ASSIGN_OR_RETURN(auto f, open_crypt_file(backing, *providers));
  StreamResult r = stream_plaintext(*f, [](ByteSpan b) { return write_all(STDOUT_FILENO, b); });
  return r.status;
}

}  // namespace

void add_cat_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<CatOptions>();
  CLI::App* cmd = app.add_subcommand("cat", "Decrypt one backing file to standard output (no mount needed)");
  cmd->add_option("FILE", o->file,
                  "BACKING/PLAIN/PATH (a path in the plaintext view of a vault), an encrypted backing path "
                  "with --backing-path, or a backing file copied out of any vault")
      ->required();
  add_backing_path_flag(*cmd, o->backing_path);
  cmd->add_option("--keyring", o->keyring,
                  "Keyring to unwrap the file key with (default: $KMSFS_KEYRING, else the "
                  "keyring in the trust record of the vault the file lies in)")
      ->type_name("KEYRING");
  add_named_key_options(*cmd, o->named);
  add_passphrase_options(*cmd, o->passphrase);
  add_aws_options(*cmd, o->aws);
  cmd->footer(
      "Only authenticated bytes are written: a damaged block stops the output before any of\n"
      "its bytes, and the command exits 5 naming the file, its id and the block. Keys: those\n"
      "this host trusts for the vault the file lies in (kmsfs trust), or for a file copied out\n"
      "of any vault the one named by --key or --kms-key; a header naming another key exits 5\n"
      "and no request is made for it.\n\n"
      "Examples:\n  kmsfs cat /backup/vault/docs/report.pdf --passphrase-file /run/kmsfs/pw > report.pdf\n"
      "  kmsfs cat --backing-path /backup/vault/0Xb4.../kQ9f... > report.pdf\n"
      "  kmsfs cat ./report.pdf.kmsfs --keyring /etc/kmsfs/keyring --key main > report.pdf");
  out.push_back({"cat", cmd, [o] { return run_cat(*o); }});
}

}  // namespace kmsfs::cli
