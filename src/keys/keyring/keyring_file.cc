#include "keys/keyring/keyring_file.h"

#include <algorithm>
#include <cstring>

#include "crypto/kdf.h"

namespace kmsfs {

namespace {

Status corrupt(const std::string& why) { return Status(Code::kCorrupt, why); }

// A file cut short (a copy interrupted, a full disk, a bad restore) or a length field
// damaged: said in words, with what to do; the caller names the keyring.
Status cut_short(const std::string& what) {
  return corrupt("truncated or damaged (" + what + "); restore it from a backup");
}

}  // namespace

Result<KeyringContainer> parse_keyring_container(ByteSpan file) {
  ByteReader r(file);
  ByteSpan magic;
  if (!r.raw(kKeyringMagic.size(), magic))
    return cut_short(std::to_string(file.size()) + " bytes, shorter than a keyring's header");
  if (as_chars(magic) != kKeyringMagic) return corrupt("not a kmsfs keyring (bad magic)");
  uint16_t version, flags;
  if (!r.u16(version) || !r.u16(flags))
    return cut_short(std::to_string(file.size()) + " bytes, shorter than a keyring's header");
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
  if (!r.u32(meta_len)) return cut_short("it ends inside its header, at byte " + std::to_string(file.size()));
  if (!r.raw(meta_len, c.meta))
    return cut_short("its header gives " + std::to_string(meta_len) + " bytes of key list, only " +
                     std::to_string(r.left()) + " follow");
  c.aad = file.first(r.pos());
  if (!r.u32(blob_len)) return cut_short("it ends after its key list, at byte " + std::to_string(file.size()));
  if (!r.raw(blob_len, c.blob))
    return cut_short("it gives " + std::to_string(blob_len) + " bytes of key material, only " +
                     std::to_string(r.left()) + " follow");

  if (c.sealed) {
    if (r.left() != 0) return corrupt("trailing bytes after the blob");
    if (c.blob.size() < kAeadOverhead) return corrupt("blob: shorter than nonce and tag");
    size_t ct = c.blob.size() - kAeadOverhead;
    if (ct % kKeyringMaterialSize != 0) return corrupt("blob: not a whole number of keys");
    c.material_count = ct / kKeyringMaterialSize;
  } else {
    ByteSpan checksum;
    if (!r.raw(kKeyringChecksumSize, checksum)) return cut_short("its checksum is cut off");
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
