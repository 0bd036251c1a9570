// Builds files directly at the format layer: a random DEK, derived keys and a header
// whose slot holds a stand-in wrap (the format never interprets it; providers do).
#pragma once

#include <memory>

#include "crypto/random.h"
#include "format/backing_file.h"
#include "format/crypt_file.h"
#include "format/file_keys.h"
#include "format/header.h"

namespace kmsfs::testing {

struct TestFile {
  std::shared_ptr<MemoryBackingFile> backing = std::make_shared<MemoryBackingFile>("/vault/f");
  SecureBuffer dek{32};
  FileHeader header;
  std::shared_ptr<const FileKeys> keys;
  std::unique_ptr<CryptFile> file;

  explicit TestFile(CipherId cipher = CipherId::kAes256Gcm, uint32_t block_size = 4096,
                    CryptFile::Options opts = {}) {
    random_bytes(dek.span());
    header.cipher = cipher;
    header.block_size = block_size;
    random_bytes(header.file_id);
    (void)header.context.set(EncryptionContext::kFsIdKey, "00112233445566778899aabbccddeeff");
    (void)header.context.set(EncryptionContext::kFileIdKey, to_hex(header.file_id));
    (void)header.context.set("team", "storage");
    HeaderSlot slot;
    slot.key = KeyRef{ProviderId::kKeyring, "main", 1};
    slot.wrapped_dek = Bytes(73, 0xab);
    header.slots[0] = slot;
    keys = *FileKeys::derive(cipher, dek.span(), header.file_id);
    file = std::move(*CryptFile::create(backing, header, keys, opts));
  }

  // What a fresh open of the backing bytes gives (as after a remount).
  Result<std::unique_ptr<CryptFile>> reopen(CryptFile::Options opts = {}) {
    Bytes raw = backing->peek(0, header::kSize);
    ASSIGN_OR_RETURN(FileHeader h, parse_header(raw));
    return CryptFile::open(backing, std::move(h), keys, opts);
  }
};

inline Bytes pattern(size_t n, uint64_t seed) {
  Bytes b(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& c : b) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<uint8_t>(x);
  }
  return b;
}

inline Result<Bytes> read_all(CryptFile& f) {
  Bytes out(f.size());
  ASSIGN_OR_RETURN(size_t n, f.read(out, 0));
  out.resize(n);
  return out;
}

}  // namespace kmsfs::testing
