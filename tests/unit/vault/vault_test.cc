#include "vault/vault.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "base/file_io.h"
#include "vault_fixture.h"

namespace kmsfs {
namespace {

using testing::KeyringVault;

InitOptions main_key() {
  InitOptions o;
  o.key_spec = "main";
  (void)o.user_context.set("team", "storage");
  return o;
}

TEST(Vault, InitOpenCreateReopen) {
  KeyringVault kv;
  auto v = Vault::init(kv.backing, kv.providers, main_key());
  ASSERT_TRUE(v.ok()) << v.status().message();
  auto f = (*v)->create_file(kv.backing + "/a", 0600);
  ASSERT_TRUE(f.ok()) << f.status().message();
  Bytes data(10000, 7);
  ASSERT_TRUE((*f)->write(data, 0).ok());
  f->reset();

  auto v2 = Vault::open_unanchored(kv.backing, kv.providers);
  ASSERT_TRUE(v2.ok()) << v2.status().message();
  EXPECT_EQ((*v2)->config().fs_id, (*v)->config().fs_id);
  auto g = (*v2)->open_file(kv.backing + "/a", false);
  ASSERT_TRUE(g.ok()) << g.status().message();
  Bytes out(10000);
  ASSERT_EQ(*(*g)->read(out, 0), 10000u);
  EXPECT_EQ(out, data);
  FileHeader h = (*g)->header();
  EXPECT_EQ(h.context.get("team").value(), "storage");
  EXPECT_EQ(h.context.get(EncryptionContext::kFsIdKey).value(), (*v)->config().fs_id_hex());
  EXPECT_EQ(h.context.get(EncryptionContext::kFileIdKey).value(), to_hex(h.file_id));
  EXPECT_EQ(h.slots[h.active_slot()]->key, (KeyRef{ProviderId::kKeyring, "main", 1}));
}

TEST(Vault, InitRefusesAnExistingVaultAndReservedContext) {
  KeyringVault kv;
  ASSERT_TRUE(Vault::init(kv.backing, kv.providers, main_key()).ok());
  auto again = Vault::init(kv.backing, kv.providers, main_key());
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
  InitOptions o = main_key();
  ASSERT_TRUE(o.user_context.set("kmsfs:fs-id", "x").ok());
  testing::TempDir other;
  EXPECT_EQ(Vault::init(other.str(), kv.providers, o).status().code(), Code::kInvalidArgument);
}

TEST(Vault, NotAVault) {
  KeyringVault kv;
  auto v = Vault::open_unanchored(kv.backing, kv.providers);
  EXPECT_EQ(v.status().code(), Code::kNotFound);
  EXPECT_NE(v.status().message().find("is not a kmsfs vault"), std::string::npos);
}

TEST(Vault, TamperedConfigIsDetected) {
  KeyringVault kv;
  ASSERT_TRUE(Vault::init(kv.backing, kv.providers, main_key()).ok());
  const std::string path = kv.backing + "/kmsfs.conf";
  const Bytes clean = *read_file(path, 1 << 20);
  std::string text(clean.begin(), clean.end());
  // Change one semantic value at a time; each must be refused, never silently accepted.
  const std::vector<std::pair<std::string, std::string>> edits = {
      {"\"block_size\": 4096", "\"block_size\": 8192"},
      {"\"cipher\": \"aes-256-gcm\"", "\"cipher\": \"xchacha20-poly1305\""},
      {"\"team\": \"storage\"", "\"team\": \"storagf\""},
      {"\"spec\": \"main\"", "\"spec\": \"other\""},
  };
  for (const auto& [from, to] : edits) {
    std::string t = text;
    auto pos = t.find(from);
    ASSERT_NE(pos, std::string::npos) << from;
    t.replace(pos, from.size(), to);
    ASSERT_TRUE(write_file_atomic(path, as_bytes(t), 0644).ok());
    auto v = Vault::open_unanchored(kv.backing, kv.providers);
    EXPECT_EQ(v.status().code(), Code::kCorrupt) << from << " -> " << to << ": " << v.status().message();
  }
  // Newer versions and unknown features are refused as unsupported, with a clear message.
  std::string t = text;
  t.replace(t.find("\"kmsfs_config\": 1"), 17, "\"kmsfs_config\": 2");
  ASSERT_TRUE(write_file_atomic(path, as_bytes(t), 0644).ok());
  auto v = Vault::open_unanchored(kv.backing, kv.providers);
  EXPECT_EQ(v.status().code(), Code::kUnsupported);
  EXPECT_NE(v.status().message().find("newer than this kmsfs supports"), std::string::npos);
  t = text;
  t.replace(t.find("\"features\": []"), 14, "\"features\": [\"quantum-names\"]");
  ASSERT_TRUE(write_file_atomic(path, as_bytes(t), 0644).ok());
  v = Vault::open_unanchored(kv.backing, kv.providers);
  EXPECT_EQ(v.status().code(), Code::kUnsupported);
  EXPECT_NE(v.status().message().find("quantum-names"), std::string::npos);
  ASSERT_TRUE(write_file_atomic(path, as_bytes("{ not json"), 0644).ok());
  EXPECT_EQ(Vault::open_unanchored(kv.backing, kv.providers).status().code(), Code::kCorrupt);
}

TEST(Vault, FileFromAnotherVaultIsRefusedButOpensStandalone) {
  KeyringVault kv;
  auto v1 = *Vault::init(kv.backing, kv.providers, main_key());
  std::string other_dir = kv.tmp.str("other");
  ASSERT_EQ(::mkdir(other_dir.c_str(), 0700), 0);
  auto v2 = *Vault::init(other_dir, kv.providers, main_key());
  auto f = *v2->create_file(other_dir + "/x", 0600);
  ASSERT_TRUE(f->write(as_bytes("hello"), 0).ok());
  f.reset();
  ASSERT_EQ(::rename((other_dir + "/x").c_str(), (kv.backing + "/x").c_str()), 0);
  auto g = v1->open_file(kv.backing + "/x", false);
  EXPECT_EQ(g.status().code(), Code::kCorrupt);
  EXPECT_NE(g.status().message().find("another filesystem"), std::string::npos);
  auto backing = PosixBackingFile::open(kv.backing + "/x", O_RDONLY);
  ASSERT_TRUE(backing.ok());
  auto s = open_crypt_file(std::shared_ptr<BackingFile>(std::move(*backing)), kv.providers);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ((*s)->size(), 5u);
}

TEST(Vault, RotatedKeyringKeyGivesNewFilesTheNewVersionAndOldFilesStillOpen) {
  KeyringVault kv;
  auto v = *Vault::init(kv.backing, kv.providers, main_key());
  auto a = *v->create_file(kv.backing + "/a", 0600);
  ASSERT_TRUE(a->write(as_bytes("old"), 0).ok());
  a.reset();
  ASSERT_TRUE(kv.keyring().update([](Keyring& k) { return k.rotate("main").status(); }).ok());
  auto b = *v->create_file(kv.backing + "/b", 0600);
  FileHeader hb = b->header();
  EXPECT_EQ(hb.slots[hb.active_slot()]->key.version, 2u);
  auto a2 = v->open_file(kv.backing + "/a", false);
  ASSERT_TRUE(a2.ok());
  FileHeader ha = (*a2)->header();
  EXPECT_EQ(ha.slots[ha.active_slot()]->key.version, 1u);
  // Disabling v1 makes the old file fail with a permission error naming the key.
  ASSERT_TRUE(kv.keyring().update([](Keyring& k) { return k.set_state("main", 1, KeyState::kDisabled); }).ok());
  auto a3 = v->open_file(kv.backing + "/a", false);
  EXPECT_EQ(a3.status().code(), Code::kPermissionDenied);
  EXPECT_NE(a3.status().message().find("main"), std::string::npos) << a3.status().message();
}

TEST(Vault, SlotDamageFallsBackToTheOtherSlot) {
  KeyringVault kv;
  auto v = *Vault::init(kv.backing, kv.providers, main_key());
  auto f = *v->create_file(kv.backing + "/a", 0600);
  ASSERT_TRUE(f->write(as_bytes("payload"), 0).ok());
  f.reset();
  // Corrupt the wrapped DEK inside the active slot and fix up its checksum, as a tamperer
  // would: the unwrap fails there and the other slot carries the file.
  auto raw = *read_file(kv.backing + "/a", 1 << 20);
  auto h = *parse_header(raw);
  int active = h.active_slot();
  HeaderSlot s = *h.slots[active];
  s.wrapped_dek[10] ^= 1;
  Bytes enc = *encode_slot(s);
  std::copy(enc.begin(), enc.end(), raw.begin() + header::kSlotOffset[active]);
  ASSERT_TRUE(write_file_atomic(kv.backing + "/a", raw, 0600).ok());
  auto g = v->open_file(kv.backing + "/a", false);
  ASSERT_TRUE(g.ok()) << g.status().message();
  // Both slots damaged: a clear kCorrupt error naming the key.
  HeaderSlot s2 = *h.slots[1 - active];
  s2.wrapped_dek[10] ^= 1;
  enc = *encode_slot(s2);
  std::copy(enc.begin(), enc.end(), raw.begin() + header::kSlotOffset[1 - active]);
  ASSERT_TRUE(write_file_atomic(kv.backing + "/a", raw, 0600).ok());
  g = v->open_file(kv.backing + "/a", false);
  EXPECT_EQ(g.status().code(), Code::kCorrupt);
  EXPECT_NE(g.status().message().find("keyring:main@1"), std::string::npos) << g.status().message();
}

}  // namespace
}  // namespace kmsfs

namespace kmsfs {
namespace {

TEST(Vault, InitRefusesAContextWithNoRoomForTheReservedPairs) {
  testing::KeyringVault kv;
  InitOptions o;
  o.key_spec = "main";
  for (size_t i = 0; i < EncryptionContext::kMaxPairs; ++i)
    ASSERT_TRUE(o.user_context.set("k" + std::to_string(i), "v").ok());
  auto v = Vault::init(kv.backing, kv.providers, o);
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
  EXPECT_NE(v.status().message().find("encryption context too large"), std::string::npos) << v.status().message();
  // Just under the limit works, and files can be created.
  InitOptions ok;
  ok.key_spec = "main";
  for (size_t i = 0; i + 3 < EncryptionContext::kMaxPairs; ++i)
    ASSERT_TRUE(ok.user_context.set("k" + std::to_string(i), "v").ok());
  auto v2 = Vault::init(kv.backing, kv.providers, ok);
  ASSERT_TRUE(v2.ok()) << v2.status().message();
  EXPECT_TRUE((*v2)->create_file(kv.backing + "/f", 0600).ok());
}

}  // namespace
}  // namespace kmsfs

namespace kmsfs {
namespace {

// An open file under the key cache: it keeps its key while the cache says so, and once the
// cache drops it (flush, TTL) the next access asks the provider again, which a disabled
// key version fails; a file opened before a revocation therefore stops working too.
TEST(VaultKeyCache, OpenFilesAskAgainOnceTheirKeyIsDroppedAndFailIfRevoked) {
  testing::KeyringVault kv;
  auto v = Vault::init(kv.backing, kv.providers, main_key());
  ASSERT_TRUE(v.ok()) << v.status().message();
  KeyCacheOptions o;
  o.ttl = std::chrono::hours(1);
  KeyCache cache(kv.providers, o);
  (*v)->use_key_cache(&cache);
  std::vector<CacheKeyId> evicted;
  cache.set_eviction_listener([&](const CacheKeyId& id) { evicted.push_back(id); });

  auto f = (*v)->create_file(kv.backing + "/a", 0600);
  ASSERT_TRUE(f.ok()) << f.status().message();
  ASSERT_TRUE((*f)->write(Bytes(5000, 1), 0).ok());
  ASSERT_NE((*f)->key_guard(), nullptr);
  auto g = (*v)->open_file(kv.backing + "/a", true);  // the created key came from the cache
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(cache.stats().fetches, 0u);
  EXPECT_EQ((*g)->key_guard()->key_id(), (*f)->key_guard()->key_id());

  ASSERT_TRUE(kv.keyring().update([](Keyring& k) { return k.set_state("main", 1, KeyState::kDisabled); }).ok());
  Bytes out(10);
  EXPECT_TRUE((*g)->read(out, 0).ok());  // the right to the key lasts until the cache drops it
  cache.flush();
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0], (*g)->key_guard()->key_id());
  (*g)->key_guard()->expire();  // what the mount does for every open file under that key
  EXPECT_EQ((*g)->read(out, 0).status().code(), Code::kPermissionDenied);
  EXPECT_EQ((*g)->write(Bytes(3, 2), 0).code(), Code::kPermissionDenied);

  EXPECT_EQ(cache.stats().fetches, 1u);  // the write met the remembered refusal, not the provider
  ASSERT_TRUE(kv.keyring().update([](Keyring& k) { return k.set_state("main", 1, KeyState::kEnabled); }).ok());
  cache.flush();  // forget the refusal now rather than in a second
  auto n = (*g)->read(out, 0);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(out, Bytes(10, 1));
  EXPECT_EQ(cache.stats().fetches, 2u);  // the refused one and this one
}

}  // namespace
}  // namespace kmsfs

