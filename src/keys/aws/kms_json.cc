#include "keys/aws/kms_json.h"

#include <sodium.h>

#include <nlohmann/json.hpp>

namespace kmsfs::aws {

using nlohmann::json;

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Index one past the closing quote of the JSON string starting at s[open] == '"', or npos.
size_t string_end(std::string_view s, size_t open) {
  for (size_t i = open + 1; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '"') return i + 1;
  }
  return std::string_view::npos;
}

Status malformed(std::string_view what) {
  return Status(Code::kCorrupt, "malformed KMS answer: " + std::string(what));
}

json context_json(const EncryptionContext& ctx) {
  json out = json::object();
  for (const auto& [k, v] : ctx.pairs()) out[k] = v;
  return out;
}

Result<json> parse_object(std::string_view body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return malformed("not a JSON object");
  return j;
}

Result<std::string> string_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return malformed(std::string("no string ") + name);
  return it->get<std::string>();
}

Result<Bytes> blob_field(const json& j, const char* name) {
  ASSIGN_OR_RETURN(std::string b64, string_field(j, name));
  Result<Bytes> b = base64_decode(b64);
  if (!b.ok() || b->empty()) return malformed(std::string(name) + " is not base64");
  return b;
}

}  // namespace

Result<SecureBuffer> take_base64_field(WipedString& js, std::string_view field) {
  std::string_view s(js.data(), js.size());
  size_t i = 0;
  while (i < s.size() && is_ws(s[i])) ++i;
  if (i == s.size() || s[i] != '{') return malformed("not a JSON object");
  int depth = 0;
  bool expect_key = false;
  size_t value_begin = 0, value_end = 0;
  bool found = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      size_t end = string_end(s, i);
      if (end == std::string_view::npos) return malformed("unterminated string");
      if (depth == 1 && expect_key) {
        expect_key = false;
        std::string_view key = s.substr(i + 1, end - i - 2);
        if (key.find('\\') != std::string_view::npos) return malformed("escaped member name");
        size_t j = end;
        while (j < s.size() && is_ws(s[j])) ++j;
        if (j == s.size() || s[j] != ':') return malformed("no ':' after a member name");
        if (key == field) {
          if (found) return malformed(std::string(field) + " given twice");
          ++j;
          while (j < s.size() && is_ws(s[j])) ++j;
          if (j == s.size() || s[j] != '"') return malformed(std::string(field) + " is not a string");
          size_t vend = string_end(s, j);
          if (vend == std::string_view::npos) return malformed("unterminated string");
          found = true;
          value_begin = j + 1;
          value_end = vend - 1;
          end = vend;
        }
      }
      i = end - 1;
    } else if (c == '{' || c == '[') {
      ++depth;
      expect_key = c == '{' && depth == 1;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == ',' && depth == 1) {
      expect_key = true;
    }
  }
  if (!found) return Status(Code::kNotFound, "KMS answer has no " + std::string(field));

  // JSON may escape '/' as "\/"; no other escape belongs in base64.
  WipedString b64;
  WipeOnExit wipe_b64(b64);
  b64.reserve(value_end - value_begin);
  for (size_t k = value_begin; k < value_end; ++k) {
    if (s[k] == '\\') {
      if (k + 1 >= value_end || s[k + 1] != '/') return malformed(std::string(field) + " is not base64");
      ++k;
    }
    b64 += s[k];
  }
  SecureBuffer out(b64.size() / 4 * 3 + 3);
  size_t len = 0;
  const char* b64_end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), b64.data(), b64.size(), nullptr, &len, &b64_end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      b64_end != b64.data() + b64.size()) {
    return malformed(std::string(field) + " is not base64");
  }
  out.truncate(len);
  std::fill(js.begin() + std::ptrdiff_t(value_begin), js.begin() + std::ptrdiff_t(value_end), 'A');
  return out;
}

std::string base64_encode(ByteSpan bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

WipedString base64_encode_secret(ByteSpan bytes) {
  WipedString out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

Result<Bytes> base64_decode(std::string_view b64) {
  Bytes out(b64.size() / 4 * 3 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), b64.data(), b64.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != b64.data() + b64.size()) {
    return Status(Code::kInvalidArgument, "not base64");
  }
  out.resize(len);
  return out;
}

std::string generate_data_key_body(std::string_view key_id, const EncryptionContext& ctx) {
  return json{{"KeyId", key_id}, {"KeySpec", "AES_256"}, {"EncryptionContext", context_json(ctx)}}
      .dump();
}

std::string decrypt_body(std::string_view key_id, ByteSpan blob, const EncryptionContext& ctx) {
  return json{{"KeyId", key_id},
              {"CiphertextBlob", base64_encode(blob)},
              {"EncryptionContext", context_json(ctx)}}
      .dump();
}

std::string reencrypt_body(std::string_view source_key_id, ByteSpan blob,
                           const EncryptionContext& source_ctx, std::string_view dest_key_id,
                           const EncryptionContext& dest_ctx) {
  return json{{"SourceKeyId", source_key_id},
              {"CiphertextBlob", base64_encode(blob)},
              {"SourceEncryptionContext", context_json(source_ctx)},
              {"DestinationKeyId", dest_key_id},
              {"DestinationEncryptionContext", context_json(dest_ctx)}}
      .dump();
}

WipedString encrypt_body(std::string_view key_id, ByteSpan plaintext, const EncryptionContext& ctx) {
  // The non-secret members through nlohmann, the plaintext spliced in by hand so that it
  // only ever sits in wiped memory.
  std::string head = json{{"KeyId", key_id}, {"EncryptionContext", context_json(ctx)}}.dump();
  WipedString b64 = base64_encode_secret(plaintext);
  WipeOnExit wipe_b64(b64);
  WipedString out;
  out.reserve(head.size() + b64.size() + 16);
  out.append(head.data(), head.size() - 1);  // without the closing '}'
  out += ",\"Plaintext\":\"";
  out += b64;
  out += "\"}";
  return out;
}

std::string describe_key_body(std::string_view key_id) { return json{{"KeyId", key_id}}.dump(); }

Result<PlaintextAnswer> parse_generate_data_key(WipedString& body) {
  ASSIGN_OR_RETURN(SecureBuffer pt, take_base64_field(body, "Plaintext"));
  ASSIGN_OR_RETURN(json j, parse_object(std::string_view(body.data(), body.size())));
  PlaintextAnswer a{std::move(pt), {}, {}};
  ASSIGN_OR_RETURN(a.blob, blob_field(j, "CiphertextBlob"));
  ASSIGN_OR_RETURN(a.key_id, string_field(j, "KeyId"));
  return a;
}

Result<PlaintextAnswer> parse_decrypt(WipedString& body) {
  ASSIGN_OR_RETURN(SecureBuffer pt, take_base64_field(body, "Plaintext"));
  ASSIGN_OR_RETURN(json j, parse_object(std::string_view(body.data(), body.size())));
  PlaintextAnswer a{std::move(pt), {}, {}};
  ASSIGN_OR_RETURN(a.key_id, string_field(j, "KeyId"));
  return a;
}

Result<BlobAnswer> parse_blob_answer(const WipedString& body) {
  ASSIGN_OR_RETURN(json j, parse_object(std::string_view(body.data(), body.size())));
  BlobAnswer a;
  ASSIGN_OR_RETURN(a.blob, blob_field(j, "CiphertextBlob"));
  ASSIGN_OR_RETURN(a.key_id, string_field(j, "KeyId"));
  return a;
}

Result<KeyMetadata> parse_describe_key(const WipedString& body) {
  ASSIGN_OR_RETURN(json j, parse_object(std::string_view(body.data(), body.size())));
  auto it = j.find("KeyMetadata");
  if (it == j.end() || !it->is_object()) return malformed("no KeyMetadata");
  const json& m = *it;
  KeyMetadata k;
  ASSIGN_OR_RETURN(k.arn, string_field(m, "Arn"));
  ASSIGN_OR_RETURN(k.key_id, string_field(m, "KeyId"));
  auto en = m.find("Enabled");
  if (en == m.end() || !en->is_boolean()) return malformed("no boolean Enabled");
  k.enabled = en->get<bool>();
  k.key_state = m.value("KeyState", "");
  k.key_usage = m.value("KeyUsage", "");
  k.key_spec = m.value("KeySpec", m.value("CustomerMasterKeySpec", ""));
  return k;
}

ErrorAnswer parse_error(std::string_view body) {
  ErrorAnswer e;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return e;
  auto str = [&](const char* name) {
    auto it = j.find(name);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  e.type = str("__type");
  e.message = str("message");
  if (e.message.empty()) e.message = str("Message");
  return e;
}

}  // namespace kmsfs::aws
