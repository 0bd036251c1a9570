// Re-encryption through the vault: the new DEK comes from the provider (wrapped like the
// file's own), a file opened mid-way gets both keys, and a step cut short by a crash is
// undone from the journal, without a key, even after the file was renamed.
#include <fcntl.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "format/reencrypt_journal.h"
#include "vault/config.h"
#include "vault/reencrypt_recovery.h"
#include "vault_fixture.h"

namespace kmsfs::testing {
namespace {

// A backing file whose header writes fail once armed: the crash between a step's block
// writes and its watermark commit.
class CutBacking final : public BackingFile {
 public:
  explicit CutBacking(std::shared_ptr<BackingFile> f) : f_(std::move(f)) {}
  bool cut = false;
  Result<size_t> read_at(MutableByteSpan b, uint64_t off) override { return f_->read_at(b, off); }
  Status write_at(ByteSpan d, uint64_t off) override {
    if (cut && off < header::kSize) return Status(Code::kIo, "power cut", EIO);
    return f_->write_at(d, off);
  }
  Result<uint64_t> size() override { return f_->size(); }
  Status truncate(uint64_t s) override { return f_->truncate(s); }
  Status sync(bool d) override { return f_->sync(d); }
  Status reserve(uint64_t o, uint64_t l) override { return f_->reserve(o, l); }
  Result<timespec> mtime() override { return f_->mtime(); }
  Status set_mtime(const timespec& t) override { return f_->set_mtime(t); }
  std::string name() const override { return f_->name(); }

 private:
  std::shared_ptr<BackingFile> f_;
};

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 31 + seed + i / 4096);
  return b;
}

struct ReencryptVault : KeyringVault {
  std::unique_ptr<Vault> vault;
  ReencryptRunId run{9, 9, 9, 9, 1, 2, 3, 4};
  explicit ReencryptVault(KeyMode mode = KeyMode::kPerFile) {
    InitOptions o;
    o.key_spec = "main";
    o.key_mode = mode;
    vault = std::move(*Vault::init(backing, providers, o));
    std::filesystem::create_directories(backing + "/d");
  }
  Bytes read(CryptFile& f) {
    Bytes out(f.size());
    auto n = f.read(out, 0);
    EXPECT_TRUE(n.ok()) << n.status().message();
    return out;
  }
  ReencryptJournal journal() { return *ReencryptJournal::open(backing + "/" + kJournalFileName); }
};

class ReencryptModes : public ::testing::TestWithParam<KeyMode> {};

TEST_P(ReencryptModes, ACrashMidStepIsUndoneFromTheJournalAndTheRunFinishes) {
  ReencryptVault v(GetParam());
  const std::string path = v.backing + "/d/f";
  auto posix = PosixBackingFile::open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(posix.ok());
  auto cut = std::make_shared<CutBacking>(std::shared_ptr<BackingFile>(std::move(*posix)));
  auto f = v.vault->create_file(cut);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const Bytes model = pattern(40000, 1);
  ASSERT_TRUE((*f)->write(model, 0).ok());
  ASSERT_TRUE(v.vault->begin_reencrypt(**f, v.run).ok());
  ReencryptJournal j = v.journal();
  ASSERT_TRUE((*f)->reencrypt_step(j, "d/f", 2).ok());  // blocks 0, 1 committed
  cut->cut = true;
  auto p = (*f)->reencrypt_step(j, "d/f", 2);  // blocks 2, 3 written, watermark not
  ASSERT_FALSE(p.ok());
  f->reset();
  // The crash also tore block 3 half-way: it opens under neither key now.
  const uint64_t b3 = 4096 + 3 * (4096 + 28);
  {
    auto raw = PosixBackingFile::open(path, O_RDWR);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE((*raw)->write_at(Bytes(2000, 0x5a), b3 + 1000).ok());
  }
  std::filesystem::rename(path, v.backing + "/moved");  // the journal's path is a hint only

  auto done = recover_reencryption(v.backing);
  ASSERT_TRUE(done.ok()) << done.status().message();
  EXPECT_NE(done->find("restored blocks 2..3"), std::string::npos) << *done;
  EXPECT_NE(done->find("moved"), std::string::npos) << *done;
  EXPECT_EQ(*recover_reencryption(v.backing), "") << "the journal is empty afterwards";

  auto again = v.vault->open_file(v.backing + "/moved", true);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE((*again)->reencrypting());
  EXPECT_EQ(v.read(**again), model);
  for (;;) {
    auto s = (*again)->reencrypt_step(j, "moved", 3);
    ASSERT_TRUE(s.ok()) << s.status().message();
    if (s->finished) break;
  }
  again->reset();
  auto fresh = v.vault->open_file(v.backing + "/moved", false);
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  EXPECT_FALSE((*fresh)->reencrypting());
  EXPECT_EQ(v.read(**fresh), model);
  const FileHeader h = (*fresh)->header();
  EXPECT_EQ(h.slots[h.active_slot()]->dek_run, v.run);
}

TEST_P(ReencryptModes, ACommittedStepIsNotUndone) {
  ReencryptVault v(GetParam());
  auto f = v.vault->create_file(v.backing + "/d/g", 0600);
  ASSERT_TRUE(f.ok());
  const Bytes model = pattern(30000, 2);
  ASSERT_TRUE((*f)->write(model, 0).ok());
  const Bytes old_wrap = (*f)->header().slots[0]->wrapped_dek;
  ASSERT_TRUE(v.vault->begin_reencrypt(**f, v.run).ok());
  ReencryptJournal j = v.journal();
  ASSERT_TRUE((*f)->reencrypt_step(j, "d/g", 4).ok());
  f->reset();
  // The journal still holds the committed step: recovery must leave those blocks alone
  // (putting back old-key blocks under the new watermark would lose them at the end).
  EXPECT_EQ(*recover_reencryption(v.backing), "");
  auto again = v.vault->open_file(v.backing + "/d/g", true);
  ASSERT_TRUE(again.ok()) << again.status().message();
  for (;;) {
    auto s = (*again)->reencrypt_step(j, "d/g", 100);
    ASSERT_TRUE(s.ok()) << s.status().message();
    if (s->finished) break;
  }
  again->reset();
  auto fresh = v.vault->open_file(v.backing + "/d/g", false);
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  EXPECT_EQ(v.read(**fresh), model);
  EXPECT_NE((*fresh)->header().slots[0]->wrapped_dek, old_wrap);
}

TEST(Reencrypt, FilesCreatedDuringARunAreMarkedAsBornInIt) {
  ReencryptVault v;
  v.vault->set_reencrypt_run(v.run);
  auto f = v.vault->create_file(v.backing + "/d/new", 0600);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->header().slots[0]->dek_run, v.run);
  v.vault->set_reencrypt_run(std::nullopt);
  auto g = v.vault->create_file(v.backing + "/d/newer", 0600);
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE((*g)->header().slots[0]->dek_run);
}

// The journal is in the backing directory, so its path is attacker-written: an entry that
// points outside the vault (by "..", or through a symlink planted in the vault) at a file
// with the journaled id and state must not be written to. Recovery finds no such file in
// the vault and touches nothing.
TEST_P(ReencryptModes, AJournalPathOutsideTheVaultIsNeverFollowed) {
  for (const bool by_symlink : {false, true}) {
    SCOPED_TRACE(by_symlink ? "symlink in the vault" : "'..' in the path");
    ReencryptVault v(GetParam());
    const std::string path = v.backing + "/d/f";
    auto posix = PosixBackingFile::open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_TRUE(posix.ok());
    auto cut = std::make_shared<CutBacking>(std::shared_ptr<BackingFile>(std::move(*posix)));
    auto f = v.vault->create_file(cut);
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_TRUE((*f)->write(pattern(40000, 2), 0).ok());
    ASSERT_TRUE(v.vault->begin_reencrypt(**f, v.run).ok());
    ReencryptJournal j = v.journal();
    cut->cut = true;
    ASSERT_FALSE((*f)->reencrypt_step(j, "d/f", 2).ok());
    f->reset();
    // The file leaves the vault (another vault's file, as far as recovery can tell).
    const std::string outside = v.backing + ".outside";
    std::filesystem::remove_all(outside);
    std::filesystem::create_directories(outside);
    std::filesystem::rename(path, outside + "/f");
    auto e = j.load();
    ASSERT_TRUE(e.ok() && e->has_value());
    if (by_symlink) {
      std::filesystem::create_directory_symlink(outside, v.backing + "/link");
      (*e)->path = "link/f";
    } else {
      (*e)->path = "../" + std::filesystem::path(outside).filename().string() + "/f";
    }
    ASSERT_TRUE(j.save(**e).ok());
    const std::string before = [&] {
      std::ifstream in(outside + "/f", std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    }();

    auto done = recover_reencryption(v.backing);
    ASSERT_TRUE(done.ok()) << done.status().message();
    EXPECT_NE(done->find("is gone; nothing to restore"), std::string::npos) << *done;
    std::ifstream in(outside + "/f", std::ios::binary);
    EXPECT_TRUE(std::string(std::istreambuf_iterator<char>(in), {}) == before) << "a file outside the vault was written";
    std::filesystem::remove_all(outside);
  }
}

INSTANTIATE_TEST_SUITE_P(KeyModes, ReencryptModes, ::testing::Values(KeyMode::kPerFile, KeyMode::kIntermediate),
                         [](const auto& i) { return i.param == KeyMode::kPerFile ? "PerFile" : "Intermediate"; });

}  // namespace
}  // namespace kmsfs::testing
