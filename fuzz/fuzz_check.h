// What every fuzz target shares: an oracle failure is a crash with a message (libFuzzer
// saves the input that caused it), and a reader that splits one input into several.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>

#include "base/bytes.h"

#define FUZZ_CHECK(cond, what)                                                   \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "oracle failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, \
                   #cond, std::string(what).c_str());                            \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

namespace kmsfs::fuzz {

// Consumes a fuzz input front to back: a byte, a length-prefixed piece, the rest.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  uint8_t byte() {
    if (left_ == 0) return 0;
    --left_;
    return *p_++;
  }
  // Up to `max` bytes, the length taken from the next byte (scaled), so the fuzzer can
  // move the boundary between pieces.
  std::string piece(size_t max = 255) {
    size_t n = byte();
    if (max > 255) n = n * max / 255;
    if (n > left_) n = left_;
    if (n > max) n = max;
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    left_ -= n;
    return s;
  }
  std::string rest() {
    std::string s(reinterpret_cast<const char*>(p_), left_);
    p_ += left_;
    left_ = 0;
    return s;
  }
  size_t left() const { return left_; }

 private:
  const uint8_t* p_;
  size_t left_;
};

// Seeds: each target writes its own valid inputs (made with the library's encoders, so
// they stay valid as the format grows) when run with KMSFS_FUZZ_SEEDS=DIR, then exits.
// scripts/fuzz.sh does that before fuzzing; no binary corpus is committed.
using SeedWriter = std::function<void(const std::string& name, std::string_view bytes)>;
void write_seeds(const SeedWriter& out);  // defined by each target

// A file of tests/fixtures (the committed v1 vaults and keyrings), at most `max` bytes.
inline std::string read_fixture(const std::string& rel, size_t max = size_t{1} << 20) {
  std::ifstream f(std::string(KMSFS_SOURCE_DIR) + "/tests/fixtures/" + rel, std::ios::binary);
  std::string s(max, '\0');
  f.read(s.data(), static_cast<std::streamsize>(max));
  s.resize(static_cast<size_t>(f.gcount()));
  FUZZ_CHECK(!s.empty(), "fixture " + rel);
  return s;
}

}  // namespace kmsfs::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("KMSFS_FUZZ_SEEDS")) {
    int n = 0;
    kmsfs::fuzz::write_seeds([&](const std::string& name, std::string_view bytes) {
      std::ofstream f(std::string(dir) + "/" + name, std::ios::binary | std::ios::trunc);
      f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      FUZZ_CHECK(f.good(), "writing seed " + name);
      ++n;
    });
    std::fprintf(stderr, "%d seeds written to %s\n", n, dir);
    std::exit(0);
  }
  return 0;
}
