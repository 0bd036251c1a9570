// fsck's engine in-process: a key slot that parses but does not open its file is found
// and rewritten from the good one without losing the file's newest sparse state; keys
// shared by many files (intermediate keys) are unwrapped once per check.
#include <fcntl.h>

#include <gtest/gtest.h>

#include "counted_vault.h"
#include "format/header.h"
#include "fsck/fsck.h"
#include "vault/paths.h"

namespace kmsfs {
namespace {

using fsck::FindingKind;
using fsck::FindingStatus;
using testing::CountedVault;

std::vector<fsck::Finding> of_kind(const fsck::FsckReport& r, FindingKind k) {
  std::vector<fsck::Finding> out;
  for (const auto& f : r.findings)
    if (f.kind == k) out.push_back(f);
  return out;
}

fsck::FsckReport check(CountedVault& cv, bool repair) {
  fsck::FsckOptions o;
  o.repair = repair;
  auto r = fsck::run_fsck(cv.backing, cv.providers, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : fsck::FsckReport{};
}

TEST(Fsck, ASlotWhoseWrapDoesNotOpenTheFileIsRewrittenKeepingTheNewestSparseState) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  auto rel = encrypt_path(*v, "sparse");
  ASSERT_TRUE(rel.ok());
  const std::string path = cv.backing + "/" + *rel;
  const uint64_t bs = v->config().block_size;
  {
    auto f = v->create_file(path, 0600);
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_TRUE((*f)->write(Bytes(100, 7), 0).ok());
    // A gap past the sealed-gap limit: one slot rewrite records it as a sparse range,
    // in the slot that becomes active.
    ASSERT_TRUE((*f)->truncate(8 << 20).ok());
    ASSERT_TRUE((*f)->write(Bytes(10, 9), (8 << 20) - 10).ok());
  }
  auto backing = PosixBackingFile::open(path, O_RDWR);
  ASSERT_TRUE(backing.ok());
  auto h = read_header(**backing);
  ASSERT_TRUE(h.ok());
  const int active = h->active_slot();
  ASSERT_TRUE(h->slots[active]->state.has_value());
  ASSERT_FALSE(h->slots[1 - active]->state.has_value());
  // Forge the active slot: a wrap that does not authenticate, under a valid checksum.
  HeaderSlot forged = *h->slots[active];
  forged.wrapped_dek[10] ^= 1;
  auto enc = encode_slot(forged);
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE((*backing)->write_at(*enc, header::kSlotOffset[active]).ok());

  fsck::FsckReport r = check(cv, false);
  const auto bad = of_kind(r, FindingKind::kOneSlot);
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].message.find("key slot " + std::to_string(active) + " does not open the file"), std::string::npos)
      << bad[0].message;
  EXPECT_EQ(r.damaged_blocks, 0u);  // the file opened through the other slot, with its holes
  EXPECT_EQ(r.outcome(), fsck::Outcome::kUncorrected);

  fsck::FsckReport repaired = check(cv, true);
  EXPECT_EQ(of_kind(repaired, FindingKind::kOneSlot)[0].status, FindingStatus::kRepaired);
  EXPECT_EQ(repaired.outcome(), fsck::Outcome::kRepaired);
  fsck::FsckReport after = check(cv, false);
  EXPECT_EQ(after.outcome(), fsck::Outcome::kClean) << (after.findings.empty() ? "" : after.findings[0].message);
  auto fixed = read_header(**backing);
  ASSERT_TRUE(fixed.ok());
  for (const auto& s : fixed->slots) {
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->wrapped_dek, h->slots[1 - active]->wrapped_dek);
    EXPECT_EQ(s->state, h->slots[active]->state);  // the newest state survived
  }
  auto f = v->open_file(path, false);
  ASSERT_TRUE(f.ok()) << f.status().message();
  Bytes mid(bs);
  ASSERT_TRUE((*f)->read(mid, 4 << 20).ok());  // inside the hole
  EXPECT_EQ(mid, Bytes(bs, 0));
}

TEST(Fsck, IntermediateKeysAreUnwrappedOncePerCheck) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kIntermediate);
  for (int i = 0; i < 6; ++i) {
    auto rel = encrypt_path(*v, "f" + std::to_string(i));
    ASSERT_TRUE(rel.ok());
    auto f = v->create_file(cv.backing + "/" + *rel, 0600);
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_TRUE((*f)->write(Bytes(5000, static_cast<uint8_t>(i)), 0).ok());
  }
  v.reset();
  cv.counter->unwraps = 0;
  fsck::FsckReport r = check(cv, false);
  EXPECT_EQ(r.outcome(), fsck::Outcome::kClean);
  EXPECT_EQ(r.kmsfs_files, 6u);
  ASSERT_EQ(r.keys.size(), 1u);
  EXPECT_EQ(r.keys.begin()->second.files, 6u);
  EXPECT_EQ(cv.counter->unwraps, 2);  // the filesystem key, and the one intermediate key
}

}  // namespace
}  // namespace kmsfs
