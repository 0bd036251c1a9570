#include "format/reencrypt_journal.h"

#include <fcntl.h>

#include <climits>
#include <string_view>

namespace kmsfs {

namespace {

constexpr uint8_t kMagic[8] = {'K', 'M', 'S', 'F', 'S', 'J', 'N', '1'};
constexpr size_t kFixed = 8 + 16 + 32 + 8 * 4 + 2;  // magic .. path length
// The longest path a path syscall takes (PATH_MAX counts the terminating NUL).
constexpr size_t kMaxPath = PATH_MAX - 1;

// A path recovery can hand to a syscall as it is: not longer, and not cut short by a NUL.
bool usable_path(std::string_view p) { return p.size() <= kMaxPath && p.find('\0') == std::string_view::npos; }

}  // namespace

Result<ReencryptJournal> ReencryptJournal::open(const std::string& path) {
  ASSIGN_OR_RETURN(auto f, PosixBackingFile::open(path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  return ReencryptJournal(std::move(f));
}

Bytes encode_journal_entry(const JournalEntry& e) {
  // The path is a hint: a deep file's (longer than a syscall takes) is left out, and
  // recovery finds the file by its id in the tree instead.
  const std::string_view path = usable_path(e.path) ? std::string_view(e.path) : std::string_view();
  ByteWriter w;
  w.raw(ByteSpan(kMagic, sizeof kMagic));
  w.raw(e.file_id);
  w.raw(e.next_wrap);
  w.u64(e.from_block);
  w.u64(e.to_block);
  w.u64(e.offset);
  w.u64(e.data.size());
  w.u16(static_cast<uint16_t>(path.size()));
  w.raw(as_bytes(path));
  w.raw(e.data);
  Digest32 sum = sha256(w.bytes());
  w.raw(sum);
  return w.take();
}

Status ReencryptJournal::save(const JournalEntry& e) {
  const Bytes b = encode_journal_entry(e);
  // Truncate first: a shorter entry over a longer one must not leave a tail that a torn
  // write could make look complete.
  RETURN_IF_ERROR(f_->truncate(0));
  Status s = f_->write_at(b, 0);
  if (s.ok()) s = f_->sync(true);
  // A save that failed (out of space, say) gives back what it took: a partial entry is
  // none anyway, and its blocks are what a full disk needs for everything else.
  if (!s.ok()) (void)f_->truncate(0);
  return s;
}

Status ReencryptJournal::clear() {
  RETURN_IF_ERROR(f_->truncate(0));
  return f_->sync(true);
}

Result<std::optional<JournalEntry>> parse_journal_entry(ByteSpan raw, const std::string& name) {
  if (raw.size() < kFixed + 32 || !std::equal(std::begin(kMagic), std::end(kMagic), raw.begin()))
    return std::optional<JournalEntry>();
  const ByteSpan body = raw.first(raw.size() - 32);
  if (!ct_equal(sha256(body), raw.last(32))) return std::optional<JournalEntry>();
  ByteReader r(body.subspan(8));
  JournalEntry e;
  ByteSpan id, wrap, path, data;
  uint64_t len = 0;
  uint16_t path_len = 0;
  if (!r.raw(16, id) || !r.raw(32, wrap) || !r.u64(e.from_block) || !r.u64(e.to_block) || !r.u64(e.offset) ||
      !r.u64(len) || !r.u16(path_len) || !r.raw(path_len, path) || len != r.left() || !r.raw(r.left(), data))
    return Status(Code::kCorrupt, name + ": journal entry malformed");
  // save() never writes such a path; one read here was put there by someone else.
  if (!usable_path(as_chars(path))) return Status(Code::kCorrupt, name + ": journal entry malformed (path)");
  std::copy(id.begin(), id.end(), e.file_id.begin());
  std::copy(wrap.begin(), wrap.end(), e.next_wrap.begin());
  e.path.assign(as_chars(path));
  e.data.assign(data.begin(), data.end());
  return std::optional<JournalEntry>(std::move(e));
}

Result<std::optional<JournalEntry>> ReencryptJournal::load() {
  ASSIGN_OR_RETURN(uint64_t size, f_->size());
  if (size == 0) return std::optional<JournalEntry>();
  Bytes raw(size);
  ASSIGN_OR_RETURN(size_t got, f_->read_at(raw, 0));
  raw.resize(got);
  return parse_journal_entry(raw, f_->name());
}

}  // namespace kmsfs
