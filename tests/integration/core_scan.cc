#include "core_scan.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "process.h"

namespace kmsfs::testing {
namespace {

constexpr size_t kPrefix = 8;
constexpr unsigned kFilterBits = 24;

uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

size_t filter_slot(uint64_t prefix) { return size_t((prefix * 0x9e3779b97f4a7c15ull) >> (64 - kFilterBits)); }

std::string mapping_of(uint64_t addr, const std::vector<MapsLine>& maps) {
  for (const MapsLine& m : maps)
    if (addr >= m.start && addr < m.end) return m.line;
  return "(no mapping)";
}

// 48 bytes before and after a hit, '.' for what is not printable ASCII.
std::string context_at(const uint8_t* data, size_t n, size_t at, size_t len) {
  const size_t from = at < 48 ? 0 : at - 48, to = std::min(n, at + len + 48);
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (i == at) out += "[[";
    out += data[i] >= 0x20 && data[i] < 0x7f ? char(data[i]) : '.';
    if (i + 1 == at + len) out += "]]";
  }
  return out;
}

}  // namespace

void PatternSet::add(Pattern p) {
  if (p.bytes.size() < kPrefix) throw std::logic_error("pattern shorter than 8 bytes: " + p.what);
  patterns_.push_back(std::move(p));
  built_ = false;
}

void PatternSet::build() const {
  filter_.assign((size_t{1} << kFilterBits) / 64, 0);
  index_.clear();
  for (size_t i = 0; i < patterns_.size(); ++i) {
    const uint64_t prefix = load64(patterns_[i].bytes.data());
    const size_t slot = filter_slot(prefix);
    filter_[slot / 64] |= uint64_t{1} << (slot % 64);
    index_.emplace_back(prefix, i);
  }
  std::sort(index_.begin(), index_.end());
  built_ = true;
}

void PatternSet::scan(const uint8_t* data, size_t n, uint64_t base, std::vector<Hit>& out) const {
  if (!built_) build();
  if (n < kPrefix) return;
  for (size_t i = 0; i + kPrefix <= n; ++i) {
    const uint64_t prefix = load64(data + i);
    const size_t slot = filter_slot(prefix);
    if ((filter_[slot / 64] >> (slot % 64) & 1) == 0) continue;
    auto it = std::lower_bound(index_.begin(), index_.end(), std::make_pair(prefix, size_t{0}));
    for (; it != index_.end() && it->first == prefix; ++it) {
      const Pattern& p = patterns_[it->second];
      if (i + p.bytes.size() <= n && std::memcmp(data + i, p.bytes.data(), p.bytes.size()) == 0)
        out.push_back(Hit{&p, base + i, {}, context_at(data, n, i, p.bytes.size())});
    }
  }
}

std::vector<MapsLine> read_maps(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  if (!in) throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/smaps");
  std::vector<MapsLine> out;
  for (std::string line; std::getline(in, line);) {
    const size_t dash = line.find('-');
    const size_t space = line.find(' ');
    const bool header = dash != std::string::npos && space != std::string::npos && dash < space &&
                        line.find_first_not_of("0123456789abcdef") == dash;
    if (header) {
      MapsLine m;
      m.start = std::stoull(line.substr(0, dash), nullptr, 16);
      m.end = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
      m.perms = line.substr(space + 1, 4);
      m.line = line;
      out.push_back(std::move(m));
    } else if (line.starts_with("VmFlags:") && !out.empty()) {
      out.back().dont_dump = (line + " ").find(" dd ") != std::string::npos;
    }
  }
  return out;
}

std::string take_core(pid_t pid, const std::string& dir) {
  const std::string prefix = dir + "/core";
  ProcessOptions o;
  o.timeout = std::chrono::seconds(300);
  ProcessResult r = run({"/usr/bin/gcore", "-o", prefix, std::to_string(pid)}, o);
  const std::string path = prefix + "." + std::to_string(pid);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || st.st_size == 0)
    throw std::runtime_error("gcore wrote no core (exit " + std::to_string(r.exit_code) + "): " + r.out + r.err);
  return path;
}

std::vector<Hit> scan_core(const std::string& core, const PatternSet& set, const std::vector<MapsLine>& maps) {
  const int fd = ::open(core.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + core + ": " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const size_t size = static_cast<size_t>(st.st_size);
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw std::runtime_error("mmap " + core + ": " + std::strerror(errno));
  const auto* base = static_cast<const uint8_t*>(m);
  std::vector<Hit> hits;
  Elf64_Ehdr eh;
  std::memcpy(&eh, base, sizeof eh);
  if (size < sizeof eh || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_type != ET_CORE) {
    ::munmap(m, size);
    throw std::runtime_error(core + " is not an ELF core file");
  }
  for (size_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, base + eh.e_phoff + i * eh.e_phentsize, sizeof ph);
    if ((ph.p_type != PT_LOAD && ph.p_type != PT_NOTE) || ph.p_filesz == 0 || ph.p_offset + ph.p_filesz > size)
      continue;
    // The notes hold each thread's registers (NT_PRSTATUS, NT_X86_XSTATE: the vector
    // registers AES-NI and ChaCha20 work in); a hit there has no address, only its offset.
    std::vector<Hit> found;
    set.scan(base + ph.p_offset, ph.p_filesz, ph.p_type == PT_LOAD ? ph.p_vaddr : ph.p_offset, found);
    for (Hit& h : found) {
      h.mapping = ph.p_type == PT_LOAD ? mapping_of(h.address, maps) : "the core's notes (thread registers)";
      hits.push_back(std::move(h));
    }
  }
  ::munmap(m, size);
  return hits;
}

std::vector<Hit> scan_live(pid_t pid, const PatternSet& set) {
  const std::vector<MapsLine> maps = read_maps(pid);
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open /proc/" + std::to_string(pid) + "/mem: " + std::strerror(errno));
  std::vector<Hit> hits;
  std::vector<uint8_t> buf;
  for (const MapsLine& m : maps) {
    if (m.perms.empty() || m.perms[0] != 'r') continue;
    if (m.line.find("[vvar") != std::string::npos || m.line.find("[vsyscall]") != std::string::npos) continue;
    buf.resize(m.end - m.start);
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(m.start));
    if (n <= 0) continue;
    std::vector<Hit> found;
    set.scan(buf.data(), static_cast<size_t>(n), m.start, found);
    for (Hit& h : found) {
      h.mapping = m.line + (m.dont_dump ? " [dd]" : "");
      hits.push_back(std::move(h));
    }
  }
  ::close(fd);
  return hits;
}

std::vector<Hit> scan_text(const std::string& text, const PatternSet& set) {
  std::vector<Hit> hits;
  set.scan(reinterpret_cast<const uint8_t*>(text.data()), text.size(), 0, hits);
  for (Hit& h : hits) h.mapping = "text offset";
  return hits;
}

std::string describe(const std::vector<Hit>& hits) {
  std::map<std::string, std::vector<const Hit*>> by_category;
  for (const Hit& h : hits) by_category[h.pattern->category].push_back(&h);
  std::ostringstream out;
  for (const auto& [category, list] : by_category) {
    out << "  " << category << ": " << list.size() << " hit(s)\n";
    for (size_t i = 0; i < list.size() && i < 4; ++i) {
      out << "    " << list[i]->pattern->what << " at 0x" << std::hex << list[i]->address << std::dec
          << " in " << list[i]->mapping << "\n      " << list[i]->context << "\n";
    }
  }
  return out.str();
}

}  // namespace kmsfs::testing
