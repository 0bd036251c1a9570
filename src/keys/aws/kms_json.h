// The JSON of the KMS operations kmsfs uses (AWS JSON 1.1): request bodies and the parsing
// of answers. nlohmann::json stays in kms_json.cc; plaintext never passes through it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"
#include "crypto/secure_buffer.h"
#include "format/key_ref.h"
#include "keys/aws/base64.h"
#include "keys/aws/wiped.h"

namespace kmsfs::aws {

// The base64 string value of the top-level member `field` of the JSON object in `json`,
// decoded straight into locked memory; the base64 characters are then overwritten in place
// with 'A' (still valid JSON) so that the rest of the answer can be parsed normally without
// the plaintext reaching an ordinary std::string. We scan rather than parse because
// nlohmann would copy the value into its own std::string, whose heap block we could wipe
// only by reaching into the parsed tree (and any intermediate copies it made are out of
// reach). kNotFound if absent; kCorrupt if present twice, not a string, or not canonical
// base64 (base64.h: what the AWS SDKs accept, the message says what is wrong), or if a
// top-level key is escaped (so that "Pl\u0061intext" cannot smuggle a second value past
// the scan).
Result<SecureBuffer> take_base64_field(WipedString& json, std::string_view field);

// Request bodies. The context always goes as a JSON object of strings. Never throw: a key
// id or context key/value that is not UTF-8 (JSON strings cannot carry it) or a key id
// with control characters is kInvalidArgument, and any nlohmann exception is caught here.
Result<std::string> generate_data_key_body(std::string_view key_id, const EncryptionContext& ctx);
Result<std::string> decrypt_body(std::string_view key_id, ByteSpan blob, const EncryptionContext& ctx);
Result<std::string> reencrypt_body(std::string_view source_key_id, ByteSpan blob,
                                   const EncryptionContext& source_ctx, std::string_view dest_key_id,
                                   const EncryptionContext& dest_ctx);
// Carries the plaintext (base64): the caller wipes it once sent.
Result<WipedString> encrypt_body(std::string_view key_id, ByteSpan plaintext,
                                 const EncryptionContext& ctx);
Result<std::string> describe_key_body(std::string_view key_id);

struct KeyMetadata {
  std::string arn;
  std::string key_id;
  bool enabled = false;
  std::string key_state;  // Enabled, Disabled, PendingDeletion, PendingImport, ...
  std::string key_usage;  // ENCRYPT_DECRYPT
  std::string key_spec;   // SYMMETRIC_DEFAULT (older answers: CustomerMasterKeySpec)
};

struct PlaintextAnswer {
  SecureBuffer plaintext;
  Bytes blob;          // GenerateDataKey only
  std::string key_id;  // the ARN of the key KMS used
};
struct BlobAnswer {
  Bytes blob;
  std::string key_id;
};

// kCorrupt ("malformed KMS answer") when a required field is missing, null or of the wrong
// type. Optional fields may be missing or null, unknown fields are ignored (as the AWS SDKs
// do). Never throw.
Result<PlaintextAnswer> parse_generate_data_key(WipedString& body);
Result<PlaintextAnswer> parse_decrypt(WipedString& body);
Result<BlobAnswer> parse_blob_answer(const WipedString& body);  // Encrypt, ReEncrypt
Result<KeyMetadata> parse_describe_key(const WipedString& body);

struct ErrorAnswer {
  std::string type;  // "__type"
  std::string message;
};
// Best effort: an unparsable error body (an HTML or XML page from a proxy or load
// balancer) gives an empty type and message. The message is cut to one line of at most
// 200 characters, control characters replaced. Never throws.
ErrorAnswer parse_error(std::string_view body);

}  // namespace kmsfs::aws
