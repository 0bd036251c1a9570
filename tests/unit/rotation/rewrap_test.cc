// Re-wrapping one file: only the header's slots change (both of them), under the target
// key; content, sparse state and mtime stay; intermediate keys are moved once for all the
// files that share them; an open file is re-wrapped through its CryptFile, so its later
// header writes keep the new wrap.
#include <fcntl.h>
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fstream>

#include "base/file_io.h"
#include "counted_vault.h"
#include "format/header.h"
#include "rotation/rewrapper.h"

namespace kmsfs {
namespace {

using testing::CountedVault;

const KeyRef kV1{ProviderId::kKeyring, "main", 1};
const KeyRef kV2{ProviderId::kKeyring, "main", 2};

Bytes content_of(int i) { return Bytes(5000 + 37 * i, static_cast<uint8_t>(i * 7 + 1)); }

FileHeader header_on_disk(const std::string& path) {
  auto f = PosixBackingFile::open(path, O_RDONLY);
  EXPECT_TRUE(f.ok());
  auto h = read_header(**f);
  EXPECT_TRUE(h.ok()) << h.status().message();
  return *h;
}



void expect_reads_back(Vault& v, const std::string& path, const Bytes& want) {
  auto f = v.open_file(path, false);
  ASSERT_TRUE(f.ok()) << f.status().message();
  Bytes got(want.size() + 10);
  auto n = (*f)->read(got, 0);
  ASSERT_TRUE(n.ok()) << n.status().message();
  got.resize(*n);
  EXPECT_EQ(got, want);
}

TEST(Rewrap, MovesBothSlotsAndKeepsContentSparseStateAndMtime) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  for (int i = 0; i < 5; ++i) {
    auto f = v->create_file(cv.path(i), 0600);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->write(content_of(i), 0).ok());
  }
  {  // a hole past the sealed-gap limit becomes an authenticated sparse range
    auto f = v->open_file(cv.path(4), true);
    ASSERT_TRUE((*f)->truncate(8 << 20).ok());
    ASSERT_FALSE((*f)->sparse().empty());
  }
  const timespec old_times[2] = {{1000000000, 0}, {1234567890, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, cv.path(0).c_str(), old_times, 0), 0);
  cv.rotate_key();

  Rewrapper rw(*v, {kV2, false, nullptr});
  for (int i = 0; i < 5; ++i) {
    auto r = rw.rewrap("f" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->outcome, RewrapOutcome::kRotated);
    auto again = rw.rewrap("f" + std::to_string(i));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->outcome, RewrapOutcome::kAlready);
    const FileHeader h = header_on_disk(cv.path(i));
    ASSERT_TRUE(h.slots[0] && h.slots[1]);
    EXPECT_EQ(h.slots[0]->key, kV2);
    EXPECT_EQ(h.slots[1]->key, kV2);
  }
  EXPECT_EQ(cv.counter->rewraps, 5);
  struct stat st;
  ASSERT_EQ(::stat(cv.path(0).c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);

  // The old version can go: every file opens under the new one alone.
  // (The filesystem key is still under v1: the worker moves it, see worker_test.)
  cv.disable_version(1);
  for (int i = 0; i < 4; ++i) expect_reads_back(*v, cv.path(i), content_of(i));
  auto f4 = v->open_file(cv.path(4), false);
  ASSERT_TRUE(f4.ok()) << f4.status().message();
  EXPECT_EQ((*f4)->size(), 8u << 20);
  EXPECT_FALSE((*f4)->sparse().empty());
}

TEST(Rewrap, IntermediateKeysAreMovedOnceForAllTheirFiles) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kIntermediate, 30);
  for (int i = 0; i < 100; ++i) {
    auto f = v->create_file(cv.path(i), 0600);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->write(content_of(i), 0).ok());
  }
  cv.rotate_key();
  Rewrapper rw(*v, {kV2, false, nullptr});
  for (int i = 0; i < 100; ++i) {
    auto r = rw.rewrap("f" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->outcome, RewrapOutcome::kRotated);
  }
  EXPECT_EQ(cv.counter->rewraps, 4);  // 100 files, 30 per intermediate key
  EXPECT_EQ(rw.calls(), 4u);
  cv.disable_version(1);
  for (int i = 0; i < 100; i += 9) {
    const FileHeader h = header_on_disk(cv.path(i));
    EXPECT_EQ(h.slots[0]->key, kV2);
    ASSERT_TRUE(h.slots[0]->intermediate);
    // Offline, with no vault and no cache: the copied-anywhere guarantee still holds.
    auto backing = PosixBackingFile::open(cv.path(i), O_RDONLY);
    ASSERT_TRUE(backing.ok());
    auto f = open_crypt_file(std::shared_ptr<BackingFile>(std::move(*backing)), cv.providers);
    ASSERT_TRUE(f.ok()) << f.status().message();
    Bytes got(content_of(i).size());
    ASSERT_EQ(*(*f)->read(got, 0), got.size());
    EXPECT_EQ(got, content_of(i));
  }
}

TEST(Rewrap, AnOpenFileIsMovedThroughItsCryptFileSoItsLaterStateWritesKeepTheNewWrap) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  ASSERT_TRUE(v->create_file(cv.path(0), 0600).ok());
  struct stat st;
  ASSERT_EQ(::stat(cv.path(0).c_str(), &st), 0);
  auto f = v->open_files().get_or_open(st.st_dev, st.st_ino, [&]() -> Result<std::shared_ptr<CryptFile>> {
    ASSIGN_OR_RETURN(auto opened, v->open_file(cv.path(0), true));
    return std::shared_ptr<CryptFile>(std::move(opened));
  });
  ASSERT_TRUE(f.ok());
  cv.rotate_key();
  Rewrapper rw(*v, {kV2, false, nullptr});
  auto r = rw.rewrap("f0");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->outcome, RewrapOutcome::kRotated);
  EXPECT_EQ((*f)->header().slots[0]->key, kV2);
  // A sparse-range update writes one slot from the in-memory header: the new wrap.
  ASSERT_TRUE((*f)->truncate(16 << 20).ok());
  const FileHeader h = header_on_disk(cv.path(0));
  EXPECT_EQ(h.slots[0]->key, kV2);
  EXPECT_EQ(h.slots[1]->key, kV2);
  EXPECT_GT(std::max(h.slots[0]->seq, h.slots[1]->seq), 4u);
}

TEST(Rewrap, ForeignDamagedAndOtherVaultFilesAreToldApart) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  std::ofstream(cv.path(0)) << "just some file that is not kmsfs";
  ASSERT_TRUE(v->create_file(cv.path(1), 0600).ok());
  {  // both slots torn: the header names no key
    auto raw = read_file(cv.path(1), 1 << 20).value();
    raw[header::kSlotOffset[0] + 20] ^= 1;
    raw[header::kSlotOffset[1] + 20] ^= 1;
    ASSERT_TRUE(write_file_atomic(cv.path(1), raw, 0600).ok());
  }
  CountedVault other;
  auto ov = other.init(KeyMode::kPerFile);
  ASSERT_TRUE(ov->create_file(other.path(0), 0600).ok());
  std::filesystem::copy_file(other.path(0), cv.path(2));
  cv.rotate_key();
  Rewrapper rw(*v, {kV2, false, nullptr});
  auto foreign = rw.rewrap("f0");
  ASSERT_TRUE(foreign.ok());
  EXPECT_EQ(foreign->outcome, RewrapOutcome::kNotKmsfs);
  auto torn = rw.rewrap("f1");
  EXPECT_EQ(torn.status().code(), Code::kCorrupt) << torn.status().message();
  EXPECT_NE(torn.status().message().find(cv.path(1)), std::string::npos) << torn.status().message();
  auto stranger = rw.rewrap("f2");
  EXPECT_EQ(stranger.status().code(), Code::kCorrupt);
  EXPECT_NE(stranger.status().message().find("another filesystem"), std::string::npos);
  auto gone = rw.rewrap("nothing-here");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->outcome, RewrapOutcome::kGone);
  EXPECT_EQ(cv.counter->rewraps, 0);
}

}  // namespace
}  // namespace kmsfs
