#include "base/dir_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "base/unique_fd.h"

namespace kmsfs {

namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

std::vector<std::string> split(const std::string& rel) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < rel.size()) {
    size_t slash = rel.find('/', start);
    if (slash == std::string::npos) slash = rel.size();
    if (slash > start) out.push_back(rel.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

struct Child {
  std::string name;
  unsigned char type;  // d_type
};

struct Frame {
  std::string name;  // in its parent ("" for the root)
  UniqueFd fd;       // closed for levels between the root and the deepest held ones
  dev_t dev = 0;
  ino_t ino = 0;
  std::vector<Child> entries;  // sorted
  size_t next = 0;
  size_t rel_len = 0;    // its path's length in Walk::rel_
  bool on_path = false;  // every level down to it matches `after`
};

struct DirCloser {
  void operator()(DIR* d) const noexcept { ::closedir(d); }
};

// The entries of the directory open as `fd`, sorted; errno on failure.
int list(int fd, bool root, const DirWalkOptions& opts, std::vector<Child>& out) {
  // A DIR owns its descriptor: give it a duplicate, the walk keeps `fd` for openat.
  const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return errno;
  std::unique_ptr<DIR, DirCloser> d(::fdopendir(dup));
  if (!d) {
    const int e = errno;
    ::close(dup);
    return e;
  }
  for (;;) {
    errno = 0;
    dirent* e = ::readdir(d.get());
    if (!e) {
      if (errno != 0) return errno;
      break;
    }
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    if (root && opts.skip_in_root && opts.skip_in_root(n)) continue;
    out.push_back(Child{std::string(n), e->d_type});
  }
  std::sort(out.begin(), out.end(), [](const Child& a, const Child& b) { return a.name < b.name; });
  return 0;
}

bool is(const UniqueFd& fd, const Frame& f) {
  struct stat st;
  return ::fstat(fd.get(), &st) == 0 && st.st_dev == f.dev && st.st_ino == f.ino;
}

class Walk {
 public:
  Walk(const DirWalkOptions& opts, const std::function<bool(const WalkEntry&)>& visit,
       const std::function<void(const std::string&, const Status&)>& unreadable)
      : opts_(opts), after_(split(opts.after)), visit_(visit), unreadable_(unreadable) {}

  Status run(const std::string& root) {
    UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return Status::Io(errno, "backing directory " + root);
    Frame f;
    f.on_path = !after_.empty();
    if (!enter(std::move(fd), std::move(f))) return Status::Ok();
    while (!stack_.empty()) {
      if (!step()) break;
    }
    return Status::Ok();
  }

 private:
  // Lists the directory open as `fd` and makes it the deepest level. False (reported)
  // if it cannot be listed.
  bool enter(UniqueFd fd, Frame f) {
    struct stat st;
    int err = ::fstat(fd.get(), &st) == 0 ? 0 : errno;
    if (err == 0) err = list(fd.get(), stack_.empty(), opts_, f.entries);
    if (err != 0) {
      unreadable_(rel_.empty() ? "." : rel_, Status::Io(err, "listing"));
      return false;
    }
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    f.fd = std::move(fd);
    f.rel_len = rel_.size();
    stack_.push_back(std::move(f));
    // Too many held: the shallowest held level (never the root) gives its descriptor up.
    if (stack_.size() - lowest_held_ > opts_.max_open_dirs && lowest_held_ + 1 < stack_.size()) {
      stack_[lowest_held_].fd.reset();
      ++lowest_held_;
    }
    return true;
  }

  // One entry of the deepest directory, or climbs out of it. False once visit said stop.
  bool step() {
    Frame& f = stack_.back();
    if (f.next == f.entries.size()) return leave(), true;
    const Child& c = f.entries[f.next++];
    const size_t depth = stack_.size() - 1;
    bool child_on_path = false;
    if (f.on_path && depth < after_.size()) {
      if (c.name < after_[depth]) return true;
      child_on_path = c.name == after_[depth];
    }
    unsigned char type = c.type;
    if (type == DT_UNKNOWN) {
      struct stat st;
      if (::fstatat(f.fd.get(), c.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return true;  // gone
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    const size_t len = rel_.size();
    if (!rel_.empty()) rel_ += '/';
    rel_ += c.name;
    if (type != DT_DIR) {
      bool go_on = true;
      // The checkpoint itself was done by the run that recorded it.
      if (!(child_on_path && depth + 1 == after_.size())) {
        const EntryType t = type == DT_REG ? EntryType::kFile : EntryType::kOther;
        go_on = visit_(WalkEntry{rel_, c.name, t, f.fd.get(), depth});
      }
      rel_.resize(len);
      return go_on;
    }
    // A directory on the cursor's path was visited by the run that set the cursor.
    if (!child_on_path && !visit_(WalkEntry{rel_, c.name, EntryType::kDirectory, f.fd.get(), depth})) return false;
    UniqueFd sub(::openat(f.fd.get(), c.name.c_str(), kDirFlags));
    if (!sub.valid()) {
      unreadable_(rel_, Status::Io(errno, "opening directory"));
      rel_.resize(len);
      return true;
    }
    Frame next;
    next.name = c.name;  // `c` lives in `f`, which push_back may move: copied first
    next.on_path = child_on_path;
    if (!enter(std::move(sub), std::move(next))) rel_.resize(len);
    return true;
  }

  // Done with the deepest directory: back to its parent, reopened if it was let go.
  void leave() {
    Frame done = std::move(stack_.back());
    stack_.pop_back();
    if (stack_.empty()) return;
    rel_.resize(stack_.back().rel_len);
    const size_t k = stack_.size() - 1;
    if (stack_[k].fd.valid()) return;
    // Its ".." is the parent unless it moved: the device and inode number say.
    if (done.fd.valid()) {
      UniqueFd up(::openat(done.fd.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (up.valid() && is(up, stack_[k])) return held(k, std::move(up));
    }
    done.fd.reset();
    reopen_by_name(k);
  }

  void held(size_t k, UniqueFd fd) {
    stack_[k].fd = std::move(fd);
    lowest_held_ = k;
  }

  // Reopens level k from the deepest held level above it, one name at a time, each
  // checked to be the directory the walk listed there. The first level that is not is
  // reported and dropped with everything below it; the walk goes on in its parent.
  void reopen_by_name(size_t k) {
    size_t from = k;
    while (!stack_[from].fd.valid()) --from;  // the root is always held
    UniqueFd cur;
    for (size_t i = from + 1; i <= k; ++i) {
      UniqueFd next(::openat(i == from + 1 ? stack_[from].fd.get() : cur.get(), stack_[i].name.c_str(), kDirFlags));
      const int err = next.valid() ? 0 : errno;
      if (!next.valid() || !is(next, stack_[i])) {
        const std::string rel = rel_.substr(0, stack_[i].rel_len);
        unreadable_(rel, err != 0 ? Status::Io(err, "reopening directory (moved or removed during the walk)")
                                  : Status(Code::kNotFound, "directory moved or replaced during the walk"));
        stack_.resize(i);
        rel_.resize(stack_.back().rel_len);
        if (cur.valid()) stack_[i - 1].fd = std::move(cur);
        lowest_held_ = stack_.size();
        while (lowest_held_ > 1 && stack_[lowest_held_ - 1].fd.valid()) --lowest_held_;
        return;
      }
      cur = std::move(next);
    }
    held(k, std::move(cur));
  }

  const DirWalkOptions& opts_;
  const std::vector<std::string> after_;
  const std::function<bool(const WalkEntry&)>& visit_;
  const std::function<void(const std::string&, const Status&)>& unreadable_;
  std::vector<Frame> stack_;
  std::string rel_;  // the deepest directory's path; an entry's while it is visited
  // Levels [1, lowest_held_) have given their descriptors up; the root and every level
  // from lowest_held_ down hold theirs.
  size_t lowest_held_ = 1;
};

}  // namespace

Status walk_dir_tree(const std::string& root, const DirWalkOptions& opts,
                     const std::function<bool(const WalkEntry&)>& visit,
                     const std::function<void(const std::string& rel, const Status&)>& unreadable) {
  Walk w(opts, visit, unreadable);
  return w.run(root);
}

}  // namespace kmsfs
