// The trust record's text form: what a host keeps outside the backing directory, written
// from operator strings (--keyring, --key, the vault's path) and read back by every mount.
#include "vault/trust_store.h"

#include <gtest/gtest.h>

namespace kmsfs {
namespace {

TrustRecord sample() {
  TrustRecord r;
  r.fs_id[0] = 0x42;
  r.generation = 5;
  r.keys = {{ProviderId::kKeyring, "main"}, {ProviderId::kAwsKms, "arn:aws:kms:eu-west-1:111122223333:key/k1"}};
  r.distrusted = {{ProviderId::kKeyring, "old"}};
  r.keyring = "/etc/kmsfs/keyring";
  r.vault_dir = "/srv/vault";
  r.updated = "2026-01-02T03:04:05Z";
  return r;
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(TrustRecord, RoundTrips) {
  Result<std::string> text = serialize_trust_record(sample());
  ASSERT_TRUE(text.ok()) << text.status().to_string();
  Result<TrustRecord> r = parse_trust_record(*text, "t.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->generation, 5u);
  EXPECT_EQ(r->keys, sample().keys);
  EXPECT_EQ(r->distrusted, sample().distrusted);
  EXPECT_EQ(r->keyring, "/etc/kmsfs/keyring");
}

// nlohmann's dump() threw type_error 316 on these (fuzz_trust found it): an operator string
// that is not UTF-8 is refused with a Status naming it, never thrown.
TEST(TrustRecord, NonUtf8OperatorStringsAreRefusedNotThrown) {
  TrustRecord r = sample();
  r.keyring = "/etc/kmsfs/\xce-keyring";
  Result<std::string> text = std::string();  // overwritten below
  EXPECT_NO_THROW(text = serialize_trust_record(r));
  EXPECT_EQ(text.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "trust record: the keyring path is not UTF-8 text");

  r = sample();
  r.keys.push_back({ProviderId::kKeyring, "k\xff"});
  EXPECT_NO_THROW(text = serialize_trust_record(r));
  EXPECT_EQ(text.status().message(), "trust record: a key id is not UTF-8 text");

  // A vault in a directory whose name is not UTF-8 (Linux allows it) still gets its record:
  // the path is for people, stored with U+FFFD.
  r = sample();
  r.vault_dir = "/srv/caf\xe9";
  EXPECT_NO_THROW(text = serialize_trust_record(r));
  ASSERT_TRUE(text.ok()) << text.status().to_string();
  Result<TrustRecord> back = parse_trust_record(*text, "t.json");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->vault_dir, "/srv/caf\xef\xbf\xbd");
}

// get<uint64_t>() read 5.9 as 5, -1 as 2^64-1 and 2^32+1 as a version 1: integers are
// now JSON integers in range, anything else a one-line error.
TEST(TrustRecord, IntegersAreIntegersInRange) {
  const std::string good = *serialize_trust_record(sample());
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"generation\": 5", "\"generation\": 5.9"},
           {"\"generation\": 5", "\"generation\": 5.0"},
           {"\"generation\": 5", "\"generation\": 5e0"},
           {"\"generation\": 5", "\"generation\": -1"},
           {"\"generation\": 5", "\"generation\": 18446744073709551616"},
           {"\"generation\": 5", "\"generation\": \"5\""},
           {"\"kmsfs_trust\": 1", "\"kmsfs_trust\": 4294967297"},
           {"\"kmsfs_trust\": 1", "\"kmsfs_trust\": 1.5"}}) {
    Result<TrustRecord> r = parse_trust_record(with(good, from, to), "/t.json");
    ASSERT_FALSE(r.ok()) << to;
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << to;
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
    EXPECT_TRUE(r.status().message().starts_with("trust record /t.json: ")) << r.status().message();
  }
  EXPECT_EQ(parse_trust_record(with(good, "\"generation\": 5", "\"generation\": 5.9"), "/t.json").status().message(),
            "trust record /t.json: generation must be an integer from 0 to 18446744073709551615, not 5.9");
  Result<TrustRecord> big = parse_trust_record(with(good, "\"generation\": 5", "\"generation\": 18446744073709551615"), "t");
  ASSERT_TRUE(big.ok()) << big.status().to_string();
  EXPECT_EQ(big->generation, UINT64_MAX);
}

}  // namespace
}  // namespace kmsfs
