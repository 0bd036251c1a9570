// --passphrase-file F / --extpass CMD: the two non-interactive passphrase sources, added
// the same way to every command that may need to open a sealed keyring. Without either,
// the passphrase is asked on /dev/tty (and only if the keyring is sealed). The passphrase
// itself is never an option value: argv is world-readable in /proc.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "keys/keyring/passphrase.h"

namespace kmsfs::cli {

struct PassphraseOptions {
  std::string file;
  std::string extpass;
  CLI::Option* file_opt = nullptr;
  CLI::Option* extpass_opt = nullptr;

  // True if --passphrase-file or --extpass was given.
  bool given() const;
  // The source to read from: the file, the command, or the terminal prompt.
  PassphraseSource source() const;
  // For a service: the file or the command if given, else the systemd credential
  // $CREDENTIALS_DIRECTORY/passphrase if there is one (LoadCredential=passphrase:...),
  // else the prompt.
  PassphraseSource source_or_credential() const;
};

// Adds the two (mutually exclusive) options to `cmd`, storing into `opts`, which must
// outlive parsing.
void add_passphrase_options(CLI::App& cmd, PassphraseOptions& opts);

}  // namespace kmsfs::cli
