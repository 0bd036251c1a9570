#include "format/names.h"

#include <cerrno>
#include <vector>

#include "base/encoding.h"
#include "crypto/kdf.h"

namespace kmsfs {

namespace {

constexpr size_t kPad = 16;  // names are padded to 16 bytes: lengths leak only that coarsely
constexpr std::string_view kNameLabel = "kmsfs v1 name";
constexpr std::string_view kXattrNameLabel = "kmsfs v1 xattr name";
constexpr std::string_view kLinkAad = "kmsfs v1 symlink";
constexpr std::string_view kXattrValueAad = "kmsfs v1 xattr value";

Status check_component(std::string_view n) {
  if (n.size() > kMaxPlainName) return Status(Code::kInvalidArgument, "name longer than 255 bytes", ENAMETOOLONG);
  if (n.empty() || n == "." || n == ".." || n.find('/') != n.npos || n.find('\0') != n.npos)
    return Status(Code::kInvalidArgument, "not a valid file name", EINVAL);
  return Status::Ok();
}

}  // namespace

std::string_view name_encoding_name(NameEncoding e) noexcept {
  return e == NameEncoding::kBase32 ? "base32" : "base64url";
}

std::optional<NameEncoding> name_encoding_from_name(std::string_view s) noexcept {
  if (s == "base64url") return NameEncoding::kBase64Url;
  if (s == "base32") return NameEncoding::kBase32;
  return std::nullopt;
}

Result<std::unique_ptr<NameCipher>> NameCipher::create(ByteSpan fs_key, const FsId& fs_id, CipherId cipher,
                                                       NameEncoding encoding, size_t longname_max) {
  if (longname_max < kMinLongnameMax || longname_max > 255)
    return Status(Code::kInvalidArgument, "longname-max must be between " + std::to_string(kMinLongnameMax) +
                                              " and 255, got " + std::to_string(longname_max));
  ASSIGN_OR_RETURN(SecureBuffer name_key, hkdf_key(fs_key, fs_id, "kmsfs v1 name key", kSivKeySize));
  ASSIGN_OR_RETURN(SecureBuffer value_key, hkdf_key(fs_key, fs_id, "kmsfs v1 name value key"));
  ASSIGN_OR_RETURN(Siv siv, Siv::create(name_key.span()));
  ASSIGN_OR_RETURN(std::unique_ptr<Aead> values, Aead::create(cipher, value_key.span()));
  return std::unique_ptr<NameCipher>(new NameCipher(std::move(siv), std::move(values), encoding, longname_max));
}

std::string NameCipher::encode(ByteSpan b) const {
  return encoding_ == NameEncoding::kBase32 ? base32_encode(b) : base64url_encode(b);
}

std::optional<Bytes> NameCipher::decode(std::string_view s) const {
  return encoding_ == NameEncoding::kBase32 ? base32_decode(s) : base64url_decode(s);
}

Result<std::string> NameCipher::seal_name(std::string_view label, std::string_view plain) const {
  // PKCS#7: 1..16 bytes, each holding the pad length.
  const size_t pad = kPad - plain.size() % kPad;
  Bytes padded(plain.begin(), plain.end());
  padded.insert(padded.end(), pad, static_cast<uint8_t>(pad));
  const ByteSpan ad[] = {as_bytes(label)};
  ASSIGN_OR_RETURN(Bytes sealed, siv_.seal(ad, padded));
  return encode(sealed);
}

Result<std::string> NameCipher::open_name(std::string_view label, std::string_view enc) const {
  auto raw = decode(enc);
  if (!raw || raw->size() < kSivTagSize + kPad || (raw->size() - kSivTagSize) % kPad != 0)
    return Status(Code::kCorrupt, "not an encrypted name");
  const ByteSpan ad[] = {as_bytes(label)};
  ASSIGN_OR_RETURN(Bytes padded, siv_.open(ad, *raw));
  // Authenticated, so a bad pad means a bug or a different encoder, not an attack; refuse.
  const uint8_t pad = padded.back();
  if (pad == 0 || pad > kPad || pad > padded.size()) return Status(Code::kCorrupt, "bad name padding");
  for (size_t i = padded.size() - pad; i < padded.size(); ++i)
    if (padded[i] != pad) return Status(Code::kCorrupt, "bad name padding");
  return std::string(as_chars(padded).substr(0, padded.size() - pad));
}

std::string NameCipher::hash_name(std::string_view full) const {
  const Digest32 d = sha256(as_bytes(full));
  return std::string(kLongNamePrefix) + encode(d);
}

Result<BackingName> NameCipher::encrypt_name(std::string_view plain) const {
  RETURN_IF_ERROR(check_component(plain));
  ASSIGN_OR_RETURN(std::string full, seal_name(kNameLabel, plain));
  if (full.size() <= longname_max_) return BackingName{std::move(full), {}};
  std::string hashed = hash_name(full);
  return BackingName{std::move(hashed), std::move(full)};
}

Result<std::string> NameCipher::decrypt_name(std::string_view full) const {
  ASSIGN_OR_RETURN(std::string plain, open_name(kNameLabel, full));
  if (!check_component(plain).ok()) return Status(Code::kCorrupt, "encrypted name holds an invalid name");
  return plain;
}

bool NameCipher::is_long_name(std::string_view backing) {
  return backing.starts_with(kLongNamePrefix) && !backing.ends_with(kSideFileSuffix) &&
         backing.find('.', kLongNamePrefix.size()) == backing.npos;
}

bool NameCipher::long_name_matches(std::string_view backing, std::string_view full) const {
  return hash_name(full) == backing;
}

Result<std::string> NameCipher::encrypt_xattr_name(std::string_view name) const {
  if (name.empty() || name.find('\0') != name.npos)
    return Status(Code::kInvalidArgument, "invalid xattr name", EINVAL);
  if (name.size() > 255) return Status(Code::kInvalidArgument, "xattr name too long", ERANGE);
  return seal_name(kXattrNameLabel, name);
}

Result<std::string> NameCipher::decrypt_xattr_name(std::string_view enc) const {
  return open_name(kXattrNameLabel, enc);
}

// Bound to the (encrypted) attribute name, so values cannot be swapped between attributes.
static Bytes xattr_value_aad(std::string_view enc_name) {
  Bytes aad(kXattrValueAad.begin(), kXattrValueAad.end());
  aad.push_back(0);
  aad.insert(aad.end(), enc_name.begin(), enc_name.end());
  return aad;
}

Result<Bytes> NameCipher::seal_xattr_value(std::string_view enc_name, ByteSpan value) const {
  const Bytes aad = xattr_value_aad(enc_name);
  Bytes out(value.size() + kAeadOverhead);
  RETURN_IF_ERROR(values_->seal(value, aad, out));
  return out;
}

Result<Bytes> NameCipher::open_xattr_value(std::string_view enc_name, ByteSpan stored) const {
  if (stored.size() < kAeadOverhead) return Status(Code::kCorrupt, "xattr value too short to be sealed");
  const Bytes aad = xattr_value_aad(enc_name);
  Bytes out(stored.size() - kAeadOverhead);
  RETURN_IF_ERROR(values_->open(stored, aad, out));
  return out;
}

Result<std::string> NameCipher::seal_link(std::string_view target) const {
  Bytes out(target.size() + kAeadOverhead);
  RETURN_IF_ERROR(values_->seal(as_bytes(target), as_bytes(kLinkAad), out));
  return base64url_encode(out);
}

Result<std::string> NameCipher::open_link(std::string_view stored) const {
  auto raw = base64url_decode(stored);
  if (!raw || raw->size() < kAeadOverhead) return Status(Code::kCorrupt, "not an encrypted symlink target");
  std::string out(raw->size() - kAeadOverhead, '\0');
  RETURN_IF_ERROR(values_->open(*raw, as_bytes(kLinkAad),
                                MutableByteSpan(reinterpret_cast<uint8_t*>(out.data()), out.size())));
  return out;
}

size_t NameCipher::link_plain_size(size_t stored_size) {
  const size_t raw = stored_size * 6 / 8;
  return raw >= kAeadOverhead ? raw - kAeadOverhead : 0;
}

}  // namespace kmsfs
