// kmsfs encrypt-file BACKING PLAIN_FILE DEST: writes one plaintext file into a vault as a
// new encrypted file, without a mount.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "base/unique_fd.h"
#include "cli/commands.h"
#include "cli/keyring_locator.h"
#include "cli/output.h"
#include "cli/passphrase_options.h"
#include "cli/providers.h"
#include "cli/vault_path.h"
#include "vault/paths.h"
#include "vault/vault.h"
#include "vault/vault_lock.h"

namespace kmsfs::cli {

namespace {

namespace fs = std::filesystem;

constexpr size_t kCopyChunk = size_t{1} << 20;

struct EncryptOptions {
  std::string backing;
  std::string plain;
  std::string dest;
  std::optional<std::string> keyring;
  PassphraseOptions passphrase;
  AwsCliOptions aws;
  bool backing_path = false;  // DEST is a backing path, taken as is (no name encryption)
  bool overwrite = false;     // replace an existing DEST atomically
};

// DEST as a path: relative ones are relative to the vault. Either way it must lie inside
// the vault (its parent directory, resolved, is the vault root or below it).
Result<std::string> dest_path(const std::string& vault, const std::string& dest) {
  if (dest.empty()) return Status(Code::kInvalidArgument, "DEST is empty");
  fs::path p(dest);
  if (p.is_relative()) p = fs::path(vault) / p;
  if (!p.has_filename() || p.filename() == "." || p.filename() == "..")
    return Status(Code::kInvalidArgument, "DEST " + dest + " does not name a file");
  std::error_code ec;
  fs::path root = fs::canonical(vault, ec);
  if (ec) return Status::Io(ec.value(), "vault directory " + vault);
  fs::path parent = fs::weakly_canonical(p.parent_path(), ec);
  if (ec) return Status::Io(ec.value(), "directory of " + p.string());
  auto [r, q] = std::mismatch(root.begin(), root.end(), parent.begin(), parent.end());
  if (r != root.end())
    return Status(Code::kInvalidArgument, "DEST " + dest + " is outside the vault " + vault);
  return p.lexically_normal().string();
}

// Reads up to buf.size() bytes, short only at end of input.
Result<size_t> read_full(int fd, MutableByteSpan buf, const std::string& name) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + done, buf.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(errno, "read " + name);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<uint64_t> copy_into(int in, const std::string& in_name, CryptFile& f) {
  std::vector<uint8_t> buf(kCopyChunk);
  uint64_t off = 0;
  for (;;) {
    ASSIGN_OR_RETURN(size_t n, read_full(in, buf, in_name));
    if (n == 0) break;
    RETURN_IF_ERROR(f.write({buf.data(), n}, off));
    off += n;
    if (n < buf.size()) break;
  }
  RETURN_IF_ERROR(f.sync(/*data_only=*/false));
  return off;
}

Status run_encrypt(const EncryptOptions& o) {
  // The vault first (kNotFound naming it), then the plaintext file, then keys.
  RETURN_IF_ERROR(Vault::peek_config(o.backing).status());
  std::string dest;
  struct stat st;
  if (o.backing_path) {
    ASSIGN_OR_RETURN(dest, dest_path(o.backing, o.dest));
    if (!o.overwrite && ::lstat(dest.c_str(), &st) == 0)
      return Status(Code::kAlreadyExists, dest + " already exists (refusing to overwrite; --overwrite replaces it)");
  }
  UniqueFd in(::open(o.plain.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) {
    if (errno == ENOENT) return Status(Code::kNotFound, o.plain + ": no such file", ENOENT);
    return Status::Io(errno, "open " + o.plain);
  }
  if (::fstat(in.get(), &st) != 0) return Status::Io(errno, "stat " + o.plain);
  if (S_ISDIR(st.st_mode)) return Status(Code::kInvalidArgument, o.plain + " is a directory");
  const mode_t mode = st.st_mode & 0777;

  // A mount owns its backing directory (its caches and open files assume it is the only
  // writer): refused while one runs, rather than racing it. Copy into the mount instead.
  ASSIGN_OR_RETURN(VaultLock lock, VaultLock::acquire(o.backing, "kmsfs encrypt-file"));
  ASSIGN_OR_RETURN(OpenedVault ov, open_vault_offline(o.backing, o.keyring, o.passphrase, o.aws));
  // DEST is a path in the plaintext view: its name encrypted as the mount would, parents
  // created (with encrypted names too).
  const std::string shown = o.backing_path ? dest : o.dest;
  if (!o.backing_path) {
    ASSIGN_OR_RETURN(dest, prepare_new_file(*ov.vault, o.dest, /*make_parents=*/true));
  }
  // --overwrite: the new file is written beside DEST under a temporary name (a dot-name in
  // the same directory, encrypted like any other) and renamed over it once complete and
  // synced, so DEST is the old file or the new one, never a mix.
  std::string target = dest;
  if (o.overwrite) {
    if (::lstat(dest.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      return Status(Code::kInvalidArgument, shown + " is a directory");
    const std::string tmp_name = ".kmsfs-encrypt-file." + std::to_string(::getpid());
    if (o.backing_path) {
      target = (fs::path(dest).parent_path() / tmp_name).string();
    } else {
      const fs::path parent = fs::path(o.dest).parent_path();
      ASSIGN_OR_RETURN(target, prepare_new_file(*ov.vault, (parent / tmp_name).string(), /*make_parents=*/true));
    }
    ::unlink(target.c_str());  // a leftover of this pid's earlier crash
  }
  auto created = ov.vault->create_file(target, mode);
  if (!created.ok()) {
    if (created.status().code() == Code::kIo && created.status().sys_errno() == EEXIST)
      return Status(Code::kAlreadyExists, shown + " already exists (refusing to overwrite; --overwrite replaces it)");
    return created.status().with_context(shown);
  }
  std::unique_ptr<CryptFile> f = std::move(created).value();
  auto copied = copy_into(in.get(), o.plain, *f);
  // The umask applied at creation; the plaintext's permission bits are what was asked for.
  if (copied.ok() && ::chmod(target.c_str(), mode) != 0) copied = Status::Io(errno, "chmod " + target);
  const std::string file_id = to_hex(f->id());
  f.reset();
  if (copied.ok() && target != dest) {
    if (::rename(target.c_str(), dest.c_str()) != 0) {
      copied = Status::Io(errno, "replacing " + shown);
    } else {
      UniqueFd dir(::open(fs::path(dest).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dir.valid()) (void)::fsync(dir.get());  // the rename durable, as the data is
      return print(fmt::format("{}: {} bytes encrypted, replacing the old file (file id {}; backing file {})\n",
                               shown, *copied, file_id, dest));
    }
  }
  if (!copied.ok()) {
    ::unlink(target.c_str());  // never leave a partial file behind
    return copied.status();
  }
  if (o.backing_path) return print(fmt::format("{}: {} bytes encrypted (file id {})\n", dest, *copied, file_id));
  return print(fmt::format("{}: {} bytes encrypted (file id {}; backing file {})\n", shown, *copied, file_id, dest));
}

}  // namespace

void add_encrypt_command(CLI::App& app, Commands& out) {
  auto o = std::make_shared<EncryptOptions>();
  CLI::App* cmd = app.add_subcommand("encrypt-file", "Encrypt a plaintext file into a vault (no mount needed)");
  cmd->add_option("BACKING", o->backing, "The vault's backing directory")->required();
  cmd->add_option("PLAIN_FILE", o->plain, "The plaintext file to read")->required();
  cmd->add_option("DEST", o->dest,
                  "Where the file goes in the vault's plaintext view (e.g. docs/report.pdf): its name "
                  "is encrypted as the mount would, missing parent directories are created; never "
                  "overwritten without --overwrite")
      ->required();
  cmd->add_flag("--overwrite", o->overwrite,
                "Replace an existing DEST (atomically: written beside it, then renamed over it)");
  cmd->add_flag("--backing-path", o->backing_path,
                "DEST is a backing path (absolute, or relative to BACKING), used as is: no name "
                "encryption, no parents created");
  cmd->add_option("--keyring", o->keyring,
                  "Keyring holding the vault's key (default: $KMSFS_KEYRING, else the one in the "
                  "vault's trust record)")
      ->type_name("KEYRING");
  add_passphrase_options(*cmd, o->passphrase);
  add_aws_options(*cmd, o->aws);
  cmd->footer(
      "The new file gets PLAIN_FILE's permission bits and a fresh data key under the vault's\n"
      "current key version. On failure no partial DEST is left behind. Refused while the\n"
      "vault is mounted (copy into the mount instead).\n\n"
      "Example:\n  kmsfs encrypt-file /srv/vault ./report.pdf docs/report.pdf --passphrase-file /run/kmsfs/pw");
  out.push_back({"encrypt-file", cmd, [o] { return run_encrypt(*o); }});
}

}  // namespace kmsfs::cli
