// How a file's DEK is sealed under an intermediate key (docs/FORMAT.md §3.4.3): locally,
// with XAES-256-GCM under a key derived from the intermediate key and its id, the file's
// whole encryption context as AAD. The intermediate key itself is wrapped by a provider
// under its own context, derived from the file's (never the file id: many files share it).
#pragma once

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"
#include "format/header.h"
#include "format/key_ref.h"

namespace kmsfs {

constexpr std::string_view kIntermediateKeyIdKey = "kmsfs:ik-id";
constexpr std::string_view kIntermediatePurpose = "intermediate-key";

// The context an intermediate key is wrapped with: the file context's pairs without the
// file id, plus purpose = "intermediate-key" and the key's id. Every file under one
// intermediate key of one filesystem yields the same context.
Result<EncryptionContext> intermediate_context(const EncryptionContext& file_ctx, const IntermediateKeyId& id);

// Seals `dek` (32 bytes) under the intermediate key for the file with `file_ctx`.
Result<Bytes> seal_dek(ByteSpan intermediate_key, const IntermediateKeyId& id, ByteSpan dek,
                       const EncryptionContext& file_ctx);
// kCorrupt if the blob does not authenticate under that key, id and context.
Result<SecureBuffer> open_dek(ByteSpan intermediate_key, const IntermediateKeyId& id, ByteSpan sealed,
                              const EncryptionContext& file_ctx);

}  // namespace kmsfs
