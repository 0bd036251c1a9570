#include "format/header.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "format_fixture.h"

namespace kmsfs {
namespace {

using testing::TestFile;

TEST(Header, RoundTrip) {
  TestFile t;
  Bytes raw = t.backing->peek(0, header::kSize);
  auto h = parse_header(raw);
  ASSERT_TRUE(h.ok()) << h.status().message();
  EXPECT_EQ(h->version, 1);
  EXPECT_EQ(h->cipher, CipherId::kAes256Gcm);
  EXPECT_EQ(h->block_size, 4096u);
  EXPECT_EQ(h->file_id, t.header.file_id);
  EXPECT_EQ(h->context, t.header.context);
  ASSERT_TRUE(h->slots[0] && h->slots[1]);
  EXPECT_EQ(h->slots[0]->key, (KeyRef{ProviderId::kKeyring, "main", 1}));
  EXPECT_EQ(h->slots[1]->wrapped_dek, Bytes(73, 0xab));
  EXPECT_EQ(h->active_slot(), 1);  // seq 2
  EXPECT_TRUE(verify_header_mac(*h, t.keys->header_mac_key.span()).ok());
}

TEST(Header, KmsSizedFieldsFit) {
  HeaderSlot s;
  s.key = KeyRef{ProviderId::kAwsKms, std::string(kMaxKeyIdSize, 'a'), 0};
  s.wrapped_dek = Bytes(400, 1);
  SparseMap m;
  for (uint64_t i = 0; i < SparseMap::kMaxRanges; ++i) m.add({i * 10, i * 10 + 5});
  s.state = seal_file_state(7, m, FileId{}, Bytes(32, 0));
  auto enc = encode_slot(s);
  ASSERT_TRUE(enc.ok()) << enc.status().message();
  s.wrapped_dek = Bytes(2000, 1);
  EXPECT_EQ(encode_slot(s).status().code(), Code::kInvalidArgument);

  FileHeader h;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(h.context.set("key-" + std::to_string(i), std::string(250, 'v')).ok());
  EXPECT_TRUE(encode_immutable(h, Bytes(32, 0)).ok());
}

// An intermediate-key slot round-trips, fits beside worst-case fields, and is refused by
// shape when malformed (an old reader refuses it as an unknown critical record).
TEST(Header, IntermediateKeyRecord) {
  HeaderSlot s;
  s.seq = 3;
  s.key = KeyRef{ProviderId::kAwsKms, std::string(kMaxKeyIdSize, 'a'), 0};
  s.wrapped_dek = Bytes(72, 2);
  IntermediateKeyRecord ik;
  for (size_t i = 0; i < ik.id.size(); ++i) ik.id[i] = uint8_t(i + 1);
  ik.wrapped = Bytes(300, 7);
  s.intermediate = ik;
  SparseMap m;
  for (uint64_t i = 0; i < SparseMap::kMaxRanges; ++i) m.add({i * 10, i * 10 + 5});
  s.state = seal_file_state(7, m, FileId{}, Bytes(32, 0));
  auto enc = encode_slot(s);
  ASSERT_TRUE(enc.ok()) << enc.status().message();

  TestFile t;
  Bytes raw = t.backing->peek(0, header::kSize);
  std::copy(enc->begin(), enc->end(), raw.begin() + header::kSlotOffset[0]);
  auto h = parse_header(raw);
  ASSERT_TRUE(h.ok()) << h.status().message();
  ASSERT_TRUE(h->slots[0]);
  ASSERT_TRUE(h->slots[0]->intermediate);
  EXPECT_EQ(*h->slots[0]->intermediate, ik);
  EXPECT_EQ(h->slots[0]->wrapped_dek, Bytes(72, 2));
  EXPECT_FALSE(h->slots[1]->intermediate);

  s.intermediate->wrapped.clear();
  EXPECT_EQ(encode_slot(s).status().code(), Code::kInvalidArgument);
}

// Every bit of the header is covered: the immutable area by the MAC (which needs the DEK),
// each slot by its checksum (the other slot then carries the file).
TEST(Header, EverySingleBitFlipIsDetected) {
  TestFile t;
  ASSERT_TRUE(t.file->write(testing::pattern(10000, 1), 0).ok());
  const Bytes clean = t.backing->peek(0, header::kSize);
  for (size_t byte = 0; byte < header::kSize; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes raw = clean;
      raw[byte] ^= uint8_t(1u << bit);
      auto h = parse_header(raw);
      if (!h.ok()) {
        ASSERT_NE(h.status().code(), Code::kOk);
        continue;
      }
      if (byte < header::kImmutableSize) {
        ASSERT_FALSE(verify_header_mac(*h, t.keys->header_mac_key.span()).ok())
            << "undetected flip at byte " << byte << " bit " << bit;
      } else {
        int slot = byte < header::kSlotOffset[1] ? 0 : 1;
        ASSERT_FALSE(h->slots[slot].has_value()) << "undetected flip in slot " << slot << " at " << byte;
        ASSERT_FALSE(h->slot_problem[slot].empty());
        ASSERT_TRUE(h->slots[1 - slot].has_value());
      }
    }
  }
}

TEST(Header, NewerVersionAndUnknownCriticalFeaturesAreRefused) {
  TestFile t;
  Bytes raw = t.backing->peek(0, header::kSize);
  Bytes v2 = raw;
  put_le16(&v2[8], 2);
  auto h = parse_header(v2);
  EXPECT_EQ(h.status().code(), Code::kUnsupported);
  EXPECT_NE(h.status().message().find("newer"), std::string::npos);
  Bytes feat = raw;
  put_le32(&feat[20], 0x4);
  EXPECT_EQ(parse_header(feat).status().code(), Code::kUnsupported);
  // Unknown optional feature bits are fine to parse (the MAC still covers them).
  Bytes opt = raw;
  put_le32(&opt[24], 0x4);
  EXPECT_TRUE(parse_header(opt).ok());
}

TEST(Header, UnknownRecordsCriticalRefusedOthersKept) {
  FileHeader h;
  ASSERT_TRUE(h.context.set("a", "b").ok());
  h.extra_immutable.push_back({0x0042, {1, 2, 3}});
  HeaderSlot s;
  s.seq = 1;
  s.key = KeyRef{ProviderId::kKeyring, "k", 1};
  s.wrapped_dek = {9};
  s.extra.push_back({0x0077, {4}});
  Bytes raw(header::kSize, 0);
  auto imm = *encode_immutable(h, Bytes(32, 0));
  auto slot = *encode_slot(s);
  std::copy(imm.begin(), imm.end(), raw.begin());
  std::copy(slot.begin(), slot.end(), raw.begin() + header::kSlotOffset[0]);
  auto parsed = parse_header(raw);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->extra_immutable, h.extra_immutable);
  EXPECT_EQ(parsed->slots[0]->extra, s.extra);
  EXPECT_FALSE(parsed->slots[1].has_value());
  EXPECT_EQ(parsed->slot_problem[1], "empty");

  s.extra = {{0x8077, {4}}};
  slot = *encode_slot(s);
  std::copy(slot.begin(), slot.end(), raw.begin() + header::kSlotOffset[0]);
  EXPECT_EQ(parse_header(raw).status().code(), Code::kUnsupported);
}

TEST(Header, HeaderFromAnotherFileDoesNotAuthenticate) {
  TestFile a, b;
  Bytes raw_b = b.backing->peek(0, header::kSize);
  auto hb = *parse_header(raw_b);
  // b's header verified with a's keys (as if b's header were pasted onto a's content).
  EXPECT_EQ(verify_header_mac(hb, a.keys->header_mac_key.span()).code(), Code::kCorrupt);
}

TEST(Header, TruncatedOrForeignInput) {
  TestFile t;
  Bytes raw = t.backing->peek(0, header::kSize);
  EXPECT_EQ(parse_header(ByteSpan(raw).first(100)).status().code(), Code::kCorrupt);
  EXPECT_EQ(parse_header(as_bytes("#!/bin/sh\necho hello\n")).status().code(), Code::kCorrupt);
  EXPECT_EQ(parse_header(Bytes(4096, 0)).status().code(), Code::kCorrupt);
  Bytes no_slots = raw;
  std::fill(no_slots.begin() + 1024, no_slots.end(), 0);
  auto h = parse_header(no_slots);
  EXPECT_EQ(h.status().code(), Code::kCorrupt);
  EXPECT_NE(h.status().message().find("no valid key slot"), std::string::npos);
}

// Key references and encryption contexts come from the backing directory, which an
// attacker may write. A key id that is not UTF-8 (JSON, so KMS requests, cannot carry it)
// or holds control characters (it is logged), and a context that is not UTF-8, are
// refused when the header is read: kCorrupt, so the file is EIO, never a crash later.
TEST(Header, KeyRefMustBeUtf8WithoutControlCharacters) {
  TestFile t;
  Bytes good = t.backing->peek(0, header::kSize);
  struct Case {
    std::string key_id;
    const char* says;
  };
  for (const Case& c : {Case{"arn:aws:kms:us-east-1:111122223333:key/\xff", "not UTF-8"},
                        Case{"\xc0\xaf", "not UTF-8"},             // overlong '/'
                        Case{"a\xed\xa0\x80", "not UTF-8"},       // surrogate
                        Case{"a\xf4\x90\x80\x80", "not UTF-8"},  // past U+10FFFF
                        Case{"a\xe2\x82", "not UTF-8"},            // truncated
                        Case{"main\nforged log line", "control characters"},
                        Case{std::string("ma\0in", 5), "control characters"},
                        Case{"k\x1b[31m", "control characters"},
                        Case{"k\xc2\x85", "control characters"}}) {  // U+0085 (NEL)
    HeaderSlot s;
    s.seq = 9;
    s.key = KeyRef{ProviderId::kAwsKms, c.key_id, 0};
    s.wrapped_dek = {1, 2, 3};
    Result<Bytes> slot = encode_slot(s);
    ASSERT_TRUE(slot.ok()) << slot.status().message();
    // One bad slot: the other is used and the problem noted.
    Bytes raw = good;
    std::copy(slot->begin(), slot->end(), raw.begin() + header::kSlotOffset[1]);
    auto h = parse_header(raw);
    ASSERT_TRUE(h.ok()) << h.status().message();
    EXPECT_FALSE(h->slots[1].has_value());
    EXPECT_NE(h->slot_problem[1].find(c.says), std::string::npos) << h->slot_problem[1];
    // Both bad: the file is corrupt, with the reason.
    std::copy(slot->begin(), slot->end(), raw.begin() + header::kSlotOffset[0]);
    h = parse_header(raw);
    EXPECT_EQ(h.status().code(), Code::kCorrupt);
    EXPECT_NE(h.status().message().find("header: key reference"), std::string::npos) << h.status().message();
    EXPECT_NE(h.status().message().find(c.says), std::string::npos) << h.status().message();
  }
  // Non-ASCII UTF-8 is allowed (the AWS provider then refuses it as a key name).
  HeaderSlot s;
  s.seq = 9;
  s.key = KeyRef{ProviderId::kKeyring, "cl\xc3\xa9", 1};
  s.wrapped_dek = {1};
  Bytes raw = good;
  Bytes slot = *encode_slot(s);
  std::copy(slot.begin(), slot.end(), raw.begin() + header::kSlotOffset[1]);
  auto h = parse_header(raw);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(h->slots[1].has_value()) << h->slot_problem[1];
  EXPECT_EQ(h->slots[1]->key.key_id, "cl\xc3\xa9");
}

TEST(Header, EncryptionContextMustBeUtf8) {
  // Encode a valid context, then turn its value into bytes that are not UTF-8.
  FileHeader fh;
  ASSERT_TRUE(fh.context.set("team", "QQQQ").ok());
  HeaderSlot s;
  s.seq = 1;
  s.key = KeyRef{ProviderId::kKeyring, "k", 1};
  s.wrapped_dek = {9};
  Bytes raw(header::kSize, 0);
  Bytes imm = *encode_immutable(fh, Bytes(32, 0));
  Bytes slot = *encode_slot(s);
  std::copy(imm.begin(), imm.end(), raw.begin());
  std::copy(slot.begin(), slot.end(), raw.begin() + header::kSlotOffset[0]);
  ASSERT_TRUE(parse_header(raw).ok());
  auto at = std::search(raw.begin(), raw.end(), std::begin("QQQQ"), std::end("QQQQ") - 1);
  ASSERT_NE(at, raw.end());
  for (std::string_view bad : {"\xff\xfe\xfd\xfc", "\xc3(QQ", "Q\xed\xb0\x80"}) {
    std::copy(bad.begin(), bad.end(), at);
    auto h = parse_header(raw);
    EXPECT_EQ(h.status().code(), Code::kCorrupt);
    EXPECT_NE(h.status().message().find("header: encryption context: a key or value is not UTF-8"),
              std::string::npos)
        << h.status().message();
  }
  // The same through the decoder and the setter.
  EncryptionContext ok;
  ASSERT_TRUE(ok.set("k", "v\xc3\xa9").ok());
  Bytes canon = ok.canonical();
  canon.back() = 0xff;  // now "v\xc3\xff"
  EXPECT_EQ(EncryptionContext::decode(canon).status().code(), Code::kCorrupt);
  EncryptionContext c;
  EXPECT_EQ(c.set("k", "\xff").code(), Code::kInvalidArgument);
  EXPECT_EQ(c.set("\x80", "v").code(), Code::kInvalidArgument);
}

TEST(KeyRefText, Utf8AndControlCharacters) {
  for (std::string_view ok : {"", "ascii", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x91", "\xef\xbf\xbf",
                              "\xf4\x8f\xbf\xbf"}) {
    EXPECT_TRUE(is_utf8(ok)) << ok;
  }
  for (std::string_view bad : {"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
                               "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80",
                               "\xf5\x80\x80\x80", "\xff", "\xc3", "\xe2\x82", "\xf0\x9f\x94", "a\xc3 "}) {
    EXPECT_FALSE(is_utf8(bad)) << ::testing::PrintToString(std::string(bad));
  }
  EXPECT_FALSE(has_control_chars("arn:aws:kms:us-east-1:111122223333:key/k \xc3\xa9"));
  for (std::string_view bad : {"\n", "\t", "\x7f", "\x1b", "\xc2\x80", "\xc2\x9f"}) {
    EXPECT_TRUE(has_control_chars(bad)) << ::testing::PrintToString(std::string(bad));
  }
  EXPECT_TRUE(has_control_chars(std::string_view("a\0b", 3)));
}

}  // namespace
}  // namespace kmsfs
