// Mount options (fs/mount_options): the -o values an operator (or an fstab line, or a
// systemd unit written by a tool) gives, and the backing path, joined into the one
// string libfuse parses. Oracle: libfuse's own parser (fuse_opt_parse) splits that string
// back into exactly the options we meant, in order; allow_other never arrives without
// default_permissions.
#define FUSE_USE_VERSION 35
#include <fuse_opt.h>

#include <algorithm>

#include "fs/mount_options.h"
#include "fuzz_check.h"

using namespace kmsfs;

namespace {

int collect(void* data, const char* arg, int key, fuse_args*) {
  if (key == FUSE_OPT_KEY_OPT) static_cast<std::vector<std::string>*>(data)->push_back(arg);
  return 0;  // consumed
}

std::vector<std::string> as_libfuse_sees(const std::string& opts) {
  std::vector<std::string> argv_s = {"kmsfs", "-o", opts};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_opt none[] = {FUSE_OPT_END};
  std::vector<std::string> got;
  const int rc = fuse_opt_parse(&args, &got, none, collect);
  fuse_opt_free_args(&args);
  FUZZ_CHECK(rc == 0, "libfuse parses the option string: " + opts);
  return got;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const std::string backing = "/" + in.piece();
  std::vector<std::string> raw;
  while (in.left() > 0) raw.push_back(in.piece());
  const std::vector<std::string> options = split_mount_options(raw);
  for (const auto& o : options) FUZZ_CHECK(!o.empty() && o.find('"') == std::string::npos, "one unquoted option each: " + o);

  const std::string opts = fuse_option_string(backing, options);
  std::vector<std::string> want = {"fsname=kmsfs:" + backing, "subtype=kmsfs"};
  want.insert(want.end(), options.begin(), options.end());
  const auto has = [](const std::vector<std::string>& v, const char* o) { return std::find(v.begin(), v.end(), o) != v.end(); };
  if (has(options, "allow_other") && !has(options, "default_permissions")) want.push_back("default_permissions");
  // libfuse cannot carry a NUL inside an argument: such a backing path never gets here.
  if (opts.find('\0') != std::string::npos) return 0;
  const std::vector<std::string> got = as_libfuse_sees(opts);
  FUZZ_CHECK(got == want, "libfuse sees the options we meant in: " + opts);
  FUZZ_CHECK(!has(got, "allow_other") || has(got, "default_permissions"), "allow_other without default_permissions");
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  auto seed = [&](const std::string& name, const std::string& backing, std::vector<std::string> raw) {
    std::string s(1, char(backing.size()));
    s += backing;
    for (const auto& r : raw) s += std::string(1, char(r.size())) + r;
    out(name, s);
  };
  seed("plain", "srv/vault", {"allow_other"});
  seed("several", "srv/vault", {"ro,default_permissions", "badname=*.tmp", "allow_other"});
  seed("comma-backing", "srv/a,b", {"ro"});
  seed("backslash", "srv/a\\b", {"context=system_u:object_r:tmp_t:s0"});
  seed("quoted-comma", "srv/vault", {"badname=\"*.a,*.b\",ro"});
}
