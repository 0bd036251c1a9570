#include "format/file_keys.h"

#include "crypto/kdf.h"

namespace kmsfs {

Result<std::shared_ptr<const FileKeys>> FileKeys::derive(CipherId cipher, ByteSpan dek,
                                                         const FileId& file_id) {
  if (dek.size() != 32) return Status(Code::kInvalidArgument, "data key must be 32 bytes");
  auto keys = std::make_shared<FileKeys>();
  ASSIGN_OR_RETURN(SecureBuffer content_key, hkdf_key(dek, file_id, "kmsfs v1 content key"));
  ASSIGN_OR_RETURN(keys->content, Aead::create(cipher, content_key.span()));
  ASSIGN_OR_RETURN(keys->header_mac_key, hkdf_key(dek, file_id, "kmsfs v1 header mac key"));
  ASSIGN_OR_RETURN(keys->state_mac_key, hkdf_key(dek, file_id, "kmsfs v1 file state mac key"));
  return std::shared_ptr<const FileKeys>(std::move(keys));
}

}  // namespace kmsfs
