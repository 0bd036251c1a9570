// Where a mount's settings come from, and which one wins.
//
// A `kmsfs mount` is described by four layers, highest first:
//   1. the command line: flags and -o options (`--key-ttl 60` or `-o key_ttl=60`);
//   2. the environment: KMSFS_<KEY>, e.g. KMSFS_KEY_TTL=60;
//   3. a config file: /etc/kmsfs/NAME.conf for `kmsfs mount NAME`, or `--config FILE`;
//   4. the defaults of `kmsfs mount --help`.
// The keys are the long flags of `kmsfs mount` with '_' for '-' (read from its CLI
// definition, so a new flag is a new key), plus backing, mountpoint and options (the
// generic -o list, which accumulates over the layers instead of being replaced).
// KMSFS_KEYRING keeps the meaning it has everywhere (the default keyring, read where the
// keyring is located), so it is not turned into --keyring here.
//
// The file format (docs/OPERATIONS.md "The configuration file"):
//   # a comment (only at the start of a line); blank lines are ignored
//   backing = /srv/vault
//   key_ttl = 60
//   no_writeback            (a flag alone means true; or `no_writeback = false`)
//   options = allow_other,badname="*.tmp"
// A value may be in double or single quotes (kept verbatim inside). The systemd
// EnvironmentFile form of earlier releases (KMSFS_BACKING=/srv/vault, KMSFS_OPTIONS=-o x
// --key-ttl 60) is read too: a KMSFS_ prefix is dropped and the key lower-cased, and an
// `options` value starting with '-' is read as command-line words.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "fs/mount_options.h"  // split_mount_options

namespace kmsfs::cli {

// The directory of NAME.conf files: $KMSFS_CONFIG_DIR, else /etc/kmsfs.
std::string mount_config_dir();

// One `kmsfs mount` option as its CLI definition declares it.
struct MountOptionSpec {
  std::string key;         // "key_ttl"
  std::string flag;        // "--key-ttl"
  std::string short_flag;  // "-f" or ""
  bool takes_value = false;
};
// Every option of `kmsfs mount` but --help, -o and --config.
const std::vector<MountOptionSpec>& mount_option_specs();

// One layer of settings.
struct MountSettings {
  std::map<std::string, std::string> values;  // key -> value; a flag is "true" or "false"
  std::vector<std::string> options;           // generic mount options (ro, allow_other, ...)
};


// Adds one -o item to `layer`: a kmsfs key (key_ttl=60, no_writeback, keyring=/x, with '-'
// or '_') becomes a setting, anything else a generic option. Fails on a bad flag value.
Status add_mount_option(MountSettings& layer, const std::string& item);

// Parses a config file's text. `where` names it in errors ("/etc/kmsfs/a.conf").
Result<MountSettings> parse_mount_config(std::string_view text, const std::string& where);

// The environment layer, from `getenv` (injectable for tests).
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
Result<MountSettings> mount_settings_from_env(const EnvLookup& getenv);

// Refuses a config file anyone but its owner may write, or (when `running_as_root`) one
// root does not own: whoever can write it can choose the keyring or the KMS key.
Status check_config_file_safety(const std::string& path, bool running_as_root);

// The layers merged (highest first) into `kmsfs mount` words: BACKING MOUNTPOINT then
// flags, then one -o per generic option, then `extra` (words the parser did not know,
// left for the CLI to report).
std::vector<std::string> merged_mount_words(const MountSettings& cmdline, const MountSettings& env,
                                            const MountSettings& file, const std::vector<std::string>& extra);

// `kmsfs mount` arguments (after the word "mount") expanded: a bare NAME or --config FILE
// replaced by the file's settings, the environment added, -o kmsfs keys turned into flags.
struct ExpandedMount {
  std::vector<std::string> words;  // what follows "mount"
  Status error;                    // not ok: print it and exit with `exit_code`
  int exit_code = 0;
};
ExpandedMount expand_mount_words(const std::vector<std::string>& words, const EnvLookup& getenv);
// The same from an already parsed command-line layer (the mount(8) helper's).
ExpandedMount expand_mount_layers(MountSettings cmdline, const std::optional<std::string>& config,
                                  const std::vector<std::string>& extra, const EnvLookup& getenv);

// Reads, checks and parses a config file (the exit code says which failure).
ExpandedMount load_mount_config(const std::string& path, MountSettings& out);

// The real environment.
std::optional<std::string> process_env(const std::string& name);

}  // namespace kmsfs::cli
