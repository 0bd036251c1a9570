// Keys derived from a file's DEK. The DEK itself is never used directly: HKDF with the
// file id as salt gives one key per purpose, so the content cipher, the header MAC and
// the file-state MAC can never be confused for one another.
#pragma once

#include <memory>

#include "base/status.h"
#include "crypto/aead.h"
#include "crypto/secure_buffer.h"
#include "format/key_ref.h"

namespace kmsfs {

struct FileKeys {
  std::unique_ptr<Aead> content;
  SecureBuffer header_mac_key;
  SecureBuffer state_mac_key;

  static Result<std::shared_ptr<const FileKeys>> derive(CipherId cipher, ByteSpan dek,
                                                        const FileId& file_id);
};

}  // namespace kmsfs
