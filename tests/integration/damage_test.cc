// Damaged backing files, as the mount sees them: a read touching a bad block fails as a
// whole with EIO (never a short read, never wrong bytes), reads of good blocks still
// work (also the ones the kernel's readahead lumps together with the bad block), the
// daemon logs which file and block, and it survives all of it.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <regex>

#include "crypto/kdf.h"
#include "posix_util.h"

namespace kmsfs::testing {
namespace {

void patch_backing(const std::string& path, uint64_t off, const std::function<void(std::string&)>& edit, size_t len) {
  Fd fd(path, O_RDWR);
  if (!fd.ok()) throw std::runtime_error("open " + path + ": " + err_str(errno));
  std::string bytes = pread_str(fd.get(), len, static_cast<off_t>(off));
  edit(bytes);
  pwrite_str(fd.get(), bytes, static_cast<off_t>(off));
  if (::fsync(fd.get()) != 0) throw std::runtime_error("fsync");
}

void flip_bit(const std::string& path, uint64_t off, int bit = 3) {
  patch_backing(path, off, [bit](std::string& b) { b[0] = static_cast<char>(b[0] ^ (1 << bit)); }, 1);
}

// -1 and errno, or the byte count: what pread(2) itself said.
struct ReadResult {
  ssize_t n;
  int err;
  std::string data;
};
ReadResult raw_pread(int fd, size_t len, off_t off) {
  std::string buf(len, '\0');
  errno = 0;
  ssize_t n = ::pread(fd, buf.data(), len, off);
  int e = errno;
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return {n, e, buf};
}

#define EXPECT_EIO(r)                                                              \
  do {                                                                             \
    ReadResult r_ = (r);                                                           \
    EXPECT_EQ(r_.n, -1) << "expected EIO, got " << r_.n << " bytes";               \
    EXPECT_EQ(r_.err, EIO) << err_str(r_.err);                                     \
  } while (0)

struct Damaged {
  std::unique_ptr<PosixVault> v;
  std::string data;
  BackingLayout layout;
  std::string backing_file;
};

// A file of 16 full blocks and a partial one, unmounted so it can be damaged offline.
Damaged make_file(const std::string& name) {
  Damaged d;
  d.v = std::make_unique<PosixVault>();
  d.backing_file = d.v->backing_at(name);
  // Block size from a probe file first, so the data covers 16 blocks whatever it is.
  write_file(d.v->at("probe"), "p");
  d.layout = inspect_layout(d.v->backing_at("probe"));
  d.data = pattern(16 * d.layout.block_size + 100, 61);
  write_file(d.v->at(name), d.data);
  if (d.v->unmount() != 0) throw std::runtime_error("unmount");
  d.layout = inspect_layout(d.backing_file);
  return d;
}

// The daemon names a backing file by its path relative to the vault (as fsck does).
std::string in_vault(const MountedVault& v, const std::string& backing_file) {
  return backing_file.substr(v.backing().size() + 1);
}

// A line "<op>: <path relative to the vault>: file <id> block <n>...".
bool log_names_block(const std::string& log, const Damaged& d, uint64_t block) {
  std::regex line(".*: " + std::regex_replace(in_vault(*d.v, d.backing_file), std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                  ": file " + d.layout.file_id + ".*block " + std::to_string(block) + "\\b.*");
  std::istringstream in(log);
  std::string l;
  while (std::getline(in, l))
    if (std::regex_match(l, line)) return true;
  return false;
}

TEST(Damage, FlippedBitFailsWholeReadsTouchingTheBlock) {
  Damaged d = make_file("victim");
  const uint64_t bs = d.layout.block_size;
  ASSERT_EQ(d.layout.file_id.size(), 32u);
  flip_bit(d.backing_file, d.layout.block_offset(5) + 100);
  d.v->mount();
  Fd fd(d.v->at("victim"), O_RDONLY);
  ASSERT_TRUE(fd.ok()) << err_str(errno);

  // First read after the mount: the block just before the bad one. Readahead asks the
  // daemon for a window that includes block 5; the good block must still be readable.
  ReadResult r = raw_pread(fd.get(), bs, static_cast<off_t>(4 * bs));
  EXPECT_EQ(r.n, static_cast<ssize_t>(bs)) << err_str(r.err);
  EXPECT_SAME_BYTES(r.data, d.data.substr(4 * bs, bs));
  drop_caches();
  r = raw_pread(fd.get(), bs, static_cast<off_t>(4 * bs));
  EXPECT_EQ(r.n, static_cast<ssize_t>(bs)) << err_str(r.err);
  EXPECT_SAME_BYTES(r.data, d.data.substr(4 * bs, bs));
  // The same from a sequential reader: everything up to the bad block.
  drop_caches();
  {
    Fd seq(d.v->at("victim"), O_RDONLY);
    std::string got;
    char buf[4096];
    for (uint64_t done = 0; done < 5 * bs;) {
      ssize_t n = ::read(seq.get(), buf, std::min<uint64_t>(sizeof buf, 5 * bs - done));
      ASSERT_GT(n, 0) << "sequential read at " << done << ": " << err_str(errno);
      got.append(buf, static_cast<size_t>(n));
      done += static_cast<uint64_t>(n);
    }
    EXPECT_SAME_BYTES(got, d.data.substr(0, 5 * bs));
  }

  // Anything that starts in block 5 fails with EIO and returns no bytes.
  EXPECT_EIO(raw_pread(fd.get(), bs, static_cast<off_t>(5 * bs)));
  EXPECT_EIO(raw_pread(fd.get(), 3 * bs, static_cast<off_t>(5 * bs)));
  EXPECT_EIO(raw_pread(fd.get(), 1, static_cast<off_t>(5 * bs + 4000 % bs)));
  drop_caches();
  EXPECT_EIO(raw_pread(fd.get(), 2, static_cast<off_t>(6 * bs - 1)));
  // A buffered read that starts in good blocks and runs into block 5 goes through the
  // page cache, which the kernel fills page by page after the daemon refused the whole
  // readahead request: filemap_read() then returns what it copied before the failing
  // page (mm/filemap.c: "return already_read ? already_read : error"), as for any
  // filesystem. So: the good bytes exactly up to the bad block, never a byte of it.
  for (bool cold : {true, false}) {
    SCOPED_TRACE(cold ? "cold cache" : "warm cache");
    if (cold) drop_caches();
    r = raw_pread(fd.get(), 3 * bs, static_cast<off_t>(4 * bs));
    if (r.n != -1) {
      EXPECT_EQ(r.n, static_cast<ssize_t>(bs)) << "a short read must end exactly at the bad block";
      EXPECT_SAME_BYTES(r.data, d.data.substr(4 * bs, static_cast<size_t>(std::max<ssize_t>(r.n, 0))));
    } else {
      EXPECT_EQ(r.err, EIO);
    }
  }
  drop_caches();
  r = raw_pread(fd.get(), d.data.size(), 0);
  EXPECT_TRUE(r.n == -1 || r.n == static_cast<ssize_t>(5 * bs)) << r.n;
  EXPECT_THROW(read_file(d.v->at("victim")), std::runtime_error);
  // Without the page cache (O_DIRECT) one read(2) is one daemon request, and that fails
  // as a whole: no short read, no bytes of the good blocks around the bad one.
  {
    Fd direct(d.v->at("victim"), O_RDONLY | O_DIRECT);
    ASSERT_TRUE(direct.ok()) << err_str(errno);
    void* raw = nullptr;
    ASSERT_EQ(::posix_memalign(&raw, 4096, 4 * bs), 0);
    std::unique_ptr<char, decltype(&::free)> buf(static_cast<char*>(raw), &::free);
    errno = 0;
    EXPECT_EQ(::pread(direct.get(), buf.get(), 3 * bs, static_cast<off_t>(4 * bs)), -1);
    EXPECT_EQ(errno, EIO) << err_str(errno);
    errno = 0;
    EXPECT_EQ(::pread(direct.get(), buf.get(), 4 * bs, static_cast<off_t>(2 * bs)), -1);
    EXPECT_EQ(errno, EIO) << err_str(errno);
    EXPECT_EQ(::pread(direct.get(), buf.get(), bs, static_cast<off_t>(4 * bs)), static_cast<ssize_t>(bs));
    EXPECT_SAME_BYTES(std::string(buf.get(), bs), d.data.substr(4 * bs, bs));
  }

  // Good blocks on both sides.
  for (uint64_t b : {0, 3, 6, 7, 15, 16}) {
    r = raw_pread(fd.get(), bs, static_cast<off_t>(b * bs));
    const std::string want = d.data.substr(b * bs, bs);
    EXPECT_EQ(r.n, static_cast<ssize_t>(want.size())) << "block " << b << ": " << err_str(r.err);
    EXPECT_SAME_BYTES(r.data, want);
  }
  EXPECT_SAME_BYTES(pread_str(fd.get(), 11 * bs, static_cast<off_t>(6 * bs)), d.data.substr(6 * bs));

  const std::string log = d.v->log();
  EXPECT_TRUE(log_names_block(log, d, 5)) << "no log line with path, file id and block 5:\n" << log;
  EXPECT_TRUE(d.v->mounted());
  fd.reset();
  EXPECT_EQ(d.v->unmount(), 0);
}

TEST(Damage, FlippedBitInTheFirstContentBlock) {
  Damaged d = make_file("first");
  const uint64_t bs = d.layout.block_size;
  flip_bit(d.backing_file, d.layout.header_size + 100);  // "byte 4096+100" with default sizes
  d.v->mount();
  Fd fd(d.v->at("first"), O_RDONLY);
  ASSERT_TRUE(fd.ok()) << err_str(errno);
  EXPECT_EIO(raw_pread(fd.get(), 10, 0));
  EXPECT_EIO(raw_pread(fd.get(), 2 * bs, 0));
  EXPECT_SAME_BYTES(pread_str(fd.get(), bs, static_cast<off_t>(bs)), d.data.substr(bs, bs));
  EXPECT_TRUE(log_names_block(d.v->log(), d, 0)) << d.v->log();
}

TEST(Damage, ZeroedBlockIsNotAHole) {
  Damaged d = make_file("zeroed");
  const uint64_t bs = d.layout.block_size;
  patch_backing(d.backing_file, d.layout.block_offset(2), [](std::string& b) { std::fill(b.begin(), b.end(), '\0'); },
                d.layout.sealed());
  d.v->mount();
  Fd fd(d.v->at("zeroed"), O_RDONLY);
  ASSERT_TRUE(fd.ok());
  EXPECT_EIO(raw_pread(fd.get(), bs, static_cast<off_t>(2 * bs)));
  EXPECT_EIO(raw_pread(fd.get(), 100, static_cast<off_t>(2 * bs + 50)));
  EXPECT_SAME_BYTES(pread_str(fd.get(), bs, static_cast<off_t>(bs)), d.data.substr(bs, bs));
  EXPECT_SAME_BYTES(pread_str(fd.get(), bs, static_cast<off_t>(3 * bs)), d.data.substr(3 * bs, bs));
  EXPECT_TRUE(log_names_block(d.v->log(), d, 2)) << d.v->log();
}

TEST(Damage, FlippedBitInTheHeader) {
  Damaged d = make_file("hdr");
  flip_bit(d.backing_file, 40);  // inside the authenticated immutable part
  d.v->mount();
  EXPECT_EQ(::open(d.v->at("hdr").c_str(), O_RDONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EIO) << err_str(errno);
  const std::string log = d.v->log();
  EXPECT_NE(log.find(": " + in_vault(*d.v, d.backing_file) + ": "), std::string::npos) << log;
  EXPECT_EQ(read_file(d.v->at("probe")), "p");
  EXPECT_TRUE(d.v->mounted());
}

TEST(Damage, BackingFileCutTo100Bytes) {
  Damaged d = make_file("cut");
  ASSERT_EQ(::truncate(d.backing_file.c_str(), 100), 0);
  d.v->mount();
  Fd fd(d.v->at("cut"), O_RDONLY);
  if (fd.ok()) {
    EXPECT_EIO(raw_pread(fd.get(), 100, 0));
  } else {
    EXPECT_EQ(errno, EIO) << err_str(errno);
  }
  EXPECT_EQ(::open(d.v->at("cut").c_str(), O_RDWR | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EIO);
  const std::string log = d.v->log();
  EXPECT_NE(log.find(": " + in_vault(*d.v, d.backing_file) + ": "), std::string::npos) << log;
  EXPECT_NE(log.find("error"), std::string::npos) << log;
  // Other files are unaffected, and the damaged one can be removed.
  EXPECT_EQ(read_file(d.v->at("probe")), "p");
  EXPECT_EQ(::unlink(d.v->at("cut").c_str()), 0);
  EXPECT_TRUE(d.v->mounted());
}

TEST(Damage, BackingFileCutInsideTheLastBlocks) {
  Damaged d = make_file("torn");
  const uint64_t bs = d.layout.block_size;
  // Ends half-way through block 10: blocks before it are intact.
  ASSERT_EQ(::truncate(d.backing_file.c_str(), static_cast<off_t>(d.layout.block_offset(10) + d.layout.sealed() / 2)), 0);
  d.v->mount();
  Fd fd(d.v->at("torn"), O_RDONLY);
  ASSERT_TRUE(fd.ok()) << err_str(errno);
  EXPECT_SAME_BYTES(pread_str(fd.get(), 2 * bs, 0), d.data.substr(0, 2 * bs));
  ReadResult r = raw_pread(fd.get(), bs, static_cast<off_t>(10 * bs));
  EXPECT_TRUE(r.n == -1 && r.err == EIO) << "read of the torn block gave " << r.n << " bytes";
  // Reading to the end must not quietly look like a shorter, valid file.
  drop_caches();
  EXPECT_THROW(read_file(d.v->at("torn")), std::runtime_error);
}

// Issue 16's crash and key choice: a storage writer edits both slots of a header to name a
// key of the other provider whose id ends in a byte that is not UTF-8 (and fixes the
// unkeyed slot checksums). The vault's trust anchor does not trust it: opening the file
// is EIO with a log line naming the backing file and the key, no provider is asked (the
// request builder of the AWS one used to throw on such an id and abort the daemon), and
// the mount goes on serving the other files.
TEST(Damage, AHeaderNamingAnUntrustedKeyIsEioAndTheDaemonLives) {
  Damaged d = make_file("victim");
  d.v->mount();  // make_file unmounted it
  write_file(d.v->at("other"), "still here");
  ASSERT_EQ(d.v->unmount(), 0);
  for (uint64_t slot : {1024u, 2560u}) {
    patch_backing(d.backing_file, slot, [](std::string& b) {
      // Slot: magic u32, len u32, seq u64; record type u16, len u16; then provider u8,
      // version u32, u16 key-id length, key id.
      ASSERT_EQ(static_cast<uint8_t>(b[16]), 0x01);
      ASSERT_EQ(static_cast<uint8_t>(b[17]), 0x80);
      b[20] = b[20] == 1 ? 2 : 1;
      const size_t id_len = static_cast<uint8_t>(b[25]) | static_cast<size_t>(static_cast<uint8_t>(b[26])) << 8;
      ASSERT_GT(id_len, 0u);
      b[27 + id_len - 1] = static_cast<char>(0xff);
      auto sum = sha256({reinterpret_cast<const uint8_t*>(b.data()), 1536 - 32});
      std::copy(sum.begin(), sum.end(), b.begin() + (1536 - 32));
    }, 1536);
  }
  d.v->mount();
  Fd fd(d.v->at("victim"), O_RDONLY);
  EXPECT_FALSE(fd.ok());
  EXPECT_EQ(errno, EIO) << err_str(errno);
  EXPECT_EQ(read_file(d.v->at("other")), "still here");
  Fd again(d.v->at("victim"), O_RDONLY);
  EXPECT_FALSE(again.ok());
  EXPECT_TRUE(d.v->mounted());
  const std::string log = d.v->log();
  EXPECT_NE(log.find(": " + in_vault(*d.v, d.backing_file) + ": "), std::string::npos) << log;
  // Refused by the trust anchor, or already by the header decoder (not UTF-8).
  EXPECT_TRUE(log.find("no request was made") != std::string::npos || log.find("UTF-8") != std::string::npos) << log;
  EXPECT_EQ(log.find('\xff'), std::string::npos) << "a raw attacker byte in the log";
  EXPECT_EQ(d.v->unmount(), 0);
}

TEST(Damage, NonKmsfsFileGivesEioWithoutCrashing) {
  PosixVault v;
  write_file(v.at("good"), "good");
  ASSERT_EQ(v.unmount(), 0);
  write_file(v.backing_at("intruder.txt"), "just some plain text, not a kmsfs file\n");
  write_file(v.backing_at("empty-intruder"), "");
  v.mount();
  for (const char* name : {"intruder.txt", "empty-intruder"}) {
    SCOPED_TRACE(name);
    struct stat st {};
    EXPECT_EQ(::stat(v.at(name).c_str(), &st), 0) << err_str(errno);  // listing and stat work
    int fd = ::open(v.at(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      EXPECT_EIO(raw_pread(fd, 100, 0));
      ::close(fd);
    } else {
      EXPECT_EQ(errno, EIO) << err_str(errno);
    }
  }
  const std::string log = v.log();
  EXPECT_NE(log.find(": " + in_vault(v, v.backing_at("intruder.txt")) + ": "), std::string::npos) << log;
  // Repeated attempts are repeatable failures, not crashes; the rest of the mount works.
  for (int i = 0; i < 20; ++i) {
    int fd = ::open(v.at("intruder.txt").c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
  }
  EXPECT_EQ(read_file(v.at("good")), "good");
  write_file(v.at("new"), "new");
  EXPECT_EQ(read_file(v.at("new")), "new");
  EXPECT_TRUE(v.mounted());
  EXPECT_EQ(v.unmount(), 0);
}

}  // namespace
}  // namespace kmsfs::testing
