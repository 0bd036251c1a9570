// Model-based property test: random writes, truncates and reopens on a CryptFile must
// give exactly what the same operations give on a plain byte vector.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "format_fixture.h"

namespace kmsfs {
namespace {

using testing::pattern;
using testing::TestFile;

struct Op {
  enum Kind { kWrite, kTruncate, kReopen, kRead } kind;
  uint64_t off;
  uint64_t len;
};

rc::Gen<Op> gen_op(uint64_t max_off) {
  return rc::gen::apply(
      [](int k, uint64_t off, uint64_t len) {
        return Op{static_cast<Op::Kind>(k), off, len};
      },
      rc::gen::weightedElement<int>({{6, Op::kWrite}, {2, Op::kTruncate}, {1, Op::kReopen}, {3, Op::kRead}}),
      rc::gen::inRange<uint64_t>(0, max_off), rc::gen::inRange<uint64_t>(0, 20000));
}

void run_model(CipherId cipher, uint32_t block_size, uint64_t max_off, uint64_t gap_limit) {
  auto ops = *rc::gen::container<std::vector<Op>>(gen_op(max_off));
  CryptFile::Options opts;
  opts.sealed_gap_limit = gap_limit;
  TestFile t(cipher, block_size, opts);
  Bytes model;
  uint64_t seed = 1;
  for (const Op& op : ops) {
    switch (op.kind) {
      case Op::kWrite: {
        Bytes d = pattern(op.len, seed++);
        RC_ASSERT(t.file->write(d, op.off).ok());
        if (!d.empty()) {
          if (model.size() < op.off + d.size()) model.resize(op.off + d.size(), 0);
          std::copy(d.begin(), d.end(), model.begin() + op.off);
        }
        break;
      }
      case Op::kTruncate:
        RC_ASSERT(t.file->truncate(op.off).ok());
        model.resize(op.off, 0);
        break;
      case Op::kReopen: {
        auto f = t.reopen(opts);
        RC_ASSERT(f.ok());
        t.file = std::move(*f);
        break;
      }
      case Op::kRead: {
        Bytes out(op.len);
        auto n = t.file->read(out, op.off);
        RC_ASSERT(n.ok());
        uint64_t want = op.off >= model.size() ? 0 : std::min<uint64_t>(op.len, model.size() - op.off);
        RC_ASSERT(*n == want);
        RC_ASSERT(std::equal(out.begin(), out.begin() + want, model.begin() + std::min<uint64_t>(op.off, model.size())));
        break;
      }
    }
    RC_ASSERT(t.file->size() == model.size());
  }
  auto f = t.reopen(opts);
  RC_ASSERT(f.ok());
  Bytes all(model.size());
  auto n = (*f)->read(all, 0);
  RC_ASSERT(n.ok());
  RC_ASSERT(*n == model.size());
  RC_ASSERT(all == model);
  const Layout layout{4096, block_size, 40};
  RC_ASSERT(*t.backing->size() == layout.ciphertext_size(model.size()));
}

RC_GTEST_PROP(CryptFileModel, AesGcm4KiB, ()) { run_model(CipherId::kAes256Gcm, 4096, 200000, 1 << 20); }
RC_GTEST_PROP(CryptFileModel, XChaCha1KiB, ()) { run_model(CipherId::kXChaCha20Poly1305, 1024, 100000, 1 << 20); }
// A tiny gap limit turns most gaps into authenticated holes, to exercise the sparse path.
RC_GTEST_PROP(CryptFileModel, HolesEverywhere, ()) { run_model(CipherId::kAes256Gcm, 1024, 300000, 0); }

}  // namespace
}  // namespace kmsfs
