// KMS answers (keys/aws/kms_json, kms_errors): whatever the endpoint, or a proxy in front
// of it, sends back. Oracles: no crash or throw; the scanner that takes "Plaintext" out
// of the body agrees with a real JSON parser (what it returns is the base64 decoding of
// the one Plaintext member a parser sees, and only base64 is accepted); the body it
// leaves behind is still the same JSON apart from that member; error bodies give a short
// one-line message and a failed status, never "internal error".
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "keys/aws/kms_errors.h"
#include "keys/aws/kms_json.h"

using namespace kmsfs;
using namespace kmsfs::aws;
using json = nlohmann::json;

namespace {

// The Plaintext member as a JSON parser sees it, if the body is an object holding it once.
std::optional<std::string> plaintext_as_parsed(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto it = j.find("Plaintext");
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

void check_plaintext(const std::string& body, const SecureBuffer& pt) {
  auto p = plaintext_as_parsed(body);
  FUZZ_CHECK(p.has_value(), "Plaintext taken from a body a parser refuses or finds none in");
  auto decoded = base64_decode(*p);
  FUZZ_CHECK(decoded.ok(), "Plaintext accepted that is not base64: " + *p);
  FUZZ_CHECK(*decoded == Bytes(pt.span().begin(), pt.span().end()), "Plaintext decoded differently");
}

void check_message(const std::string& m) {
  FUZZ_CHECK(m.size() <= 200 + 3, "error message cut to 200 characters");
  for (unsigned char c : m) FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control character in an error message");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t sel = in.byte();
  const std::string body = in.rest();
  WipedString w(body.begin(), body.end());
  switch (sel % 7) {
    case 0: {
      auto a = parse_generate_data_key(w);
      if (a.ok()) {
        check_plaintext(body, a->plaintext);
        FUZZ_CHECK(!a->blob.empty(), "GenerateDataKey without a blob");
      }
      break;
    }
    case 1: {
      auto a = parse_decrypt(w);
      if (a.ok()) check_plaintext(body, a->plaintext);
      break;
    }
    case 2:
      (void)parse_blob_answer(w);
      break;
    case 3:
      (void)parse_describe_key(w);
      break;
    case 4: {
      ErrorAnswer e = parse_error(body);
      check_message(e.message);
      Status s = map_kms_error(400 + sel, e.type, e.message, "Decrypt", "arn:aws:kms:eu-west-1:111122223333:key/k");
      FUZZ_CHECK(!s.ok(), "an error answer maps to a failure");
      // Never our "internal error" (kInternal); the answer's own type and message are quoted,
      // so the words themselves may come from the server.
      FUZZ_CHECK(s.code() != Code::kInternal && !s.message().starts_with("internal error"),
                 "internal error from a KMS answer: " + s.message());
      break;
    }
    case 5: {
      auto pt = take_base64_field(w, "Plaintext");
      if (!pt.ok()) break;
      check_plaintext(body, *pt);
      // What is left is the same JSON with the value overwritten.
      json before = json::parse(body, nullptr, false), after = json::parse(w, nullptr, false);
      FUZZ_CHECK(!after.is_discarded(), "the body stays JSON");
      before.erase("Plaintext");
      after.erase("Plaintext");
      FUZZ_CHECK(before == after, "only Plaintext changed");
      break;
    }
    case 6: {
      auto d = base64_decode(body);
      if (d.ok()) FUZZ_CHECK(base64_encode(*d) == body, "base64 is canonical");
      break;
    }
  }
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  const std::string arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  const std::string pt = base64_encode(Bytes(32, 0x42)), blob = base64_encode(Bytes(60, 0x17));
  auto seed = [&](const std::string& name, int sel, const std::string& body) { out(name, std::string(1, char(sel)) + body); };
  seed("gdk", 0, R"({"CiphertextBlob":")" + blob + R"(","KeyId":")" + arn + R"(","Plaintext":")" + pt + R"("})");
  seed("gdk-extra", 0, R"({"CiphertextBlob":")" + blob + R"(","KeyId":")" + arn + R"(","Plaintext":")" + pt +
                           R"(","KeyMaterialId":null,"CiphertextForRecipient":null,"x":{"Plaintext":"AA=="}})");
  seed("decrypt", 1, R"({"EncryptionAlgorithm":"SYMMETRIC_DEFAULT","KeyId":")" + arn + R"(","Plaintext":")" + pt + R"("})");
  seed("decrypt-escaped-slash", 1, R"({"KeyId":")" + arn + R"(","Plaintext":"ab\/cd+efA=="})");
  seed("blob", 2, R"({"CiphertextBlob":")" + blob + R"(","KeyId":")" + arn + R"(","SourceKeyId":")" + arn + R"("})");
  seed("describe", 3, R"({"KeyMetadata":{"AWSAccountId":"111122223333","Arn":")" + arn +
                          R"(","KeyId":"1234abcd","Enabled":true,"KeyState":"Enabled","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","MultiRegion":false}})");
  seed("describe-nulls", 3, R"({"KeyMetadata":{"Arn":")" + arn + R"(","KeyId":"k","Enabled":true,"KeyUsage":null}})");
  seed("error-json", 4, R"({"__type":"AccessDeniedException","message":"User is not authorized"})");
  seed("error-ns", 4, R"({"__type":"com.amazonaws.kms#KMSInvalidStateException","Message":"pending deletion"})");
  seed("error-xml", 4, "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>");
  seed("error-html", 4, "<html><body><h1>403 Forbidden</h1></body></html>");
  seed("take", 5, R"({"KeyId":"k","Plaintext":")" + pt + R"("})");
  seed("base64", 6, pt);
}
