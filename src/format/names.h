// Encrypted names (docs/FORMAT.md §11): file names, symlink targets and user.* xattrs.
//
// Names are encrypted deterministically with AES-256-SIV under one filesystem-wide name
// key, so a lookup computes the backing name without listing the directory, a directory
// rename is one rename(2), and nothing depends on per-directory state (no IV file that a
// sync tool can lose or duplicate, no inode numbers or xattrs that a restore changes).
// The price, stated in the spec: equal names encrypt equally across the whole
// filesystem, and name lengths leak rounded up to 16 bytes.
//
// Symlink targets and xattr values are never looked up, so they get a fresh random nonce
// each time (the filesystem's content AEAD).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/siv.h"
#include "format/key_ref.h"

namespace kmsfs {

enum class NameEncoding : uint8_t {
  kBase64Url = 1,  // case-sensitive backing filesystems (default)
  kBase32 = 2,     // case-insensitive ones (macOS, Windows, many cloud drives)
};
std::string_view name_encoding_name(NameEncoding e) noexcept;  // "base64url", "base32"
std::optional<NameEncoding> name_encoding_from_name(std::string_view s) noexcept;

constexpr size_t kMaxPlainName = 255;      // NAME_MAX of what applications see
constexpr size_t kDefaultLongnameMax = 255;
constexpr size_t kMinLongnameMax = 72;     // a hashed name and its side file must fit
constexpr std::string_view kReservedPrefix = "kmsfs.";  // never an encrypted name ('.')
constexpr std::string_view kLongNamePrefix = "kmsfs.ln.";
constexpr std::string_view kSideFileSuffix = ".name";

struct BackingName {
  std::string name;  // the directory entry
  std::string full;  // for a hashed long name: the full encrypted name its side file holds
  bool is_long() const { return !full.empty(); }
  std::string side_file() const { return name + std::string(kSideFileSuffix); }
};

class NameCipher {
 public:
  // Keys come from the filesystem key by HKDF (salt = fs id), one per purpose.
  static Result<std::unique_ptr<NameCipher>> create(ByteSpan fs_key, const FsId& fs_id, CipherId cipher,
                                                    NameEncoding encoding, size_t longname_max);

  NameEncoding encoding() const { return encoding_; }
  size_t longname_max() const { return longname_max_; }

  // ENAMETOOLONG past 255 bytes; EINVAL for "", ".", "..", or a name with '/' or NUL.
  Result<BackingName> encrypt_name(std::string_view plain) const;
  // kCorrupt if `full` is not the encryption of a valid name under this key.
  Result<std::string> decrypt_name(std::string_view full) const;

  // "kmsfs.ln.<hash>": a hashed long name (its side file is "<that>.name").
  static bool is_long_name(std::string_view backing);
  // Whether a side file's content is the full name that `backing` is the hash of.
  bool long_name_matches(std::string_view backing, std::string_view full) const;

  // The part of a user.* xattr name after "user.". ERANGE-style errors as for names.
  Result<std::string> encrypt_xattr_name(std::string_view name) const;
  Result<std::string> decrypt_xattr_name(std::string_view enc) const;
  Result<Bytes> seal_xattr_value(std::string_view enc_name, ByteSpan value) const;
  Result<Bytes> open_xattr_value(std::string_view enc_name, ByteSpan stored) const;

  // Symlink targets, stored as base64url text.
  Result<std::string> seal_link(std::string_view target) const;
  Result<std::string> open_link(std::string_view stored) const;
  // The plaintext length of a stored target of `stored_size` bytes (lstat's st_size),
  // or 0 if that size cannot come from seal_link.
  static size_t link_plain_size(size_t stored_size);

 private:
  NameCipher(Siv siv, std::unique_ptr<Aead> values, NameEncoding e, size_t longname_max)
      : siv_(std::move(siv)), values_(std::move(values)), encoding_(e), longname_max_(longname_max) {}
  Result<std::string> seal_name(std::string_view label, std::string_view plain) const;
  Result<std::string> open_name(std::string_view label, std::string_view enc) const;
  std::string encode(ByteSpan b) const;
  std::optional<Bytes> decode(std::string_view s) const;
  std::string hash_name(std::string_view full) const;

  Siv siv_;
  std::unique_ptr<Aead> values_;
  NameEncoding encoding_;
  size_t longname_max_;
};

}  // namespace kmsfs
