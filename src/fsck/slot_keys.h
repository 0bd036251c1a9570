// The data keys of the files fsck opens, unwrapped through the providers their headers
// name. Keys shared by many files (intermediate keys, whose context names no file) are
// unwrapped once per run, as a mount's key cache would; a provider that cannot be set up
// is tried once, not once per file.
#pragma once

#include <map>
#include <memory>
#include <tuple>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"
#include "format/header.h"
#include "keys/key_providers.h"

namespace kmsfs::fsck {

class SlotKeys {
 public:
  explicit SlotKeys(KeyProviders& providers) : providers_(providers) {}

  // The DEK `slot` holds (not yet checked against the header MAC). The provider's code
  // says why not: kPermissionDenied / kNotFound / kUnavailable for a key that cannot be
  // used now, kCorrupt for a wrap that does not authenticate.
  Result<SecureBuffer> dek(const FileHeader& h, const HeaderSlot& slot);
  // A DEK wrapped the way `slot` wraps its own (a re-encryption's second DEK).
  Result<SecureBuffer> dek_like(const FileHeader& h, const HeaderSlot& slot, ByteSpan wrapped);

 private:
  Result<std::shared_ptr<const SecureBuffer>> unwrap(const KeyRef& ref, ByteSpan wrapped, const EncryptionContext& ctx);

  struct Unwrapped {
    Status status;
    std::shared_ptr<const SecureBuffer> key;
  };
  KeyProviders& providers_;
  std::map<ProviderId, Status> broken_providers_;
  // (key reference, wrapped key, canonical context) of a shared key -> its unwrap.
  std::map<std::tuple<std::string, Bytes, Bytes>, Unwrapped> shared_;
};

}  // namespace kmsfs::fsck
