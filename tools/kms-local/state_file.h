// The key store on disk: one JSON file, replaced atomically (temp + fsync + rename) after
// every change, mode 0600. It holds key material in clear (base64): fine for a development
// and test server, and the reason it is never group- or world-readable.
#pragma once

#include <string>

#include "base/status.h"
#include "key_store.h"

namespace kmsfs::kms_local {

Status save_state(const KeyStore& store, const std::string& path);
// kNotFound if the file does not exist (a first start); kInvalidArgument if it was written
// for another Region or account (its ARNs would silently change); kCorrupt if malformed.
Result<KeyStore> load_state(const std::string& path, const std::string& region,
                            const std::string& account_id);

}  // namespace kmsfs::kms_local
