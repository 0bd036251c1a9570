#include "keys/keyring/timestamp.h"

#include <ctime>

namespace kmsfs {

std::string rfc3339_utc_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

bool valid_rfc3339_utc(std::string_view s) noexcept {
  // YYYY-MM-DDTHH:MM:SSZ
  static constexpr std::string_view kPattern = "dddd-dd-ddTdd:dd:ddZ";
  if (s.size() != kPattern.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (kPattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != kPattern[i]) return false;
  }
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = 0; i < len; ++i) v = v * 10 + (s[pos + i] - '0');
    return v;
  };
  int month = num(5, 2), day = num(8, 2), hour = num(11, 2), minute = num(14, 2),
      second = num(17, 2);
  // Leap seconds are legal in RFC 3339; day-of-month is not checked against the month
  // because nothing depends on it.
  return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 &&
         second <= 60;
}

}  // namespace kmsfs
