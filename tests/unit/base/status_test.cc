#include "base/status.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace kmsfs {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return Status(Code::kInvalidArgument, "not positive");
  return v;
}

Status doubled(int v, int& out) {
  ASSIGN_OR_RETURN(int x, parse_positive(v));
  out = 2 * x;
  return Status::Ok();
}

TEST(Status, IoCarriesErrnoAndText) {
  Status s = Status::Io(ENOENT, "open /x");
  EXPECT_EQ(s.code(), Code::kIo);
  EXPECT_EQ(s.sys_errno(), ENOENT);
  EXPECT_EQ(s.message(), "open /x: No such file or directory");
  Status c = s.with_context("reading header");
  EXPECT_EQ(c.sys_errno(), ENOENT);
  EXPECT_EQ(c.message(), "reading header: open /x: No such file or directory");
}

TEST(Status, MacrosPropagate) {
  int out = 0;
  EXPECT_TRUE(doubled(4, out).ok());
  EXPECT_EQ(out, 8);
  Status s = doubled(-1, out);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(out, 8);
}

}  // namespace
}  // namespace kmsfs
