#include "keys/aws/kms_json.h"

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

// What dump() would throw on (type_error 316), checked first so that it never does.
Status check_key_id(std::string_view what, std::string_view id) {
  if (!is_utf8(id)) return Status(Code::kInvalidArgument, "KMS request: " + std::string(what) + " is not UTF-8");
  if (has_control_chars(id)) {
    return Status(Code::kInvalidArgument,
                  "KMS request: " + std::string(what) + " contains control characters");
  }
  return Status::Ok();
}

Status check_context(const EncryptionContext& ctx) {
  for (const auto& [k, v] : ctx.pairs()) {
    if (!is_utf8(k) || !is_utf8(v)) {
      return Status(Code::kInvalidArgument, "KMS request: encryption context is not UTF-8");
    }
  }
  return Status::Ok();
}

// The last line of defence: nothing nlohmann throws leaves the request builder.
template <typename Build>
auto no_throw(Build build) -> decltype(build()) {
  try {
    return build();
  } catch (const json::exception& e) {
    return Status(Code::kInvalidArgument, std::string("KMS request: cannot encode JSON (nlohmann error ") +
                                              std::to_string(e.id) + ")");
  }
}

Result<json> parse_object(std::string_view body) {
  json j;
  try {
    j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  } catch (const json::exception&) {
    return malformed("not a JSON object");
  }
  if (j.is_discarded() || !j.is_object()) return malformed("not a JSON object");
  return j;
}

Result<std::string> string_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return malformed(std::string("no ") + name);
  if (!it->is_string()) return malformed(std::string(name) + " is not a string");
  return it->get_ref<const std::string&>();
}

// An optional string member: missing or null is "", any other non-string type too (an
// answer's optional members are informational; the required ones are checked above).
std::string optional_string(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get_ref<const std::string&>() : std::string();
}

// One line, at most `max` bytes, control characters as '?'; never the whole of a body.
std::string one_line(std::string_view s, size_t max = 200) {
  std::string out;
  for (char ch : s.substr(0, max)) {
    const auto c = static_cast<unsigned char>(ch);
    out += c < 0x20 || c == 0x7F ? '?' : ch;
  }
  if (s.size() > max) out += "...";
  return out;
}

Result<Bytes> blob_field(const json& j, const char* name) {
  ASSIGN_OR_RETURN(std::string b64, string_field(j, name));
  Result<Bytes> b = base64_decode(b64);
  if (!b.ok()) return malformed(std::string(name) + " is " + b.status().message());
  if (b->empty()) return malformed(std::string(name) + " is empty");
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
      if (k + 1 >= value_end || s[k + 1] != '/')
        return malformed(std::string(field) + " is not base64: a JSON escape other than \\/");
      ++k;
    }
    b64 += s[k];
  }
  SecureBuffer out(base64_max_decoded(b64.size()));
  Result<size_t> len = base64_decode_into(std::string_view(b64.data(), b64.size()), out.data());
  if (!len.ok()) return malformed(std::string(field) + " is " + len.status().message());
  out.truncate(*len);
  std::fill(js.begin() + std::ptrdiff_t(value_begin), js.begin() + std::ptrdiff_t(value_end), 'A');
  // The scan checks no more than it needs: the whole body must still be JSON, or a body no
  // parser accepts would give a plaintext (fuzz_kms_json). Checked once the value is 'A's,
  // so that the parser's own buffers never hold the plaintext.
  if (!json::accept(std::string_view(js.data(), js.size()))) return malformed("not a JSON object");
  return out;
}

Result<std::string> generate_data_key_body(std::string_view key_id, const EncryptionContext& ctx) {
  RETURN_IF_ERROR(check_key_id("key id", key_id));
  RETURN_IF_ERROR(check_context(ctx));
  return no_throw([&]() -> Result<std::string> {
    return json{{"KeyId", key_id}, {"KeySpec", "AES_256"}, {"EncryptionContext", context_json(ctx)}}
        .dump();
  });
}

Result<std::string> decrypt_body(std::string_view key_id, ByteSpan blob, const EncryptionContext& ctx) {
  RETURN_IF_ERROR(check_key_id("key id", key_id));
  RETURN_IF_ERROR(check_context(ctx));
  return no_throw([&]() -> Result<std::string> {
    return json{{"KeyId", key_id},
                {"CiphertextBlob", base64_encode(blob)},
                {"EncryptionContext", context_json(ctx)}}
        .dump();
  });
}

Result<std::string> reencrypt_body(std::string_view source_key_id, ByteSpan blob,
                                   const EncryptionContext& source_ctx, std::string_view dest_key_id,
                                   const EncryptionContext& dest_ctx) {
  RETURN_IF_ERROR(check_key_id("source key id", source_key_id));
  RETURN_IF_ERROR(check_key_id("destination key id", dest_key_id));
  RETURN_IF_ERROR(check_context(source_ctx));
  RETURN_IF_ERROR(check_context(dest_ctx));
  return no_throw([&]() -> Result<std::string> {
    return json{{"SourceKeyId", source_key_id},
                {"CiphertextBlob", base64_encode(blob)},
                {"SourceEncryptionContext", context_json(source_ctx)},
                {"DestinationKeyId", dest_key_id},
                {"DestinationEncryptionContext", context_json(dest_ctx)}}
        .dump();
  });
}

Result<WipedString> encrypt_body(std::string_view key_id, ByteSpan plaintext,
                                 const EncryptionContext& ctx) {
  RETURN_IF_ERROR(check_key_id("key id", key_id));
  RETURN_IF_ERROR(check_context(ctx));
  // The non-secret members through nlohmann, the plaintext spliced in by hand so that it
  // only ever sits in wiped memory.
  ASSIGN_OR_RETURN(std::string head, no_throw([&]() -> Result<std::string> {
                     return json{{"KeyId", key_id}, {"EncryptionContext", context_json(ctx)}}.dump();
                   }));
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

Result<std::string> describe_key_body(std::string_view key_id) {
  RETURN_IF_ERROR(check_key_id("key id", key_id));
  return no_throw([&]() -> Result<std::string> { return json{{"KeyId", key_id}}.dump(); });
}

namespace {
// A 200 without its Plaintext is a malformed answer (kCorrupt), not a missing key.
Result<SecureBuffer> required_plaintext(WipedString& body) {
  Result<SecureBuffer> pt = take_base64_field(body, "Plaintext");
  if (pt.status().code() == Code::kNotFound) return malformed("no Plaintext");
  return pt;
}
}  // namespace

Result<PlaintextAnswer> parse_generate_data_key(WipedString& body) {
  ASSIGN_OR_RETURN(SecureBuffer pt, required_plaintext(body));
  ASSIGN_OR_RETURN(json j, parse_object(std::string_view(body.data(), body.size())));
  PlaintextAnswer a{std::move(pt), {}, {}};
  ASSIGN_OR_RETURN(a.blob, blob_field(j, "CiphertextBlob"));
  ASSIGN_OR_RETURN(a.key_id, string_field(j, "KeyId"));
  return a;
}

Result<PlaintextAnswer> parse_decrypt(WipedString& body) {
  ASSIGN_OR_RETURN(SecureBuffer pt, required_plaintext(body));
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
  k.key_state = optional_string(m, "KeyState");
  k.key_usage = optional_string(m, "KeyUsage");
  k.key_spec = optional_string(m, "KeySpec");
  if (k.key_spec.empty()) k.key_spec = optional_string(m, "CustomerMasterKeySpec");
  // Optional in the KMS model: without it, the state says whether the key is enabled.
  auto en = m.find("Enabled");
  if (en != m.end() && en->is_boolean()) {
    k.enabled = en->get<bool>();
  } else if (en == m.end() || en->is_null()) {
    k.enabled = k.key_state == "Enabled";
  } else {
    return malformed("Enabled is not a boolean");
  }
  return k;
}

ErrorAnswer parse_error(std::string_view body) {
  ErrorAnswer e;
  json j;
  try {
    j = json::parse(body, nullptr, false);
  } catch (const json::exception&) {
    return e;
  }
  if (j.is_discarded() || !j.is_object()) return e;
  e.type = one_line(optional_string(j, "__type"), 100);
  e.message = one_line(optional_string(j, "message"));
  if (e.message.empty()) e.message = one_line(optional_string(j, "Message"));
  return e;
}

}  // namespace kmsfs::aws
