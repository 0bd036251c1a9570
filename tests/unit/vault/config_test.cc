#include "vault/config.h"

#include <gtest/gtest.h>

namespace kmsfs {
namespace {

FsConfig sample() {
  FsConfig c;
  c.fs_id[0] = 0xaa;
  c.created = "2026-11-23T00:00:00Z";
  c.key_spec = "main";
  c.keyring_hint = "/etc/kmsfs/keyring";
  (void)c.user_context.set("env", "prod");
  c.fs_key_ref = KeyRef{ProviderId::kKeyring, "main", 1};
  c.fs_key_wrapped = Bytes(73, 5);
  return c;
}

TEST(Config, RoundTripAndMac) {
  Bytes key(32, 1), other(32, 2);
  auto text = serialize_config(sample(), key);
  ASSERT_TRUE(text.ok());
  auto c = parse_config(*text, "kmsfs.conf");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->fs_id, sample().fs_id);
  EXPECT_EQ(c->user_context, sample().user_context);
  EXPECT_EQ(c->fs_key_ref, sample().fs_key_ref);
  EXPECT_EQ(c->fs_key_wrapped, sample().fs_key_wrapped);
  EXPECT_TRUE(verify_config(*text, *c, key, "kmsfs.conf").ok());
  EXPECT_EQ(verify_config(*text, *c, other, "kmsfs.conf").code(), Code::kCorrupt);
}

TEST(Config, MalformedInputsGiveOneLineErrors) {
  for (std::string s : {"", "[]", "{}", "{\"kmsfs_config\": 1}", "{\"kmsfs_config\": \"one\"}"}) {
    auto c = parse_config(as_bytes(s), "/v/kmsfs.conf");
    ASSERT_FALSE(c.ok()) << s;
    EXPECT_EQ(c.status().message().find('\n'), std::string::npos);
    EXPECT_NE(c.status().message().find("/v/kmsfs.conf"), std::string::npos);
  }
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

// get<uint32_t>() read 4096.5 as 4096, -1 as 4294967295 and 2^32+1 as 1 (a kmsfs_config
// of 4294967297 was a version 1 config): integer fields are JSON integers in range, and
// anything else a one-line error naming the field.
TEST(Config, IntegerFieldsAreIntegersInRange) {
  FsConfig c = sample();
  c.generation = 2;
  c.key_mode = KeyMode::kIntermediate;
  c.features = {kFeatureIntermediateKeys};
  auto bytes = serialize_config(c, Bytes(32, 1));
  ASSERT_TRUE(bytes.ok());
  const std::string good(bytes->begin(), bytes->end());
  ASSERT_TRUE(parse_config(as_bytes(good), "/v/kmsfs.conf").ok());
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"kmsfs_config\": 1", "\"kmsfs_config\": 4294967297"},
           {"\"kmsfs_config\": 1", "\"kmsfs_config\": 1.0"},
           {"\"block_size\": 4096", "\"block_size\": 4096.5"},
           {"\"block_size\": 4096", "\"block_size\": 4294971392"},  // 2^32 + 4096
           {"\"block_size\": 4096", "\"block_size\": -1"},
           {"\"block_size\": 4096", "\"block_size\": 4.096e3"},
           {"\"header_size\": 4096", "\"header_size\": 4096.0"},
           {"\"longname_max\": 255", "\"longname_max\": 255.5"},
           {"\"intermediate_max_age_s\": 300", "\"intermediate_max_age_s\": 4294967596"},
           {"\"intermediate_max_files\": 10000", "\"intermediate_max_files\": 1e4"},
           {"\"version\": 1", "\"version\": 4294967297"},
           {"\"generation\": 2", "\"generation\": 2.5"},
           {"\"generation\": 2", "\"generation\": -2"}}) {
    auto p = parse_config(as_bytes(with(good, from, to)), "/v/kmsfs.conf");
    ASSERT_FALSE(p.ok()) << to;
    EXPECT_EQ(p.status().code(), Code::kCorrupt) << to;
    EXPECT_EQ(p.status().message().find('\n'), std::string::npos) << p.status().message();
    EXPECT_NE(p.status().message().find("must be an integer from 0 to"), std::string::npos) << p.status().message();
  }
  EXPECT_EQ(parse_config(as_bytes(with(good, "\"block_size\": 4096", "\"block_size\": 4096.5")), "/v/kmsfs.conf")
                .status()
                .message(),
            "vault config /v/kmsfs.conf: block_size must be an integer from 0 to 4294967295, not 4096.5");
}

// nlohmann's dump() threw type_error 316 on a string that is not UTF-8 (an --keyring path
// in Latin-1): refused by name, never thrown.
TEST(Config, NonUtf8StringsAreRefusedNotThrown) {
  FsConfig c = sample();
  c.keyring_hint = "/etc/kmsfs/caf\xe9";
  Result<Bytes> text = Bytes{};  // overwritten below
  EXPECT_NO_THROW(text = serialize_config(c, Bytes(32, 1)));
  EXPECT_EQ(text.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "vault config: key.keyring is not UTF-8 text");
  c = sample();
  c.fs_key_ref.key_id = "\xff";
  EXPECT_NO_THROW(text = serialize_config(c, Bytes(32, 1)));
  EXPECT_EQ(text.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kmsfs
