#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "keys/aws/kms_json.h"

namespace kmsfs::aws {
namespace {

const std::string kKey32B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31

WipedString ws(std::string_view s) { return WipedString(s.data(), s.size()); }

TEST(KmsJson, PlaintextGoesToSecureBufferAndIsOverwrittenInTheAnswer) {
  WipedString body = ws(R"({"CiphertextBlob":"AQID","KeyId":"arn:aws:kms:r:1:key/k","Plaintext":")" +
                        kKey32B64 + R"("})");
  Result<PlaintextAnswer> a = parse_generate_data_key(body);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  ASSERT_EQ(a->plaintext.size(), 32u);
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(a->plaintext.data()[i], i);
  EXPECT_EQ(a->blob, (Bytes{1, 2, 3}));
  EXPECT_EQ(a->key_id, "arn:aws:kms:r:1:key/k");
  // The base64 plaintext no longer exists in the answer buffer.
  std::string_view left(body.data(), body.size());
  EXPECT_EQ(left.find(kKey32B64), std::string_view::npos);
  EXPECT_NE(left.find(R"("Plaintext":")" + std::string(kKey32B64.size(), 'A') + "\""),
            std::string_view::npos);
}

TEST(KmsJson, ScanFindsOnlyTheTopLevelMember) {
  // A nested "Plaintext" and one inside a string value are not the answer's.
  WipedString body = ws(R"({"X":{"Plaintext":"AAAA"},"Y":"\"Plaintext\":\"BBBB\"",)"
                        R"( "Plaintext" : ")" + kKey32B64 + R"(", "KeyId":"arn:k"})");
  Result<PlaintextAnswer> a = parse_decrypt(body);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->plaintext.size(), 32u);
  EXPECT_EQ(a->plaintext.data()[31], 31);
}

TEST(KmsJson, EscapedSlashInBase64) {
  WipedString body = ws(R"({"Plaintext":"\/w==","KeyId":"arn:k"})");
  Result<SecureBuffer> p = take_base64_field(body, "Plaintext");
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ(p->data()[0], 0xff);
}

TEST(KmsJson, RefusesAmbiguousOrMalformedPlaintext) {
  for (std::string bad : {
           R"({"Plaintext":"AAAA","Plaintext":"BBBB"})",  // twice: which one would a parser keep?
           R"({"Pl\u0061intext":"AAAA","Plaintext":"BBBB"})",  // escaped name
           R"({"Plaintext":12})",
           R"({"Plaintext":"not base64!"})",
           R"({"Plaintext":"AA\nAA"})",
           R"({"Plaintext":"AAAA)",
           R"(["Plaintext","AAAA"])",
       }) {
    WipedString body = ws(bad);
    Result<SecureBuffer> p = take_base64_field(body, "Plaintext");
    EXPECT_EQ(p.status().code(), Code::kCorrupt) << bad;
  }
  // Found by fuzz_kms_json: the scan alone took a Plaintext out of a body that is not JSON.
  for (std::string bad : {R"({"KeyId":"k","Plaintext":")" + kKey32B64 + R"("k)",
                          R"({"Plaintext":")" + kKey32B64 + R"(" "KeyId":"k"})"}) {
    WipedString body = ws(bad);
    EXPECT_EQ(take_base64_field(body, "Plaintext").status().code(), Code::kCorrupt) << bad;
  }
  WipedString none = ws(R"({"KeyId":"arn:k"})");
  EXPECT_EQ(take_base64_field(none, "Plaintext").status().code(), Code::kNotFound);
  WipedString body = ws(R"({"Plaintext":")" + kKey32B64 + R"("})");
  EXPECT_EQ(parse_decrypt(body).status().code(), Code::kCorrupt);  // no KeyId
}

TEST(KmsJson, RequestBodies) {
  EncryptionContext ctx;
  ASSERT_TRUE(ctx.set("kmsfs:fs-id", "00ff").ok());
  ASSERT_TRUE(ctx.set("team", "ops").ok());
  auto j = nlohmann::json::parse(*decrypt_body("arn:k", Bytes{1, 2, 3}, ctx));
  EXPECT_EQ(j["KeyId"], "arn:k");
  EXPECT_EQ(j["CiphertextBlob"], "AQID");
  EXPECT_EQ(j["EncryptionContext"]["kmsfs:fs-id"], "00ff");
  EXPECT_EQ(j["EncryptionContext"]["team"], "ops");

  j = nlohmann::json::parse(*generate_data_key_body("arn:k", ctx));
  EXPECT_EQ(j["KeySpec"], "AES_256");
  EXPECT_EQ(j["EncryptionContext"].size(), 2u);

  j = nlohmann::json::parse(*reencrypt_body("arn:a", Bytes{9}, ctx, "arn:b", ctx));
  EXPECT_EQ(j["SourceKeyId"], "arn:a");
  EXPECT_EQ(j["DestinationKeyId"], "arn:b");
  EXPECT_EQ(j["SourceEncryptionContext"], j["DestinationEncryptionContext"]);

  Bytes pt = {0, 1, 2, 3};
  WipedString enc = *encrypt_body("arn:k", pt, ctx);
  j = nlohmann::json::parse(std::string_view(enc.data(), enc.size()));
  EXPECT_EQ(j["Plaintext"], "AAECAw==");
  EXPECT_EQ(j["KeyId"], "arn:k");
  EXPECT_EQ(j["EncryptionContext"]["team"], "ops");

  // Context values are JSON-escaped, not spliced.
  EncryptionContext tricky;
  ASSERT_TRUE(tricky.set("a\"b", "c\\d\n").ok());
  j = nlohmann::json::parse(*generate_data_key_body("k", tricky));
  EXPECT_EQ(j["EncryptionContext"]["a\"b"], "c\\d\n");
}

TEST(KmsJson, DescribeKeyAndErrors) {
  WipedString body = ws(R"({"KeyMetadata":{"Arn":"arn:aws:kms:r:1:key/k","KeyId":"k","Enabled":true,)"
                        R"("KeyState":"Enabled","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT"}})");
  Result<KeyMetadata> m = parse_describe_key(body);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->arn, "arn:aws:kms:r:1:key/k");
  EXPECT_TRUE(m->enabled);
  EXPECT_EQ(m->key_spec, "SYMMETRIC_DEFAULT");
  WipedString old = ws(R"({"KeyMetadata":{"Arn":"a","KeyId":"k","Enabled":false,"CustomerMasterKeySpec":"RSA_2048"}})");
  m = parse_describe_key(old);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->key_spec, "RSA_2048");
  WipedString broken = ws(R"({"KeyMetadata":{"Arn":"a"}})");
  EXPECT_EQ(parse_describe_key(broken).status().code(), Code::kCorrupt);

  ErrorAnswer e = parse_error(R"({"__type":"AccessDeniedException","message":"no"})");
  EXPECT_EQ(e.type, "AccessDeniedException");
  EXPECT_EQ(e.message, "no");
  e = parse_error(R"({"__type":"X","Message":"M"})");
  EXPECT_EQ(e.message, "M");
  e = parse_error("<html>");
  EXPECT_EQ(e.type, "");
}

// What the AWS SDKs accept: null or missing optional members, unknown members. Required
// members missing or null are a clear kCorrupt; nothing throws.
TEST(KmsJson, TolerantAnswers) {
  WipedString body = ws(R"({"KeyMetadata":{"Arn":"arn:aws:kms:r:1:key/k","KeyId":"k","Enabled":null,)"
                        R"("KeyState":"Enabled","KeyUsage":null,"KeySpec":null,"CustomerMasterKeySpec":"SYMMETRIC_DEFAULT",)"
                        R"("Description":null,"MultiRegionConfiguration":{"X":[1,null]},"NewThing":7},"Extra":null})");
  Result<KeyMetadata> m = parse_describe_key(body);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_TRUE(m->enabled);  // from KeyState
  EXPECT_EQ(m->key_usage, "");
  EXPECT_EQ(m->key_spec, "SYMMETRIC_DEFAULT");
  WipedString no_enabled = ws(R"({"KeyMetadata":{"Arn":"a","KeyId":"k","KeyState":"Disabled"}})");
  ASSERT_TRUE(parse_describe_key(no_enabled).ok());
  EXPECT_FALSE(parse_describe_key(no_enabled)->enabled);
  WipedString bad_enabled = ws(R"({"KeyMetadata":{"Arn":"a","KeyId":"k","Enabled":"yes"}})");
  EXPECT_EQ(parse_describe_key(bad_enabled).status().code(), Code::kCorrupt);
  WipedString null_arn = ws(R"({"KeyMetadata":{"Arn":null,"KeyId":"k","Enabled":true}})");
  Status s = parse_describe_key(null_arn).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_NE(s.message().find("no Arn"), std::string::npos) << s.message();

  WipedString dec = ws(R"({"KeyId":"arn:k","Plaintext":")" + kKey32B64 +
                       R"(","EncryptionAlgorithm":null,"KeyMaterialId":null,"CiphertextForRecipient":null,"Z":{}})");
  ASSERT_TRUE(parse_decrypt(dec).ok());
  WipedString gen = ws(R"({"KeyId":"arn:k","Plaintext":")" + kKey32B64 + R"(","CiphertextBlob":null})");
  s = parse_generate_data_key(gen).status();
  EXPECT_EQ(s.code(), Code::kCorrupt);
  EXPECT_NE(s.message().find("no CiphertextBlob"), std::string::npos) << s.message();
  WipedString null_key = ws(R"({"KeyId":null,"CiphertextBlob":"AQID"})");
  EXPECT_EQ(parse_blob_answer(null_key).status().code(), Code::kCorrupt);
  WipedString num_key = ws(R"({"KeyId":5,"CiphertextBlob":"AQID"})");
  EXPECT_EQ(parse_blob_answer(num_key).status().code(), Code::kCorrupt);
  WipedString null_pt = ws(R"({"KeyId":"arn:k","Plaintext":null})");
  EXPECT_EQ(parse_decrypt(null_pt).status().code(), Code::kCorrupt);
  for (const char* junk : {"<html><body>502 Bad Gateway</body></html>", "<?xml version=\"1.0\"?><Error/>",
                           "", "null", "[]", "\xff\xfe{", "{\"KeyId\":\"\xff\"}"}) {
    WipedString j = ws(junk);
    EXPECT_EQ(parse_blob_answer(j).status().code(), Code::kCorrupt) << junk;
    EXPECT_EQ(parse_describe_key(j).status().code(), Code::kCorrupt) << junk;
    WipedString j2 = ws(junk);
    EXPECT_FALSE(parse_decrypt(j2).ok()) << junk;
    EXPECT_EQ(parse_error(junk).type, "") << junk;
  }
  // An error message is one bounded line.
  ErrorAnswer e = parse_error(R"({"__type":"X","message":"line1\nline2)" + std::string(500, 'm') + R"("})");
  EXPECT_EQ(e.message.find('\n'), std::string::npos);
  EXPECT_LE(e.message.size(), 203u);
  e = parse_error(R"({"__type":null,"message":5})");
  EXPECT_EQ(e.type, "");
  EXPECT_EQ(e.message, "");
}

// A key id or context that JSON cannot carry is a Status from the builder, never a throw
// (nlohmann's dump() throws type_error 316 on invalid UTF-8).
TEST(KmsJson, BuildersRefuseNonUtf8WithoutThrowing) {
  EncryptionContext ctx;
  ASSERT_TRUE(ctx.set("kmsfs:fs-id", "00ff").ok());
  const std::string bad_ids[] = {std::string("arn:aws:kms:us-east-1:111122223333:key/\xff"),
                                 std::string("\xc0\xaf"), std::string("a\xed\xa0\x80"),
                                 std::string("k\nInjected log line"), std::string("k\0k", 3)};
  for (const std::string& id : bad_ids) {
    EXPECT_NO_THROW({
      EXPECT_EQ(decrypt_body(id, Bytes{1}, ctx).status().code(), Code::kInvalidArgument);
      EXPECT_EQ(generate_data_key_body(id, ctx).status().code(), Code::kInvalidArgument);
      EXPECT_EQ(describe_key_body(id).status().code(), Code::kInvalidArgument);
      EXPECT_EQ(encrypt_body(id, Bytes{1}, ctx).status().code(), Code::kInvalidArgument);
      EXPECT_EQ(reencrypt_body("arn:a", Bytes{1}, ctx, id, ctx).status().code(), Code::kInvalidArgument);
      EXPECT_EQ(reencrypt_body(id, Bytes{1}, ctx, "arn:b", ctx).status().code(), Code::kInvalidArgument);
    });
  }
  // EncryptionContext::set refuses non-UTF-8 too, so a context cannot even hold it.
  EncryptionContext c2;
  EXPECT_EQ(c2.set("k", "\xff").code(), Code::kInvalidArgument);
  EXPECT_EQ(c2.set("\xfe", "v").code(), Code::kInvalidArgument);
  // Non-ASCII but valid UTF-8 is fine.
  EXPECT_TRUE(c2.set("team", "\xc3\xa9quipe").ok());
  Result<std::string> b = decrypt_body("k", Bytes{1}, c2);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(nlohmann::json::parse(*b)["EncryptionContext"]["team"], "\xc3\xa9quipe");
}

TEST(KmsJson, Base64) {
  EXPECT_EQ(base64_encode(Bytes{}), "");
  EXPECT_EQ(base64_encode(Bytes{0xff, 0xee}), "/+4=");
  EXPECT_EQ(*base64_decode("/+4="), (Bytes{0xff, 0xee}));
  EXPECT_FALSE(base64_decode("/+4").ok());
  EXPECT_FALSE(base64_decode("a b=").ok());
}

// What the AWS SDKs send and accept for Plaintext and CiphertextBlob: the standard
// alphabet, padded, canonical. Anything else is refused, so that one answer has one
// meaning (libsodium 1.0.18, used before, read bytes from 0x80 up as '/': fuzz_kms_json
// found a Plaintext with a 0xCE byte accepted, decoded, and overwritten in the body).
TEST(KmsJson, Base64IsCanonicalAsTheSdksSendIt) {
  for (std::string_view good : {"", "AA==", "AAA=", "AAAA", "/+4=", "QUJD", "QUI="}) {
    Result<Bytes> d = base64_decode(good);
    ASSERT_TRUE(d.ok()) << good;
    EXPECT_EQ(base64_encode(*d), good);
  }
  for (std::string_view bad : {"AB==",       // bits under the padding: "AA==" is the same byte
                               "AAB=",       // likewise for two bytes
                               "AA", "AAA",  // padding missing
                               "AA=", "AA===", "AAAA=", "AAAA====", "=", "====", "A===",  // padding wrong or extra
                               "AA==AA==",   // padding inside
                               "AA AA=", " AAAA", "AAAA\n", "AA\tA",  // whitespace
                               "-_8=",       // the URL-safe alphabet
                               "AA\xce" "A", "\xff\xff\xff\xff", "AAA\x80"}) {  // bytes from 0x80 up
    Result<Bytes> d = base64_decode(bad);
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_TRUE(d.status().message().starts_with("not base64: ")) << d.status().message();
  }
  EXPECT_NE(base64_decode("AB==").status().message().find("padding"), std::string::npos);
  EXPECT_NE(base64_decode("AAA").status().message().find("multiple of 4"), std::string::npos);
}

TEST(KmsJson, NonCanonicalBase64InAnAnswerIsAMalformedAnswer) {
  // The body fuzz_kms_json found: one byte of the Plaintext is 0xCE.
  const std::string pt = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
  std::string odd = pt;
  odd[29] = '\xce';
  for (const std::string& value : std::vector<std::string>{odd, "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJ=", pt.substr(0, 43),
                                   pt.substr(0, 20) + " " + pt.substr(20, 23)}) {
    WipedString body = ws(R"({"KeyId":"arn:aws:kms:eu-west-1:111122223333:key/k","Plaintext":")" + value + R"("})");
    Result<PlaintextAnswer> a = parse_decrypt(body);
    ASSERT_EQ(a.status().code(), Code::kCorrupt) << value;
    EXPECT_TRUE(a.status().message().starts_with("malformed KMS answer: Plaintext is not base64: "))
        << a.status().message();
    EXPECT_EQ(a.status().message().find("internal error"), std::string::npos);
    EXPECT_EQ(a.status().message().find(value), std::string::npos);  // a plaintext is never echoed
  }
  WipedString blob = ws(R"({"KeyId":"arn:k","CiphertextBlob":"AQJ="})");
  Result<BlobAnswer> b = parse_blob_answer(blob);
  ASSERT_EQ(b.status().code(), Code::kCorrupt);
  EXPECT_EQ(b.status().message(),
            "malformed KMS answer: CiphertextBlob is not base64: bits set under the padding (not the canonical "
            "encoding)");
}

}  // namespace
}  // namespace kmsfs::aws
