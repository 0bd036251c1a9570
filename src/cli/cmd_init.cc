// kmsfs init BACKING: makes a directory a vault (writes its kmsfs.conf).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/keyring_locator.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "cli/vault_path.h"
#include "format/header.h"
#include "vault/vault.h"

namespace kmsfs::cli {

namespace {

struct InitCliOptions {
  std::string backing;
  std::optional<std::string> keyring;
  std::string key;      // --key: a keyring key
  std::string kms_key;  // --kms-key: an AWS KMS key (ARN, alias/NAME or key id)
  AwsCliOptions aws;
  std::string cipher = "aes-256-gcm";
  uint32_t block_size = 4096;
  std::vector<std::string> context;
  bool plaintext_names = false;
  std::string name_encoding = "base64url";
  uint32_t longname_max = kDefaultLongnameMax;
  std::string key_mode = "per-file";
  uint64_t intermediate_max_files = 10000;
  uint32_t intermediate_max_age = 300;
  PassphraseOptions passphrase;
};

Result<EncryptionContext> parse_context(const std::vector<std::string>& pairs) {
  EncryptionContext ctx;
  for (const auto& kv : pairs) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return Status(Code::kInvalidArgument, "--context '" + kv + "' is not KEY=VALUE");
    std::string key = kv.substr(0, eq);
    if (key.rfind("kmsfs:", 0) == 0)
      return Status(Code::kInvalidArgument, "--context key '" + key + "' is reserved (kmsfs: prefix)");
    if (ctx.get(key))
      return Status(Code::kInvalidArgument, "--context key '" + key + "' given twice");
    RETURN_IF_ERROR(ctx.set(key, kv.substr(eq + 1)));
  }
  return ctx;
}

// The keyring for a new vault: --keyring or $KMSFS_KEYRING, stored absolute so the vault
// finds it from any working directory.
Result<std::string> init_keyring(const InitCliOptions& o) {
  ASSIGN_OR_RETURN(std::string path, locate_keyring({o.keyring, "", o.backing}));
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  if (ec) return Status::Io(ec.value(), "keyring path " + path);
  return abs.lexically_normal().string();
}

// A vault starts empty: files already there would be hidden by the mount (their names do
// not decrypt) and reported by fsck. An empty lost+found, as at the root of a fresh ext4
// filesystem, is not content.
Status check_empty(const std::string& dir) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "lost+found" && it->is_directory(ec) && std::filesystem::is_empty(it->path(), ec)) continue;
    return Status(Code::kAlreadyExists, "backing directory " + dir + " is not empty (it holds '" + name +
                                            "'): a vault starts in an empty directory");
  }
  if (ec) return Status::Io(ec.value(), "backing directory " + dir);
  return Status::Ok();
}

Status run_init(const InitCliOptions& o) {
  // Everything checkable without keys is checked before a passphrase is asked for.
  if (o.key.empty() == o.kms_key.empty())
    return Status(Code::kInvalidArgument, "pass exactly one of --key (keyring) and --kms-key (AWS KMS)");
  if (!valid_block_size(o.block_size))
    return Status(Code::kInvalidArgument, "block size " + std::to_string(o.block_size) +
                                              " must be a power of two from 1024 to 1048576");
  auto cipher = cipher_from_name(o.cipher);
  if (!cipher) return Status(Code::kInvalidArgument, "unknown cipher '" + o.cipher + "'");
  ASSIGN_OR_RETURN(EncryptionContext ctx, parse_context(o.context));
  auto encoding = name_encoding_from_name(o.name_encoding);
  if (!encoding) return Status(Code::kInvalidArgument, "unknown name encoding '" + o.name_encoding + "'");
  if (!o.plaintext_names && (o.longname_max < kMinLongnameMax || o.longname_max > 255))
    return Status(Code::kInvalidArgument, "--longname-max must be between " + std::to_string(kMinLongnameMax) +
                                              " and 255, got " + std::to_string(o.longname_max));
  struct stat st;
  if (::stat(o.backing.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status(Code::kNotFound, "backing directory " + o.backing + " does not exist", ENOENT);
    return Status::Io(errno, "backing directory " + o.backing);
  }
  if (!S_ISDIR(st.st_mode)) return Status(Code::kInvalidArgument, o.backing + " is not a directory");
  const std::string conf = o.backing + "/" + kConfigFileName;
  if (::lstat(conf.c_str(), &st) == 0)
    return Status(Code::kAlreadyExists,
                  "'" + o.backing + "' is already a kmsfs vault (" + kConfigFileName + " exists)");
  RETURN_IF_ERROR(check_empty(o.backing));
  const bool kms = !o.kms_key.empty();
  std::string keyring;
  if (!kms) {
    ASSIGN_OR_RETURN(keyring, init_keyring(o));
  }

  auto providers = make_providers(
      {[keyring]() -> Result<std::string> {
         if (keyring.empty()) return Status(Code::kInvalidArgument, "no keyring: pass --keyring");
         return keyring;
       },
       o.passphrase.source(), o.aws},
      std::nullopt);  // init reads nothing from the backing directory: its keys are its options
  // The trust anchor is written right after the config; check first that it can be.
  const TrustStore store = trust_store();
  InitOptions io;
  io.cipher = *cipher;
  io.block_size = o.block_size;
  // The spec is stored as given (an alias stays an alias, so retargeting it moves new
  // files); each wrap records the exact ARN KMS answered.
  io.provider = kms ? ProviderId::kAwsKms : ProviderId::kKeyring;
  io.key_spec = kms ? o.kms_key : o.key;
  io.keyring_hint = keyring;
  io.user_context = std::move(ctx);
  io.plaintext_names = o.plaintext_names;
  io.name_encoding = *encoding;
  io.longname_max = o.longname_max;
  io.key_mode = *key_mode_from_name(o.key_mode);  // checked by CLI11
  io.intermediate_max_files = o.intermediate_max_files;
  io.intermediate_max_age_s = o.intermediate_max_age;
  ASSIGN_OR_RETURN(auto vault, Vault::init(o.backing, *providers, io));
  const FsConfig& c = vault->config();
  // This host trusts the key it just used for this vault: the trust anchor that mounts and
  // offline tools check the config and every header against.
  TrustRecord record;
  record.fs_id = c.fs_id;
  record.generation = c.generation;
  record.keys = c.declared_keys();
  record.keyring = keyring;
  std::error_code abs_ec;
  record.vault_dir = std::filesystem::absolute(o.backing, abs_ec).lexically_normal().string();
  if (Status saved = store.save(record); !saved.ok()) {
    ::unlink(conf.c_str());  // a vault nobody trusts could not be mounted: undo the init
    return saved.with_context("trust record " + store.path_of(c.fs_id) + " (the vault was not created)");
  }
  std::error_code ec;
  auto conf_abs = std::filesystem::absolute(conf, ec).lexically_normal().string();
  const std::string names = c.encrypted_names()
                                ? fmt::format("encrypted (AES-SIV, {}, names over {} bytes hashed)",
                                              name_encoding_name(c.name_encoding), c.longname_max)
                                : std::string("plaintext");
  std::string where = kms ? "" : ", keyring " + keyring;
  const std::string mode = c.key_mode == KeyMode::kIntermediate
                               ? fmt::format("intermediate (rolls after {} files or {} s)", c.intermediate_max_files,
                                             c.intermediate_max_age_s)
                               : std::string("per-file");
  return print(fmt::format(
      "fs id: {}\ncipher: {}\nblock size: {}\nnames: {}\nkey: {} (spec {}{})\nkey mode: {}\nconfig: {}\n"
      "trust record: {}\n",
      c.fs_id_hex(), cipher_name(c.cipher), c.block_size, names, c.fs_key_ref.to_string(), c.key_spec,
      where, mode, ec ? conf : conf_abs, store.path_of(c.fs_id)));
}

}  // namespace

void add_init_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<InitCliOptions>();
  CLI::App* cmd = app.add_subcommand("init", "Make a directory a vault (writes BACKING/kmsfs.conf)");
  cmd->add_option("BACKING", o->backing, "The backing directory (must exist; must not be a vault yet)")
      ->required();
  cmd->add_option("--keyring", o->keyring,
                  "The keyring (default: $KMSFS_KEYRING); recorded, as an absolute path, in this host's trust "
                  "record of the vault")
      ->type_name("KEYRING");
  CLI::Option* key = cmd->add_option("--key", o->key, "Name of the keyring key new files are wrapped under (NAME or NAME:VERSION)")
      ->type_name("NAME");
  CLI::Option* kms_key =
      cmd->add_option("--kms-key", o->kms_key,
                      "AWS KMS key new files are wrapped under: key ARN, alias/NAME or key id "
                      "(stored as given; each file records the key ARN)")
          ->type_name("KEY");
  key->excludes(kms_key);
  add_aws_options(*cmd, o->aws);
  cmd->add_option("--cipher", o->cipher, "Content cipher")
      ->check(CLI::IsMember({"aes-256-gcm", "xchacha20-poly1305"}))
      ->capture_default_str();
  cmd->add_option("--block-size", o->block_size,
                  "Plaintext bytes per sealed block: a power of two from 1024 to 1048576")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--context", o->context,
                  "Extra encryption-context pair bound into every key wrap (repeatable)")
      ->type_name("K=V")
      ->allow_extra_args(false);
  cmd->add_flag("--plaintext-names", o->plaintext_names,
                "Store file names, symlink targets and xattrs in plaintext (fixed at init; names are "
                "encrypted by default)");
  cmd->add_option("--name-encoding", o->name_encoding,
                  "How encrypted names are spelled: base64url, or base32 for case-insensitive backing "
                  "filesystems")
      ->check(CLI::IsMember({"base64url", "base32"}))
      ->capture_default_str();
  cmd->add_option("--longname-max", o->longname_max,
                  "Longest backing name to use; longer encrypted names are stored hashed with a side "
                  "file (lower it for cloud-synced backends with shorter name limits)")
      ->type_name("N")
      ->capture_default_str();
  cmd->add_option("--key-mode", o->key_mode,
                  "per-file: every file's data key comes from the provider (KMS GenerateDataKey), so KMS "
                  "audit sees each file; intermediate: one provider call per intermediate key, which wraps "
                  "locally generated data keys of many files (see docs/KMS.md)")
      ->check(CLI::IsMember({"per-file", "intermediate"}))
      ->capture_default_str();
  cmd->add_option("--intermediate-max-files", o->intermediate_max_files,
                  "Intermediate mode: new files one intermediate key wraps before the next create rolls to a "
                  "fresh one")
      ->type_name("N")
      ->check(CLI::Range(uint64_t(1), uint64_t(1'000'000'000)))
      ->capture_default_str();
  cmd->add_option("--intermediate-max-age", o->intermediate_max_age,
                  "Intermediate mode: seconds an intermediate key wraps new files (a mount also caps it at "
                  "--key-ttl)")
      ->type_name("SECONDS")
      ->check(CLI::Range(uint32_t(1), uint32_t(30 * 86400)))
      ->capture_default_str();
  add_passphrase_options(*cmd, o->passphrase);
  cmd->footer(
      "Prints the filesystem id, cipher, block size, the key reference the filesystem key\n"
      "was wrapped under, where the config was written and where this host's trust record of\n"
      "the vault is ($KMSFS_TRUST_DIR, default /var/lib/kmsfs/trust): other hosts accept the\n"
      "vault with 'kmsfs trust accept BACKING --fs-id ID --key/--kms-key ...'.\n\n"
      "Examples:\n  kmsfs init /srv/vault --keyring /etc/kmsfs/keyring --key main --context team=ops\n"
      "  kmsfs init /srv/vault --kms-key alias/kmsfs --region eu-west-1");
  out.push_back({"init", cmd, [o] { return run_init(*o); }});
}

}  // namespace kmsfs::cli
