#include "keys/keyring/keyring_file.h"

#include <algorithm>
#include <cstring>

#include "crypto/kdf.h"

namespace kmsfs {

namespace {

Status corrupt(const std::string& why) { return Status(Code::kCorrupt, why); }

}  // namespace

Result<KeyringContainer> parse_keyring_container(ByteSpan file) {
  ByteReader r(file);
  ByteSpan magic;
  if (!r.raw(kKeyringMagic.size(), magic)) return corrupt("truncated (no header)");
  if (as_chars(magic) != kKeyringMagic) return corrupt("not a kmsfs keyring (bad magic)");
  uint16_t version, flags;
  if (!r.u16(version) || !r.u16(flags)) return corrupt("truncated (no header)");
  if (version != kKeyringFormatVersion)
    return Status(Code::kUnsupported,
                  "unsupported keyring format version " + std::to_string(version));
  if ((flags & ~(kKeyringFlagSealed | kKeyringFlagPruned)) != 0)
    return Status(Code::kUnsupported, "unsupported keyring feature (flags " +
                                          std::to_string(flags) + ")");
  KeyringContainer c;
  c.sealed = (flags & kKeyringFlagSealed) != 0;
  c.pruned = (flags & kKeyringFlagPruned) != 0;

  uint32_t meta_len, blob_len;
  if (!r.u32(meta_len)) return corrupt("meta_len: truncated");
  if (!r.raw(meta_len, c.meta)) return corrupt("meta_len: larger than the file");
  c.aad = file.first(r.pos());
  if (!r.u32(blob_len)) return corrupt("blob_len: truncated");
  if (!r.raw(blob_len, c.blob)) return corrupt("blob_len: larger than the file");

  if (c.sealed) {
    if (r.left() != 0) return corrupt("trailing bytes after the blob");
    if (c.blob.size() < kAeadOverhead) return corrupt("blob: shorter than nonce and tag");
    size_t ct = c.blob.size() - kAeadOverhead;
    if (ct % kKeyringMaterialSize != 0) return corrupt("blob: not a whole number of keys");
    c.material_count = ct / kKeyringMaterialSize;
  } else {
    ByteSpan checksum;
    if (!r.raw(kKeyringChecksumSize, checksum)) return corrupt("checksum: truncated");
    if (r.left() != 0) return corrupt("trailing bytes after the checksum");
    Digest32 want = sha256(file.first(file.size() - kKeyringChecksumSize));
    // Not a secret comparison, but constant time costs nothing here.
    if (!ct_equal(want, checksum)) return corrupt("checksum mismatch (the file is damaged)");
    if (c.blob.size() % kKeyringMaterialSize != 0)
      return corrupt("blob: not a whole number of keys");
    c.material_count = c.blob.size() / kKeyringMaterialSize;
  }
  return c;
}

Bytes keyring_prefix(bool sealed, bool pruned, std::string_view meta) {
  ByteWriter w;
  w.raw(as_bytes(kKeyringMagic));
  w.u16(kKeyringFormatVersion);
  w.u16(static_cast<uint16_t>((sealed ? kKeyringFlagSealed : 0) | (pruned ? kKeyringFlagPruned : 0)));
  w.u32(static_cast<uint32_t>(meta.size()));
  w.raw(as_bytes(meta));
  return w.take();
}

size_t sealed_keyring_size(size_t meta_size, size_t material_count) {
  return kKeyringFixedHeaderSize + meta_size + 4 + kAeadOverhead +
         material_count * kKeyringMaterialSize;
}

size_t plain_keyring_size(size_t meta_size, size_t material_count) {
  return kKeyringFixedHeaderSize + meta_size + 4 + material_count * kKeyringMaterialSize +
         kKeyringChecksumSize;
}

Result<Bytes> build_sealed_keyring(std::string_view meta, ByteSpan materials, const Aead& aead, bool pruned) {
  Bytes prefix = keyring_prefix(true, pruned, meta);
  size_t blob_len = materials.size() + kAeadOverhead;
  Bytes out(prefix.size() + 4 + blob_len);
  std::copy(prefix.begin(), prefix.end(), out.begin());
  put_le32(out.data() + prefix.size(), static_cast<uint32_t>(blob_len));
  MutableByteSpan blob(out.data() + prefix.size() + 4, blob_len);
  RETURN_IF_ERROR(aead.seal(materials, prefix, blob));
  return out;
}

SecureBuffer build_plain_keyring(std::string_view meta, ByteSpan materials, bool pruned) {
  Bytes prefix = keyring_prefix(false, pruned, meta);
  SecureBuffer out(prefix.size() + 4 + materials.size() + kKeyringChecksumSize);
  uint8_t* p = out.data();
  std::memcpy(p, prefix.data(), prefix.size());
  p += prefix.size();
  put_le32(p, static_cast<uint32_t>(materials.size()));
  p += 4;
  if (!materials.empty()) std::memcpy(p, materials.data(), materials.size());
  p += materials.size();
  Digest32 sum = sha256({out.data(), static_cast<size_t>(p - out.data())});
  std::memcpy(p, sum.data(), sum.size());
  return out;
}

}  // namespace kmsfs
