#include "format/file_state.h"

#include <gtest/gtest.h>

namespace kmsfs {
namespace {

TEST(SparseMap, AddMergesAndCaps) {
  SparseMap m;
  m.add({10, 20});
  m.add({30, 40});
  m.add({20, 30});  // adjacent on both sides: one range
  ASSERT_EQ(m.ranges().size(), 1u);
  EXPECT_EQ(m.ranges()[0], (BlockRange{10, 40}));
  EXPECT_TRUE(m.contains(10));
  EXPECT_TRUE(m.contains(39));
  EXPECT_FALSE(m.contains(40));
  EXPECT_FALSE(m.contains(9));
  SparseMap many;
  for (uint64_t i = 0; i < 40; ++i) many.add({i * 100, i * 100 + 10 + (i == 5 ? 85 : 0)});
  EXPECT_LE(many.ranges().size(), SparseMap::kMaxRanges);
  // Every hole that was added is still a hole (merging only ever adds tolerance).
  for (uint64_t i = 0; i < 40; ++i) EXPECT_TRUE(many.contains(i * 100 + 3));
}

TEST(SparseMap, Clip) {
  SparseMap m;
  m.add({10, 20});
  m.add({30, 40});
  m.clip(35);
  ASSERT_EQ(m.ranges().size(), 2u);
  EXPECT_EQ(m.ranges()[1], (BlockRange{30, 35}));
  m.clip(15);
  ASSERT_EQ(m.ranges().size(), 1u);
  EXPECT_EQ(m.ranges()[0], (BlockRange{10, 15}));
  m.clip(5);
  EXPECT_TRUE(m.empty());
}

TEST(FileState, MacBindsRangesGenerationAndFile) {
  Bytes key(32, 7);
  FileId id{};
  id[0] = 1;
  SparseMap m;
  m.add({5, 1000});
  auto s = seal_file_state(3, m, id, key);
  EXPECT_TRUE(open_file_state(s, id, key).ok());
  auto bad = s;
  bad.ranges[0].end = 2000;
  EXPECT_EQ(open_file_state(bad, id, key).status().code(), Code::kCorrupt);
  bad = s;
  bad.generation = 4;
  EXPECT_EQ(open_file_state(bad, id, key).status().code(), Code::kCorrupt);
  FileId other = id;
  other[0] = 2;
  EXPECT_EQ(open_file_state(s, other, key).status().code(), Code::kCorrupt);
}

}  // namespace
}  // namespace kmsfs
