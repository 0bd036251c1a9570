// Hex test vectors as bytes; a malformed vector fails the test that uses it.
#pragma once

#include <gtest/gtest.h>

#include <string_view>

#include "base/bytes.h"

namespace kmsfs::testing {

inline Bytes unhex(std::string_view h) {
  Bytes b;
  EXPECT_TRUE(from_hex(h, b)) << h;
  return b;
}

}  // namespace kmsfs::testing
