// The cryptographic operations: Encrypt, Decrypt, GenerateDataKey[WithoutPlaintext],
// ReEncrypt. Blobs are sealed with the key's current material and opened with whichever
// material version they name (ciphertext.h); the encryption context is bound into the AAD.
#include "base64.h"
#include "ciphertext.h"
#include "crypto/random.h"
#include "kms_ops.h"

namespace kmsfs::kms_local {
namespace {

constexpr size_t kMaxPlaintext = 4096;
constexpr size_t kMaxCiphertext = 6144;
constexpr const char* kAlgorithm = "SYMMETRIC_DEFAULT";

// EncryptionAlgorithm-shaped members: any value of the model's enum parses, but a
// symmetric key does only SYMMETRIC_DEFAULT.
std::optional<ApiError> check_algorithm(const RequestFields& f, const char* member) {
  auto alg = f.optional_enum(member, {"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1",
                                      "RSAES_OAEP_SHA_256", "SM2PKE"});
  if (!alg.ok()) return alg.error();
  if (alg.value() && *alg.value() != kAlgorithm) {
    return kms_errors::invalid_key_usage("The encryption algorithm " + *alg.value() +
                                         " is not supported by a symmetric KMS key.");
  }
  return std::nullopt;
}

struct Sealed {
  Key* key = nullptr;
  Bytes blob;
};

// Resolves `member`, checks the key is usable and seals with its current material.
ApiResult<Sealed> seal_with(OpContext& ctx, const RequestFields& f, const char* member,
                            ByteSpan plaintext, const ContextMap& context) {
  auto key = key_from_member(ctx, f, member, /*allow_alias=*/true);
  if (!key.ok()) return key.error();
  Key& k = *key.value();
  if (auto e = check_enabled(ctx.store, k)) return *e;
  auto blob = seal_blob({k.id, k.current_version()}, k.current().bytes.span(), plaintext, context);
  if (!blob.ok()) return internal_error(blob.status());
  return Sealed{&k, std::move(blob).value()};
}

struct Opened {
  Key* key = nullptr;
  uint32_t version = 0;
  Bytes plaintext;
};

// Opens `blob`. `key_member`, when the request has it, must name the key the blob names.
ApiResult<Opened> open_with(OpContext& ctx, const RequestFields& f, ByteSpan blob,
                            const ContextMap& context, const char* key_member) {
  auto header = parse_blob_header(blob);
  if (!header.ok()) return kms_errors::invalid_ciphertext("");
  if (f.has(key_member)) {
    auto named = key_from_member(ctx, f, key_member, /*allow_alias=*/true);
    if (!named.ok()) return named.error();
    if (named.value()->id != header->key_id) {
      return kms_errors::incorrect_key(
          "The key ID in the request does not identify a CMK that can perform this operation.");
    }
  }
  Key* key = ctx.store.find(header->key_id);
  // What AWS answers for a blob of a key that is gone or belongs to someone else.
  if (key == nullptr) {
    return kms_errors::access_denied(
        "The ciphertext refers to a customer master key that does not exist, does not exist "
        "in this region, or you are not allowed to access.");
  }
  if (auto e = check_enabled(ctx.store, *key)) return *e;
  if (header->material_version > key->materials.size()) {
    return kms_errors::invalid_ciphertext("");
  }
  const KeyMaterial& m = key->materials[header->material_version - 1];
  auto plaintext = open_blob(blob, m.bytes.span(), context);
  // AWS says nothing more for a wrong context or a tampered blob, and neither do we.
  if (!plaintext.ok()) return kms_errors::invalid_ciphertext("");
  return Opened{key, header->material_version, std::move(plaintext).value()};
}

// GenerateDataKey[WithoutPlaintext]: exactly one of KeySpec and NumberOfBytes.
ApiResult<size_t> data_key_size(const RequestFields& f) {
  auto spec = f.optional_enum("KeySpec", {"AES_256", "AES_128"});
  if (!spec.ok()) return spec.error();
  auto bytes = f.optional_int("NumberOfBytes", 1, 1024);
  if (!bytes.ok()) return bytes.error();
  if (spec.value() && bytes.value()) {
    return kms_errors::validation("KeySpec and NumberOfBytes are mutually exclusive.");
  }
  if (bytes.value()) return static_cast<size_t>(*bytes.value());
  if (spec.value()) return size_t(*spec.value() == "AES_256" ? 32 : 16);
  return kms_errors::validation("Please specify either number of bytes or key spec.");
}

ApiResult<json> generate_data_key(OpContext& ctx, const RequestFields& f, bool with_plaintext) {
  auto size = data_key_size(f);
  if (!size.ok()) return size.error();
  auto context = f.context("EncryptionContext");
  if (!context.ok()) return context.error();
  Bytes data_key(size.value());
  random_bytes(data_key);
  auto sealed = seal_with(ctx, f, "KeyId", data_key, context.value());
  if (!sealed.ok()) return sealed.error();
  const Key& k = *sealed.value().key;
  json out = {{"CiphertextBlob", base64_encode(sealed.value().blob)},
              {"KeyId", ctx.store.key_arn(k.id)},
              {"KeyMaterialId", k.current().id}};
  if (with_plaintext) out["Plaintext"] = base64_encode(data_key);
  return out;
}

}  // namespace

ApiResult<json> op_encrypt(OpContext& ctx, const RequestFields& f) {
  if (auto e = check_algorithm(f, "EncryptionAlgorithm")) return *e;
  auto plaintext = f.blob("Plaintext", 1, kMaxPlaintext);
  if (!plaintext.ok()) return plaintext.error();
  auto context = f.context("EncryptionContext");
  if (!context.ok()) return context.error();
  auto sealed = seal_with(ctx, f, "KeyId", plaintext.value(), context.value());
  if (!sealed.ok()) return sealed.error();
  return json{{"CiphertextBlob", base64_encode(sealed.value().blob)},
              {"KeyId", ctx.store.key_arn(sealed.value().key->id)},
              {"EncryptionAlgorithm", kAlgorithm}};
}

ApiResult<json> op_decrypt(OpContext& ctx, const RequestFields& f) {
  if (auto e = check_algorithm(f, "EncryptionAlgorithm")) return *e;
  auto blob = f.blob("CiphertextBlob", 1, kMaxCiphertext);
  if (!blob.ok()) return blob.error();
  auto context = f.context("EncryptionContext");
  if (!context.ok()) return context.error();
  auto opened = open_with(ctx, f, blob.value(), context.value(), "KeyId");
  if (!opened.ok()) return opened.error();
  const Opened& o = opened.value();
  return json{{"KeyId", ctx.store.key_arn(o.key->id)},
              {"Plaintext", base64_encode(o.plaintext)},
              {"EncryptionAlgorithm", kAlgorithm},
              {"KeyMaterialId", o.key->materials[o.version - 1].id}};
}

ApiResult<json> op_generate_data_key(OpContext& ctx, const RequestFields& f) {
  return generate_data_key(ctx, f, /*with_plaintext=*/true);
}

ApiResult<json> op_generate_data_key_without_plaintext(OpContext& ctx, const RequestFields& f) {
  return generate_data_key(ctx, f, /*with_plaintext=*/false);
}

ApiResult<json> op_re_encrypt(OpContext& ctx, const RequestFields& f) {
  if (auto e = check_algorithm(f, "SourceEncryptionAlgorithm")) return *e;
  if (auto e = check_algorithm(f, "DestinationEncryptionAlgorithm")) return *e;
  auto blob = f.blob("CiphertextBlob", 1, kMaxCiphertext);
  if (!blob.ok()) return blob.error();
  auto source_context = f.context("SourceEncryptionContext");
  if (!source_context.ok()) return source_context.error();
  auto dest_context = f.context("DestinationEncryptionContext");
  if (!dest_context.ok()) return dest_context.error();
  // Check the destination first: a request that cannot succeed never decrypts anything.
  auto dest = key_from_member(ctx, f, "DestinationKeyId", /*allow_alias=*/true);
  if (!dest.ok()) return dest.error();
  if (auto e = check_enabled(ctx.store, *dest.value())) return *e;

  auto opened = open_with(ctx, f, blob.value(), source_context.value(), "SourceKeyId");
  if (!opened.ok()) return opened.error();
  auto sealed = seal_with(ctx, f, "DestinationKeyId", opened.value().plaintext,
                          dest_context.value());
  if (!sealed.ok()) return sealed.error();
  const Opened& o = opened.value();
  const Key& d = *sealed.value().key;
  return json{{"CiphertextBlob", base64_encode(sealed.value().blob)},
              {"SourceKeyId", ctx.store.key_arn(o.key->id)},
              {"KeyId", ctx.store.key_arn(d.id)},
              {"SourceEncryptionAlgorithm", kAlgorithm},
              {"DestinationEncryptionAlgorithm", kAlgorithm},
              {"SourceKeyMaterialId", o.key->materials[o.version - 1].id},
              {"DestinationKeyMaterialId", d.current().id}};
}

}  // namespace kmsfs::kms_local
