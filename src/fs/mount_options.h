// The mount options: what `kmsfs mount -o` takes, and the one string libfuse is given.
// libfuse splits that string at commas and un-escapes backslashes, so every piece that
// goes in (the backing path in fsname=, each option) is escaped: a comma in a backing
// path must not become an option of its own, a backslash must reach the kernel as typed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kmsfs {

// Splits "a,b=\"x,y\",c" at the commas outside double quotes and drops the quotes (what
// util-linux does for SELinux contexts): {"a", "b=x,y", "c"}; empty items are dropped.
std::vector<std::string> split_mount_options(std::string_view list);

// The -o values as given (each split as above), one option each.
std::vector<std::string> split_mount_options(const std::vector<std::string>& raw);

// "fsname=kmsfs:<backing>,subtype=kmsfs,<options...>", escaped for libfuse, with
// default_permissions added when allow_other is given without it (a daemon that lets
// every user in must let the kernel check permissions).
std::string fuse_option_string(const std::string& backing, const std::vector<std::string>& options);

}  // namespace kmsfs
