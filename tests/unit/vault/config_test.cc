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

}  // namespace
}  // namespace kmsfs
