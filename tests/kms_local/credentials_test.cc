#include "credentials.h"

#include <gtest/gtest.h>

namespace kmsfs::kms_local {
namespace {

TEST(CredentialsFile, SharedCredentialsFormat) {
  auto keys = parse_credentials(
      "# test identities\n[default]\naws_access_key_id = AKID1\naws_secret_access_key=s3cr/et+1\n"
      "region = ignored\n\n[ other ]\r\n; comment\naws_secret_access_key = two\r\n"
      "aws_access_key_id=AKID2\n");
  ASSERT_TRUE(keys.ok()) << keys.status().to_string();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].name, "default");
  EXPECT_EQ((*keys)[0].access_key_id, "AKID1");
  EXPECT_EQ(as_chars((*keys)[0].secret.span()), "s3cr/et+1");
  EXPECT_EQ((*keys)[1].name, "other");
  EXPECT_EQ(as_chars((*keys)[1].secret.span()), "two");
}

TEST(CredentialsFile, Refusals) {
  for (const char* bad : {"", "aws_access_key_id = A\n", "[x]\naws_access_key_id = A\n",
                          "[x\naws_access_key_id = A\naws_secret_access_key = s\n",
                          "[x]\nnot a pair\n",
                          "[a]\naws_access_key_id=A\naws_secret_access_key=s\n"
                          "[b]\naws_access_key_id=A\naws_secret_access_key=t\n"}) {
    auto keys = parse_credentials(bad);
    EXPECT_FALSE(keys.ok()) << bad;
    if (!keys.ok()) {
      EXPECT_EQ(keys.status().code(), Code::kInvalidArgument);
    }
  }
}

TEST(CredentialStore, SessionsAreFoundUntilForgotten) {
  std::vector<LongTermKey> keys;
  keys.push_back({"alice", "AKIDALICE", SecureBuffer::copy_of(as_bytes("secret"))});
  CredentialStore store(std::move(keys), "111122223333");
  KeyLookup alice = store.lookup("AKIDALICE");
  EXPECT_EQ(alice.kind, KeyLookup::kLongTerm);
  EXPECT_EQ(alice.principal.arn, "arn:aws:iam::111122223333:user/alice");
  EXPECT_EQ(alice.principal.user_id.substr(0, 4), "AIDA");
  EXPECT_EQ(store.lookup("AKIDBOB").kind, KeyLookup::kUnknown);

  IssuedSession s = store.issue_session({"arn:role", "AROAX:s"}, 60, 1000);
  EXPECT_EQ(s.access_key_id.substr(0, 4), "ASIA");
  EXPECT_EQ(s.access_key_id.size(), 20u);
  EXPECT_EQ(s.secret.size(), 40u);
  EXPECT_EQ(s.expiration, 1060);
  KeyLookup found = store.lookup(s.access_key_id);
  EXPECT_EQ(found.kind, KeyLookup::kSession);
  EXPECT_EQ(as_chars(found.secret.span()), s.secret);
  EXPECT_EQ(found.session_token, s.session_token);
  EXPECT_EQ(found.principal.arn, "arn:role");
  // Expired a day ago: forgotten when the next session is issued.
  store.issue_session({"arn:role", "AROAX:t"}, 60, 1060 + 86401);
  EXPECT_EQ(store.lookup(s.access_key_id).kind, KeyLookup::kUnknown);
}

}  // namespace
}  // namespace kmsfs::kms_local
