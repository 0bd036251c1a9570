// Damage of any kind must end in a clean Status: never a crash, never an opened keyring.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <chrono>

#include "crypto/random.h"
#include "keys/keyring/keyring.h"
#include "keys/keyring/keyring_file.h"
#include "keys/keyring/keyring_meta.h"
#include "test_util.h"

namespace kmsfs {
namespace {

using testing::fast_kdf;
using testing::pass;
using testing::read_all;
using testing::TempDir;
using testing::write_raw;

bool refused_cleanly(const Result<Keyring>& k) {
  if (k.ok()) return false;
  Code c = k.status().code();
  return (c == Code::kCorrupt || c == Code::kPermissionDenied || c == Code::kUnsupported) &&
         !k.status().message().empty();
}

TEST(KeyringCorruption, EveryBitFlipOfASealedFileIsRefused) {
  TempDir dir;
  const std::string path = dir / "kr";
  auto pw = pass("pw");
  std::vector<std::string> keys = {"k"};
  // Most flips reach Argon2 (any flip in the blob, many in the meta), hundreds of runs:
  // the cheapest parameters a keyring accepts keep this test about framing, not KDF cost.
  const Argon2Params cheapest{kMinArgon2Ops, kMinArgon2Mem};
  ASSERT_TRUE(Keyring::create(path, &pw, cheapest, keys).ok());
  const Bytes good = read_all(path);
  ASSERT_TRUE(Keyring::open(path, &pw).ok());

  const std::string target = dir / "flipped";
  for (size_t off = 0; off < good.size(); ++off) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = good;
      bad[off] ^= uint8_t(1u << bit);
      write_raw(target, bad);
      auto k = Keyring::open(target, &pw);
      ASSERT_TRUE(refused_cleanly(k)) << "offset " << off << " bit " << bit << ": "
                                      << (k.ok() ? "opened" : k.status().to_string());
      EXPECT_NE(k.status().message().find(target), std::string::npos) << off;
    }
  }
}

TEST(KeyringCorruption, EveryBitFlipOfAnUnsealedFileIsRefused) {
  TempDir dir;
  const std::string path = dir / "kr";
  std::vector<std::string> keys = {"k", "l"};
  auto k0 = Keyring::create(path, nullptr, {}, keys);
  ASSERT_TRUE(k0.ok());
  ASSERT_TRUE(k0->rotate("k").ok());
  ASSERT_TRUE(k0->save().ok());
  const Bytes good = read_all(path);

  const std::string target = dir / "flipped";
  for (size_t off = 0; off < good.size(); ++off) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes bad = good;
      bad[off] ^= uint8_t(1u << bit);
      write_raw(target, bad);
      auto k = Keyring::open(target, nullptr);
      ASSERT_TRUE(refused_cleanly(k)) << "offset " << off << " bit " << bit << ": "
                                      << (k.ok() ? "opened" : k.status().to_string());
      EXPECT_FALSE(Keyring::peek(target).ok()) << off;
    }
  }
}

TEST(KeyringCorruption, FlipInTheBlobOfAnUnsealedFileIsAChecksumError) {
  TempDir dir;
  const std::string path = dir / "kr";
  std::vector<std::string> keys = {"k"};
  ASSERT_TRUE(Keyring::create(path, nullptr, {}, keys).ok());
  Bytes bad = read_all(path);
  bad[bad.size() - 32 - 1] ^= 1;  // last material byte
  write_raw(path, bad);
  auto k = Keyring::open(path, nullptr);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), Code::kCorrupt);
  EXPECT_EQ(k.status().message(),
            "keyring " + path + ": checksum mismatch (the file is damaged)");
}

TEST(KeyringCorruption, TruncatedFilesAreRefused) {
  TempDir dir;
  auto pw = pass("pw");
  std::vector<std::string> keys = {"k"};
  ASSERT_TRUE(Keyring::create(dir / "s", &pw, fast_kdf(), keys).ok());
  ASSERT_TRUE(Keyring::create(dir / "u", nullptr, {}, keys).ok());
  const std::string target = dir / "t";
  for (const char* name : {"s", "u"}) {
    const Bytes good = read_all(dir / name);
    for (size_t len = 0; len < good.size(); ++len) {
      write_raw(target, ByteSpan(good).first(len));
      auto k = Keyring::open(target, &pw);
      ASSERT_TRUE(refused_cleanly(k)) << name << " truncated to " << len;
      // Truncation is a framing error, found before any KDF work, and said as such.
      EXPECT_EQ(k.status().code(), Code::kCorrupt) << name << " " << len;
      EXPECT_EQ(k.status().message().rfind("keyring " + target + ": truncated or damaged (", 0), 0u)
          << name << " " << len << ": " << k.status().message();
    }
    // Extension is refused as well.
    Bytes longer = good;
    longer.push_back(0);
    write_raw(target, longer);
    EXPECT_TRUE(refused_cleanly(Keyring::open(target, &pw))) << name;
  }
}

TEST(KeyringCorruption, GarbageIsRefused) {
  TempDir dir;
  const std::string target = dir / "g";
  auto pw = pass("pw");
  for (size_t size : {0, 1, 7, 8, 16, 20, 64, 1000, 100000}) {
    Bytes junk(size);
    random_bytes(junk);
    write_raw(target, junk);
    auto k = Keyring::open(target, &pw);
    ASSERT_TRUE(refused_cleanly(k)) << size;
    EXPECT_EQ(k.status().code(), Code::kCorrupt);
  }
  // The right magic and version, then nonsense lengths.
  ByteWriter w;
  w.raw(as_bytes(kKeyringMagic));
  w.u16(1);
  w.u16(0);
  w.u32(0xffffffff);
  w.raw(as_bytes("{}"));
  write_raw(target, w.bytes());
  auto k = Keyring::open(target, &pw);
  ASSERT_TRUE(refused_cleanly(k));
  EXPECT_EQ(k.status().message(), "keyring " + target +
                                      ": truncated or damaged (its header gives 4294967295 bytes of key list, only 2 "
                                      "follow); restore it from a backup");

  // Too big to be a keyring: refused before it is read.
  Bytes huge(kMaxKeyringFileSize + 1);
  write_raw(target, huge);
  auto h = Keyring::open(target, &pw);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), Code::kInvalidArgument);

  // A directory is not a keyring.
  EXPECT_FALSE(Keyring::open(dir.path(), &pw).ok());
}

// Arbitrary bytes after a valid header prefix: framing and JSON parsing never crash.
RC_GTEST_PROP(KeyringCorruption, ArbitraryContainerBytesNeverCrash, (std::vector<uint8_t> tail)) {
  Bytes file(kKeyringMagic.begin(), kKeyringMagic.end());
  file.push_back(1);
  file.push_back(0);
  file.insert(file.end(), tail.begin(), tail.end());
  auto c = parse_keyring_container(file);
  if (c.ok()) {
    auto m = parse_meta(c->meta, c->sealed);
    if (!m.ok()) RC_ASSERT(m.status().code() == Code::kCorrupt);
  } else {
    RC_ASSERT(c.status().code() == Code::kCorrupt || c.status().code() == Code::kUnsupported);
  }
}

// Arbitrary JSON-ish text as meta: a Status, never an exception or a crash.
RC_GTEST_PROP(KeyringCorruption, ArbitraryMetaNeverCrashes, (std::string text, bool sealed)) {
  auto m = parse_meta(as_bytes(text), sealed);
  RC_ASSERT(m.ok() || m.status().code() == Code::kCorrupt);
}

// Valid-looking meta with random structure and values.
RC_GTEST_PROP(KeyringCorruption, StructuredMetaNeverCrashes, ()) {
  const auto value = *rc::gen::element<std::string>(
      "1", "0", "-1", "1.5", "\"enabled\"", "\"disabled\"", "null", "true", "[]", "{}",
      "\"main\"", "\"2024-05-01T12:00:00Z\"", "18446744073709551615", "\"\"",
      "\"00112233445566778899aabbccddeeff\"");
  const auto field = *rc::gen::element<std::string>("keyring_id", "created", "keys", "kdf",
                                                    "name", "versions", "version", "state");
  std::string meta = R"({"keyring_id":"00112233445566778899aabbccddeeff","created":"2024-05-01T12:00:00Z","keys":[{"name":"a","versions":[{"version":1,"created":"2024-05-01T12:00:00Z","state":"enabled"}]}]})";
  auto pos = meta.find("\"" + field + "\":");
  if (pos != std::string::npos) {
    size_t vstart = pos + field.size() + 3;
    size_t vend = meta.find_first_of(",}", vstart);
    if (meta[vstart] == '[' ) vend = meta.rfind(']') + 1;
    meta = meta.substr(0, vstart) + value + meta.substr(vend);
  }
  auto m = parse_meta(as_bytes(meta), false);
  RC_ASSERT(m.ok() || m.status().code() == Code::kCorrupt);
}

}  // namespace
}  // namespace kmsfs
