#include "format/names.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <set>
#include <string>

#include "base/encoding.h"

namespace kmsfs {
namespace {

std::unique_ptr<NameCipher> cipher(NameEncoding e = NameEncoding::kBase64Url, size_t longmax = 255,
                                   uint8_t key_byte = 1) {
  const Bytes fs_key(32, key_byte);
  FsId id{};
  id[0] = 9;
  auto c = NameCipher::create(fs_key, id, CipherId::kAes256Gcm, e, longmax);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return std::move(c).value();
}

TEST(Names, DeterministicRoundTripAndHidesTheName) {
  auto c = cipher();
  auto a = c->encrypt_name("2026-payroll.xlsx");
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->is_long());
  EXPECT_EQ(a->name, c->encrypt_name("2026-payroll.xlsx")->name);  // lookups need no scan
  EXPECT_EQ(a->name.find("payroll"), std::string::npos);
  EXPECT_EQ(a->name.find_first_of("/.=+"), std::string::npos);
  auto back = c->decrypt_name(a->name);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, "2026-payroll.xlsx");
  // Another filesystem key gives another name.
  EXPECT_NE(cipher(NameEncoding::kBase64Url, 255, 2)->encrypt_name("2026-payroll.xlsx")->name, a->name);
  EXPECT_EQ(cipher(NameEncoding::kBase64Url, 255, 2)->decrypt_name(a->name).status().code(), Code::kCorrupt);
}

TEST(Names, LengthLeaksOnlyIn16ByteSteps) {
  auto c = cipher();
  EXPECT_EQ(c->encrypt_name("a")->name.size(), c->encrypt_name("abcdefghijklmno")->name.size());
  EXPECT_LT(c->encrypt_name("abcdefghijklmno")->name.size(), c->encrypt_name("abcdefghijklmnop")->name.size());
}

TEST(Names, Base32IsLowercaseOnly) {
  auto c = cipher(NameEncoding::kBase32);
  auto a = c->encrypt_name("Report.PDF");
  ASSERT_TRUE(a.ok());
  for (char ch : a->name) EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '2' && ch <= '7')) << a->name;
  EXPECT_EQ(*c->decrypt_name(a->name), "Report.PDF");
}

TEST(Names, RefusesInvalidNames) {
  auto c = cipher();
  EXPECT_EQ(c->encrypt_name(std::string(256, 'x')).status().sys_errno(), ENAMETOOLONG);
  for (std::string bad : {std::string(), std::string("."), std::string(".."), std::string("a/b"), std::string("a\0b", 3)})
    EXPECT_EQ(c->encrypt_name(bad).status().sys_errno(), EINVAL) << bad;
}

TEST(Names, LongNamesAreHashedWithTheFullNameBeside) {
  auto c = cipher();
  const std::string longest(255, 'n');
  auto a = c->encrypt_name(longest);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->is_long());
  EXPECT_LE(a->name.size(), 255u);
  EXPECT_LE(a->side_file().size(), 255u);
  EXPECT_TRUE(NameCipher::is_long_name(a->name));
  EXPECT_FALSE(NameCipher::is_long_name(a->side_file()));
  EXPECT_TRUE(c->long_name_matches(a->name, a->full));
  EXPECT_FALSE(c->long_name_matches(a->name, c->encrypt_name(std::string(254, 'n'))->full));
  EXPECT_EQ(*c->decrypt_name(a->full), longest);
}

TEST(Names, LongnameMaxIsHonoured) {
  auto c = cipher(NameEncoding::kBase64Url, 80);
  auto short_enough = c->encrypt_name("short");
  auto too_long = c->encrypt_name(std::string(60, 'x'));  // 64 padded + 16 = 80 bytes = 107 chars
  ASSERT_TRUE(short_enough.ok() && too_long.ok());
  EXPECT_FALSE(short_enough->is_long());
  EXPECT_TRUE(too_long->is_long());
  EXPECT_LE(too_long->side_file().size(), 80u);
  EXPECT_FALSE(NameCipher::create(Bytes(32), FsId{}, CipherId::kAes256Gcm, NameEncoding::kBase64Url, 40).ok());
}

TEST(Names, ForeignNamesDoNotDecrypt) {
  auto c = cipher();
  const std::string good = c->encrypt_name("notes.txt")->name;
  for (const std::string& bad : {std::string("notes.txt"), std::string("kmsfs.conf"),
                                 good + " (conflicted copy)", good.substr(0, good.size() - 1),
                                 std::string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")}) {
    auto r = c->decrypt_name(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  std::string flipped = good;
  flipped[3] = flipped[3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(c->decrypt_name(flipped).status().code(), Code::kCorrupt);
  // A file name never opens as an xattr name: the labels separate the two.
  EXPECT_FALSE(c->decrypt_xattr_name(good).ok());
}

TEST(Names, SymlinkTargetsAreRandomizedAndAuthenticated) {
  auto c = cipher();
  auto a = c->seal_link("../secret/target");
  auto b = c->seal_link("../secret/target");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);  // fresh nonce
  EXPECT_EQ(*c->open_link(*a), "../secret/target");
  EXPECT_EQ(NameCipher::link_plain_size(a->size()), 16u);
  std::string bad = *a;
  bad[10] = bad[10] == 'A' ? 'B' : 'A';
  EXPECT_EQ(c->open_link(bad).status().code(), Code::kCorrupt);
}

TEST(Names, XattrValuesAreBoundToTheirName) {
  auto c = cipher();
  auto n1 = c->encrypt_xattr_name("comment");
  auto n2 = c->encrypt_xattr_name("checksum");
  ASSERT_TRUE(n1.ok() && n2.ok());
  EXPECT_EQ(*c->decrypt_xattr_name(*n1), "comment");
  auto v = c->seal_xattr_value(*n1, as_bytes("hello"));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(as_chars(*c->open_xattr_value(*n1, *v)), "hello");
  EXPECT_EQ(c->open_xattr_value(*n2, *v).status().code(), Code::kCorrupt);
}

RC_GTEST_PROP(Names, EveryValidNameRoundTrips, ()) {
  static auto c = cipher(NameEncoding::kBase32, 100);
  const auto len = *rc::gen::inRange<size_t>(1, 256);
  std::string name = *rc::gen::container<std::string>(len, rc::gen::inRange<char>(1, 127));
  RC_PRE(name.find('/') == std::string::npos && name != "." && name != "..");
  auto e = c->encrypt_name(name);
  RC_ASSERT(e.ok());
  RC_ASSERT(e->name.size() <= 100u);
  const std::string& full = e->is_long() ? e->full : e->name;
  RC_ASSERT(*c->decrypt_name(full) == name);
}

}  // namespace
}  // namespace kmsfs
