#include "cli/passphrase_options.h"

#include <unistd.h>

#include <cstdlib>

namespace kmsfs::cli {

bool PassphraseOptions::given() const {
  return (file_opt != nullptr && file_opt->count() > 0) ||
         (extpass_opt != nullptr && extpass_opt->count() > 0);
}

PassphraseSource PassphraseOptions::source() const {
  if (file_opt != nullptr && file_opt->count() > 0) return {PassphraseSource::Kind::kFile, file};
  if (extpass_opt != nullptr && extpass_opt->count() > 0)
    return {PassphraseSource::Kind::kExtpass, extpass};
  return {PassphraseSource::Kind::kPrompt, ""};
}

PassphraseSource PassphraseOptions::source_or_credential() const {
  if (given()) return source();
  if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY"); dir != nullptr && *dir != '\0') {
    std::string path = std::string(dir) + "/passphrase";
    if (::access(path.c_str(), F_OK) == 0) return {PassphraseSource::Kind::kFile, path};
  }
  return source();
}

void add_passphrase_options(CLI::App& cmd, PassphraseOptions& opts) {
  opts.file_opt = cmd.add_option("--passphrase-file", opts.file,
                                 "Read the keyring passphrase from the first line of this file")
                      ->type_name("FILE");
  opts.extpass_opt =
      cmd.add_option("--extpass", opts.extpass,
                     "Run this /bin/sh command and use the first line of its output as the "
                     "keyring passphrase")
          ->type_name("CMD");
  opts.file_opt->excludes(opts.extpass_opt);
  opts.extpass_opt->excludes(opts.file_opt);
}

}  // namespace kmsfs::cli
