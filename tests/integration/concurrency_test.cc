// Concurrent I/O through the mount: threads sharing one file (disjoint, unaligned
// regions, so neighbours share blocks), threads on their own files, and O_APPEND from
// several threads. With and without the writeback cache: without it every write is a
// daemon request, so the daemon's own locking is what keeps the bytes right.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "posix_util.h"

namespace kmsfs::testing {
namespace {

class Concurrency : public ::testing::TestWithParam<bool> {
 protected:
  VaultOptions opts() const { return GetParam() ? VaultOptions{} : no_writeback(); }
};
INSTANTIATE_TEST_SUITE_P(Cache, Concurrency, ::testing::Values(true, false),
                         [](const auto& tp) { return tp.param ? "Writeback" : "NoWriteback"; });

// Runs fn(i) on n threads; exceptions become test failures.
void run_threads(int n, const std::function<void(int)>& fn) {
  std::vector<std::thread> ts;
  std::mutex mu;
  std::vector<std::string> errors;
  for (int i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      try {
        fn(i);
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        errors.push_back("thread " + std::to_string(i) + ": " + e.what());
      }
    });
  for (auto& t : ts) t.join();
  for (const auto& e : errors) ADD_FAILURE() << e;
}

TEST_P(Concurrency, DisjointUnalignedRegionsOfOneFileWithReaders) {
  PosixVault v(opts());
  constexpr int kWriters = 8;
  constexpr size_t kRegion = 300007;  // not a multiple of anything; > 1 MiB gaps appear
  const std::string expect = pattern(kWriters * kRegion, 51);
  const std::string path = v.at("shared");
  Fd(path, O_CREAT | O_WRONLY, 0644);

  std::atomic<int> writers_left{kWriters};
  std::atomic<long> reads{0};
  auto writer = [&](int k) {
    Fd fd(path, O_WRONLY);
    if (!fd.ok()) throw std::runtime_error("open: " + err_str(errno));
    // The region in random-size chunks, in random order: each byte written once.
    std::mt19937_64 rng(static_cast<uint64_t>(k) + 1);
    std::vector<std::pair<size_t, size_t>> chunks;
    for (size_t off = 0; off < kRegion;) {
      size_t len = std::min<size_t>(1 + rng() % 6000, kRegion - off);
      chunks.emplace_back(k * kRegion + off, len);
      off += len;
    }
    std::shuffle(chunks.begin(), chunks.end(), rng);
    for (auto [off, len] : chunks) pwrite_str(fd.get(), expect.substr(off, len), static_cast<off_t>(off));
    writers_left--;
  };
  auto reader = [&](int k) {
    Fd fd(path, O_RDONLY);
    std::mt19937_64 rng(static_cast<uint64_t>(k) + 100);
    while (writers_left > 0) {
      const size_t off = rng() % expect.size();
      const std::string got = pread_str(fd.get(), 1 + rng() % 20000, static_cast<off_t>(off));
      // Every byte is either not written yet (zero) or its final value.
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != 0 && got[i] != expect[off + i])
          throw std::runtime_error("reader saw a wrong byte at " + std::to_string(off + i));
      reads++;
    }
  };
  run_threads(kWriters + 2, [&](int i) { i < kWriters ? writer(i) : reader(i); });
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(file_size(path), static_cast<off_t>(expect.size()));
  EXPECT_SAME_BYTES(read_file(path), expect);
  v.remount();
  EXPECT_SAME_BYTES(read_file(path), expect);
}

TEST_P(Concurrency, EightThreadsEightFiles) {
  PosixVault v(opts());
  constexpr int kThreads = 8;
  std::vector<std::string> finals(kThreads);
  run_threads(kThreads, [&](int k) {
    const std::string path = v.at("file" + std::to_string(k));
    Fd fd(path, O_CREAT | O_RDWR, 0644);
    std::mt19937_64 rng(static_cast<uint64_t>(k) + 7);
    std::string model;
    for (int i = 0; i < 200; ++i) {
      const size_t len = 1 + rng() % 10000;
      const size_t off = rng() % (model.size() + 1);
      const std::string data = pattern(len, static_cast<uint64_t>(k * 1000 + i));
      pwrite_str(fd.get(), data, static_cast<off_t>(off));
      if (model.size() < off + len) model.resize(off + len, '\0');
      model.replace(off, len, data);
    }
    if (pread_str(fd.get(), model.size() + 1, 0) != model) throw std::runtime_error("read-back mismatch");
    if (fd.close() != 0) throw std::runtime_error("close: " + err_str(errno));
    finals[static_cast<size_t>(k)] = model;
  });
  for (int k = 0; k < kThreads; ++k) EXPECT_SAME_BYTES(read_file(v.at("file" + std::to_string(k))), finals[static_cast<size_t>(k)]);
  v.remount();
  for (int k = 0; k < kThreads; ++k) EXPECT_SAME_BYTES(read_file(v.at("file" + std::to_string(k))), finals[static_cast<size_t>(k)]);
}

TEST_P(Concurrency, SmallAppendsFromFourThreads) {
  PosixVault v(opts());
  constexpr int kThreads = 4, kRecords = 1500;
  const std::string path = v.at("log");
  Fd(path, O_CREAT | O_WRONLY, 0644);
  std::atomic<size_t> total{0};
  run_threads(kThreads, [&](int t) {
    Fd fd(path, O_WRONLY | O_APPEND);
    if (!fd.ok()) throw std::runtime_error("open: " + err_str(errno));
    for (int i = 0; i < kRecords; ++i) {
      // One write(2) per record, so records never interleave inside.
      std::string rec = std::to_string(t) + ":" + std::to_string(i) + ":" + std::string(static_cast<size_t>((i * 7 + t) % 90), 'a' + static_cast<char>(t)) + "\n";
      ssize_t n = ::write(fd.get(), rec.data(), rec.size());
      if (n != static_cast<ssize_t>(rec.size())) throw std::runtime_error("short or failed append: " + err_str(errno));
      total += rec.size();
    }
  });
  auto check = [&] {
    const std::string got = read_file(path);
    EXPECT_EQ(got.size(), total.load());
    std::vector<int> next(kThreads, 0);
    size_t pos = 0, records = 0;
    while (pos < got.size()) {
      size_t nl = got.find('\n', pos);
      ASSERT_NE(nl, std::string::npos) << "torn record at " << pos;
      const std::string rec = got.substr(pos, nl - pos);
      int t = -1, i = -1, consumed = 0;
      ASSERT_EQ(std::sscanf(rec.c_str(), "%d:%d:%n", &t, &i, &consumed), 2) << "garbage at " << pos << ": " << rec.substr(0, 40);
      ASSERT_TRUE(t >= 0 && t < kThreads) << rec;
      EXPECT_EQ(i, next[static_cast<size_t>(t)]) << "thread " << t << " records out of order or lost";
      next[static_cast<size_t>(t)] = i + 1;
      EXPECT_EQ(rec.substr(static_cast<size_t>(consumed)), std::string(static_cast<size_t>((i * 7 + t) % 90), 'a' + static_cast<char>(t)));
      pos = nl + 1;
      records++;
    }
    EXPECT_EQ(records, static_cast<size_t>(kThreads * kRecords));
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[static_cast<size_t>(t)], kRecords);
  };
  check();
  v.remount();
  check();
}

}  // namespace
}  // namespace kmsfs::testing
