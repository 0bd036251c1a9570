// Searching a process's memory for known byte strings: in a core file root's gcore writes
// of it (what a core dump would hold: gdb, like the kernel, leaves out MADV_DONTDUMP
// mappings), in its live memory (/proc/PID/mem, every readable mapping, the excluded ones
// too: the positive control that the search would see a key that is there), or in text.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.h"

namespace kmsfs::testing {

struct Pattern {
  std::string category;  // "DEK", "content key schedule", ...: what a summary counts
  std::string what;      // which one: "DEK of file 1f2e...", for the failure message
  Bytes bytes;           // at least 8 bytes
};

struct Hit {
  const Pattern* pattern;
  uint64_t address;      // virtual address in the process (or the offset in a text)
  std::string mapping;   // the /proc/PID/maps line it lies in, if known
  std::string context;   // the bytes around it, printable ones as text: whose buffer it is
};

// Many patterns searched in one pass (an 8-byte-prefix index), so tens of thousands of
// per-block subkeys cost one read of a few hundred MiB.
class PatternSet {
 public:
  void add(Pattern p);
  size_t size() const { return patterns_.size(); }
  const std::vector<Pattern>& patterns() const { return patterns_; }
  // Appends every occurrence in [data, data + n), addresses from `base`.
  void scan(const uint8_t* data, size_t n, uint64_t base, std::vector<Hit>& out) const;

 private:
  void build() const;
  std::vector<Pattern> patterns_;
  mutable bool built_ = false;
  mutable std::vector<uint64_t> filter_;          // bitmap over a hash of the prefix
  mutable std::vector<std::pair<uint64_t, size_t>> index_;  // sorted (prefix, pattern)
};

struct MapsLine {
  uint64_t start = 0, end = 0;
  std::string perms, line;
  bool dont_dump = false;  // VmFlags "dd"
};
// /proc/PID/smaps, parsed (ranges, permissions, whether MADV_DONTDUMP is set).
std::vector<MapsLine> read_maps(pid_t pid);

// Runs gcore on `pid` and returns the core file's path (under `dir`); throws with gdb's
// output if no core was written.
std::string take_core(pid_t pid, const std::string& dir);
// Every PT_LOAD segment of an ELF core (memory) and PT_NOTE (thread registers), searched.
// `maps` names the mapping of each hit in memory.
std::vector<Hit> scan_core(const std::string& core, const PatternSet& set, const std::vector<MapsLine>& maps);
// Every readable mapping of the live process (MADV_DONTDUMP ones included).
std::vector<Hit> scan_live(pid_t pid, const PatternSet& set);
std::vector<Hit> scan_text(const std::string& text, const PatternSet& set);

// "category: N hits (what at address in mapping; ...)", at most a few examples each.
std::string describe(const std::vector<Hit>& hits);

}  // namespace kmsfs::testing
