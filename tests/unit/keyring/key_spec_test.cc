#include "keys/keyring/key_spec.h"

#include <gtest/gtest.h>

#include "keys/keyring/timestamp.h"

namespace kmsfs {
namespace {

TEST(KeySpec, NameOnly) {
  auto s = parse_key_spec("main");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->name, "main");
  EXPECT_FALSE(s->version.has_value());
}

TEST(KeySpec, NameAndVersion) {
  auto s = parse_key_spec("backup-2024.q1_x:17");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->name, "backup-2024.q1_x");
  EXPECT_EQ(s->version, 17u);
  auto max = parse_key_spec("k:4294967295");
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(max->version, 4294967295u);
}

TEST(KeySpec, Rejects) {
  for (const char* bad : {"", ":1", "main:", "main:0", "main:-1", "main:+1", "main:1x",
                          "main:4294967296", "main:1:2", "ma in", "main/x", "mäin",
                          "main:99999999999999999999"}) {
    auto s = parse_key_spec(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(parse_key_spec(std::string(64, 'a')).ok());
  EXPECT_FALSE(parse_key_spec(std::string(65, 'a')).ok());
}

TEST(Timestamp, NowIsValid) { EXPECT_TRUE(valid_rfc3339_utc(rfc3339_utc_now())); }

TEST(Timestamp, Validation) {
  EXPECT_TRUE(valid_rfc3339_utc("2024-02-29T23:59:60Z"));
  for (const char* bad : {"", "2024-02-29T23:59:60", "2024-13-01T00:00:00Z",
                          "2024-00-01T00:00:00Z", "2024-01-01T24:00:00Z",
                          "2024-01-01T00:00:00+01:00", "2024-01-01 00:00:00Z",
                          "2024-01-01T00:00:00.5Z"}) {
    EXPECT_FALSE(valid_rfc3339_utc(bad)) << bad;
  }
}

}  // namespace
}  // namespace kmsfs
