// The rotation worker over a whole vault: the tree, the filesystem key and the key of
// new files move; damaged files are reported, not fatal; progress survives a stop;
// pause, resume and cancel; an unreachable provider makes it wait, not fail.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "base/file_io.h"
#include "counted_vault.h"
#include "format/header.h"
#include "rotation/rotation_worker.h"
#include "vault/vault_lock.h"

namespace kmsfs {
namespace {

using namespace std::chrono_literals;
using testing::CountedVault;

const KeyRef kV2{ProviderId::kKeyring, "main", 2};

Bytes content_of(int i) { return Bytes(100 + i, static_cast<uint8_t>(i)); }

std::string rel(int i) { return "d" + std::to_string(i % 7) + "/f" + std::to_string(i); }

void make_tree(CountedVault& cv, Vault& v, int n) {
  for (int d = 0; d < 7; ++d) std::filesystem::create_directories(cv.backing + "/d" + std::to_string(d));
  for (int i = 0; i < n; ++i) {
    auto f = v.create_file(cv.backing + "/" + rel(i), 0600);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->write(content_of(i), 0).ok());
  }
}

bool under(const std::string& path, const KeyRef& k) {
  auto raw = read_file(path, 1 << 20);
  if (!raw.ok()) return false;
  auto h = parse_header(*raw);
  return h.ok() && h->slots[0] && h->slots[1] && h->slots[0]->key == k && h->slots[1]->key == k;
}

int count_under(CountedVault& cv, int n, const KeyRef& k) {
  int c = 0;
  for (int i = 0; i < n; ++i) c += under(cv.backing + "/" + rel(i), k);
  return c;
}


TEST(RotationWorker, MovesTheTreeTheFilesystemKeyAndNewFilesAndReportsDamage) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 200);
  std::ofstream(cv.backing + "/d0/not-kmsfs") << "plain bytes";
  {  // a damaged header: both slots torn
    auto raw = read_file(cv.backing + "/" + rel(5), 1 << 20).value();
    raw[header::kSlotOffset[0] + 30] ^= 4;
    raw[header::kSlotOffset[1] + 30] ^= 4;
    ASSERT_TRUE(write_file_atomic(cv.backing + "/" + rel(5), raw, 0600).ok());
  }
  cv.rotate_key();
  RotationWorker w(*v);
  ASSERT_TRUE(w.start({"main", 0, 0, false}).ok());
  const RotationStatus end = w.wait();
  EXPECT_EQ(end.state.phase, RotationPhase::kDone) << end.state.message;
  EXPECT_EQ(end.state.rotated, 199u);
  EXPECT_EQ(end.state.failed, 1u);
  EXPECT_EQ(end.state.skipped, 1u);  // the foreign file
  EXPECT_EQ(end.state.pass, 2u);     // the second pass found nothing left
  ASSERT_EQ(end.state.errors.size(), 1u);
  EXPECT_EQ(end.state.errors[0].path, rel(5));
  EXPECT_EQ(count_under(cv, 200, kV2), 199);

  // Checkpointed as done; the config names the target for the filesystem key.
  auto saved = load_rotation_state(cv.backing);
  ASSERT_TRUE(saved.ok() && *saved);
  EXPECT_EQ((*saved)->phase, RotationPhase::kDone);
  EXPECT_EQ((*saved)->target, kV2.to_string());
  cv.disable_version(1);
  auto reopened = Vault::open_unanchored(cv.backing, cv.providers);
  ASSERT_TRUE(reopened.ok()) << reopened.status().message();
  EXPECT_EQ((*reopened)->fs_key_ref(), kV2);
  for (int i : {0, 50, 199}) {
    auto f = (*reopened)->open_file(cv.backing + "/" + rel(i), false);
    ASSERT_TRUE(f.ok()) << f.status().message();
    Bytes got(content_of(i).size());
    ASSERT_EQ(*(*f)->read(got, 0), got.size());
    EXPECT_EQ(got, content_of(i));
  }
  // New files are born under the target.
  auto nf = (*reopened)->create_file(cv.backing + "/new", 0600);
  ASSERT_TRUE(nf.ok()) << nf.status().message();
  EXPECT_TRUE(under(cv.backing + "/new", kV2));
}

TEST(RotationWorker, AStoppedRunContinuesFromItsCheckpoint) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 300);
  cv.rotate_key();
  {
    RotationWorker w(*v);
    ASSERT_TRUE(w.start({"main", 200, 0, false}).ok());
    std::this_thread::sleep_for(600ms);
  }  // the daemon goes away mid-run
  auto saved = load_rotation_state(cv.backing);
  ASSERT_TRUE(saved.ok() && *saved);
  EXPECT_EQ((*saved)->phase, RotationPhase::kRunning);
  EXPECT_FALSE((*saved)->cursor.empty());
  const int moved = count_under(cv, 300, kV2);
  EXPECT_GT(moved, 0);
  EXPECT_LT(moved, 300);

  auto v2 = Vault::open_unanchored(cv.backing, cv.providers);
  ASSERT_TRUE(v2.ok());
  const int rewraps_before = cv.counter->rewraps;
  RotationWorker w(**v2);
  ASSERT_TRUE(w.resume_saved().ok());
  const RotationStatus end = w.wait();
  EXPECT_EQ(end.state.phase, RotationPhase::kDone);
  EXPECT_EQ(count_under(cv, 300, kV2), 300);
  // Only what was left (plus the few done after the last checkpoint, seen as "already").
  EXPECT_LE(cv.counter->rewraps - rewraps_before, 300 - moved);
}

TEST(RotationWorker, PauseResumeCancelAndOneRunAtATime) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 150);
  cv.rotate_key();
  RotationWorker w(*v);
  ASSERT_TRUE(w.start({"main", 100, 0, false}).ok());
  EXPECT_EQ(w.start({"main", 100, 0, false}).code(), Code::kAlreadyExists);
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(w.pause().ok());
  EXPECT_EQ(w.wait().state.phase, RotationPhase::kPaused);
  const uint64_t seen = w.status()->state.seen;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(w.status()->state.seen, seen);
  EXPECT_EQ(load_rotation_state(cv.backing)->value().phase, RotationPhase::kPaused);
  ASSERT_TRUE(w.resume().ok());
  // Progress within a few seconds, however slow the machine's fdatasync is under load.
  for (int i = 0; i < 100 && w.status()->state.seen <= seen; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_GT(w.status()->state.seen, seen);
  ASSERT_TRUE(w.cancel().ok());
  EXPECT_EQ(w.status()->state.phase, RotationPhase::kCancelled);
  EXPECT_EQ(load_rotation_state(cv.backing)->value().phase, RotationPhase::kCancelled);
  EXPECT_LT(count_under(cv, 150, kV2), 150);
  // A cancelled run can be followed by another, which finishes the job.
  ASSERT_TRUE(w.start({"main", 0, 0, false}).ok());
  EXPECT_EQ(w.wait().state.phase, RotationPhase::kDone);
  EXPECT_EQ(count_under(cv, 150, kV2), 150);
}

TEST(RotationWorker, AnUnreachableProviderMakesItWaitAndRetryNotFail) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 20);
  cv.rotate_key();
  RotationWorker w(*v);
  ASSERT_TRUE(w.start({"main", 0, 0, false}).ok());  // the filesystem key moves first
  cv.counter->fail = true;
  std::this_thread::sleep_for(1200ms);
  auto mid = w.status();
  ASSERT_TRUE(mid.ok());
  EXPECT_EQ(mid->state.phase, RotationPhase::kRunning);
  EXPECT_NE(mid->state.message.find("waiting for the key provider"), std::string::npos) << mid->state.message;
  EXPECT_EQ(mid->state.failed, 0u);
  cv.counter->fail = false;
  const RotationStatus end = w.wait();
  EXPECT_EQ(end.state.phase, RotationPhase::kDone);
  EXPECT_EQ(end.state.failed, 0u);
  EXPECT_EQ(count_under(cv, 20, kV2), 20);
}

// A file the provider cannot serve now (throttled) is set aside and tried again later
// while the walk moves on; the run ends with it moved too, and nothing failed.
TEST(RotationWorker, AThrottledFileIsDeferredWhileTheOthersMoveOn) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 30);
  cv.rotate_key();
  auto raw = read_file(cv.backing + "/" + rel(0), 1 << 20);  // d0/f0: first in walk order
  ASSERT_TRUE(raw.ok());
  auto h = parse_header(*raw);
  ASSERT_TRUE(h.ok());
  const std::string first = to_hex(h->file_id);
  {
    std::lock_guard g(cv.counter->log_mu);
    cv.counter->throttle_once_file = first;
  }
  RotationWorker w(*v);
  ASSERT_TRUE(w.start({"main", 0, 0, false}).ok());
  const RotationStatus end = w.wait();
  EXPECT_EQ(end.state.phase, RotationPhase::kDone) << end.state.message;
  EXPECT_EQ(end.state.failed, 0u);
  EXPECT_EQ(count_under(cv, 30, kV2), 30);
  std::lock_guard g(cv.counter->log_mu);
  const auto& log = cv.counter->rewrap_log;
  auto refused = std::find(log.begin(), log.end(), std::make_pair(first, false));
  ASSERT_NE(refused, log.end());
  auto moved = std::find(refused + 1, log.end(), std::make_pair(first, true));
  ASSERT_NE(moved, log.end()) << "the deferred file was never moved";
  // Other files moved between the refusal and the retry: the walk did not wait for it.
  EXPECT_GE(std::count_if(refused + 1, moved, [&](const auto& e) { return e.second && e.first != first; }), 20);
}

TEST(RotationWorker, SeesAKeyringVersionAddedOnDiskAfterTheVaultWasOpened) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 3);
  {  // `kmsfs keyring rotate` from another process
    auto other = Keyring::open(cv.tmp.str("keyring"), nullptr);
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(other->rotate("main").ok());
    ASSERT_TRUE(other->save().ok());
  }
  RotationWorker w(*v);
  ASSERT_TRUE(w.start({"main", 0, 0, false}).ok());
  const RotationStatus end = w.wait();
  EXPECT_EQ(end.state.target, kV2.to_string());
  EXPECT_EQ(count_under(cv, 3, kV2), 3);
}

// Whether a run needs another pass is a property of the whole pass, not of the part after
// a restart. Here pass 1 misses a file (renamed behind the walk; a file created under the
// old key while the switch was under way is missed the same way), and the daemon goes
// away (unmount, crash, power cut: the checkpoint may lag, which leaves the same state)
// when the walk has moved every old file and only visits files born under the target.
// The resumed pass 1 moves nothing; the run must still make the pass that finds the
// missed file, not end "done" with it under the old key.
TEST(RotationWorker, AResumedPassThatMovesNothingStillLeadsToTheNextPass) {
  CountedVault cv;
  auto v = cv.init(KeyMode::kPerFile);
  make_tree(cv, *v, 49);
  cv.rotate_key();
  {
    RotationWorker w(*v);
    ASSERT_TRUE(w.start({"main", 60, 0, false}).ok());
    // The rename below must land behind the walk: wait until it is in d0 (a slow thread
    // start would otherwise list the root after the rename).
    const auto started = std::chrono::steady_clock::now() + 10s;
    while (w.status()->state.cursor.rfind("d0/", 0) != 0 && std::chrono::steady_clock::now() < started)
      std::this_thread::sleep_for(1ms);
    ASSERT_EQ(w.status()->state.cursor.rfind("d0/", 0), 0u) << w.status()->state.cursor;
    // Born under the target, listed when the walk reaches d6: the end of pass 1.
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(v->create_file(cv.backing + "/d6/zz" + std::to_string(i), 0600).ok());
    // Not yet visited (the walk is in d0), moved to where the walk has been.
    ASSERT_EQ(::rename((cv.backing + "/" + rel(6)).c_str(), (cv.backing + "/0moved").c_str()), 0);
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (w.status()->state.cursor.rfind("d6/zz", 0) != 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(2ms);
  }  // the daemon goes away
  auto saved = load_rotation_state(cv.backing);
  ASSERT_TRUE(saved.ok() && *saved);
  ASSERT_EQ((*saved)->phase, RotationPhase::kRunning);
  ASSERT_EQ((*saved)->pass, 1u);
  ASSERT_EQ((*saved)->cursor.rfind("d6/zz", 0), 0u) << (*saved)->cursor;
  EXPECT_FALSE(under(cv.backing + "/0moved", kV2));

  auto v2 = Vault::open_unanchored(cv.backing, cv.providers);
  ASSERT_TRUE(v2.ok());
  RotationWorker w(**v2);
  ASSERT_TRUE(w.resume_saved().ok());
  const RotationStatus end = w.wait();
  EXPECT_EQ(end.state.phase, RotationPhase::kDone);
  EXPECT_EQ(end.state.failed, 0u);
  EXPECT_GE(end.state.pass, 2u);
  EXPECT_TRUE(under(cv.backing + "/0moved", kV2)) << "the run ended in pass " << end.state.pass
                                                  << " with a file still under the old key";
}

TEST(VaultLock, ASecondHolderIsToldWhoHasTheVault) {
  testing::TempDir t;
  auto first = VaultLock::acquire(t.str(), "a kmsfs mount at /mnt/x");
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = VaultLock::acquire(t.str(), "kmsfs rotate --offline");
  EXPECT_EQ(second.status().code(), Code::kAlreadyExists);
  EXPECT_NE(second.status().message().find("a kmsfs mount at /mnt/x (pid "), std::string::npos)
      << second.status().message();
}

}  // namespace
}  // namespace kmsfs
