// The one timestamp form in keyring metadata: RFC 3339, UTC, whole seconds
// ("2024-05-01T12:00:00Z"). One form only, so validation can be exact.
#pragma once

#include <string>
#include <string_view>

namespace kmsfs {

std::string rfc3339_utc_now();
bool valid_rfc3339_utc(std::string_view s) noexcept;

}  // namespace kmsfs
