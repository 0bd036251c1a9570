#include "format/header.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace kmsfs
