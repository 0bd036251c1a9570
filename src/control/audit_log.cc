#include "control/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace kmsfs {

namespace {

constexpr auto kWarnEvery = std::chrono::seconds(10);
constexpr size_t kMaxFailedRanges = 256;

Result<UniqueFd> open_log(const std::string& path, uint64_t& size) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return Status::Io(errno, "audit log " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::Io(errno, "audit log " + path);
  if (!S_ISREG(st.st_mode)) return Status(Code::kInvalidArgument, "audit log " + path + " is not a regular file");
  if ((st.st_mode & 07777) != 0600 && ::fchmod(fd.get(), 0600) != 0) return Status::Io(errno, "audit log " + path + ": chmod 0600");
  size = static_cast<uint64_t>(st.st_size);
  return fd;
}

std::string rfc3339_ms(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

std::string AuditLog::format(const AuditEvent& e, std::chrono::system_clock::time_point now) {
  nlohmann::ordered_json j;
  j["time"] = rfc3339_ms(now);
  j["op"] = e.op;
  j["result"] = e.result;
  if (!e.key.empty()) j["key"] = e.key;
  if (!e.to_key.empty()) j["to_key"] = e.to_key;
  if (!e.file_id.empty()) j["file_id"] = e.file_id;
  if (!e.ik_id.empty()) j["ik_id"] = e.ik_id;
  if (e.context) {
    nlohmann::ordered_json c = nlohmann::ordered_json::object();
    for (const auto& [k, v] : e.context->pairs()) c[k] = v;
    j["context"] = std::move(c);
  }
  if (e.requester) {
    j["uid"] = e.requester->uid;
    j["gid"] = e.requester->gid;
    j["pid"] = e.requester->pid;
  }
  if (!e.trigger.empty()) j["trigger"] = e.trigger;
  if (!e.detail.empty()) j["detail"] = e.detail;
  if (e.count) j["count"] = *e.count;
  if (!e.error.empty()) j["error"] = e.error;
  // Provider messages are not ours to trust as UTF-8: replaced, never a broken line.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(AuditLogOptions opts) {
  if (opts.path.empty() || opts.path[0] != '/') return Status(Code::kInvalidArgument, "audit log: an absolute path is needed");
  if (opts.keep < 1) return Status(Code::kInvalidArgument, "audit log: keep at least 1 rotated file");
  if (opts.max_size < 4096) return Status(Code::kInvalidArgument, "audit log: a maximum size of at least 4096 bytes is needed");
  uint64_t size = 0;
  ASSIGN_OR_RETURN(UniqueFd fd, open_log(opts.path, size));
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(opts), std::move(fd), size));
}

AuditLog::AuditLog(AuditLogOptions opts, UniqueFd fd, uint64_t size)
    : opts_(std::move(opts)), fd_(std::move(fd)), size_(size) {
  thread_ = std::jthread([this](std::stop_token st) { writer(st); });
}

AuditLog::~AuditLog() {
  thread_.request_stop();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();  // the writer drains the queue before it returns
  if (fd_.valid()) ::fdatasync(fd_.get());
}

Status AuditLog::record(AuditEvent e) {
  std::string line = format(e, std::chrono::system_clock::now());
  line.push_back('\n');
  uint64_t seq = 0;
  std::unique_lock lk(mu_);
  if (queued_bytes_ + line.size() > opts_.max_queued_bytes) {
    ++stats_.dropped;
    ++unwarned_failures_;
    lk.unlock();
    note_failure(Status(Code::kUnavailable, "audit log " + opts_.path + ": the writer is not keeping up (queue full)"), 0);
    if (opts_.required) return Status(Code::kUnavailable, "audit log " + opts_.path + ": not keeping up (queue full); refused");
    return Status::Ok();
  }
  seq = next_seq_++;
  queued_bytes_ += line.size();
  queue_.emplace_back(seq, std::move(line));
  cv_.notify_all();
  if (!opts_.required) return Status::Ok();
  // Fail closed: the caller's key is used only once its line is written.
  if (!done_cv_.wait_for(lk, opts_.required_wait, [&] { return done_seq_ >= seq; }))
    return Status(Code::kUnavailable, "audit log " + opts_.path + ": the line was not written within " +
                                          std::to_string(opts_.required_wait.count()) + " ms; refused");
  for (const auto& [first, last] : failed_)
    if (seq >= first && seq <= last)
      return Status(Code::kUnavailable, "audit log " + opts_.path + ": the line could not be written; refused");
  return Status::Ok();
}

void AuditLog::wait_written() {
  std::unique_lock lk(mu_);
  const uint64_t last = next_seq_ - 1;
  done_cv_.wait(lk, [&] { return done_seq_ >= last; });
}

AuditLogStats AuditLog::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void AuditLog::writer(std::stop_token st) {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, st, [this] { return !queue_.empty(); });
    if (queue_.empty()) return;  // stopped with nothing left
    std::deque<std::pair<uint64_t, std::string>> batch;
    batch.swap(queue_);
    queued_bytes_ = 0;
    lk.unlock();
    uint64_t first_failed = 0, last_failed = 0;
    uint64_t bytes = 0;
    for (const auto& l : batch) bytes += l.second.size();
    const uint64_t lost = write_batch(batch, first_failed, last_failed);
    lk.lock();
    stats_.records += batch.size() - lost;
    if (lost == 0) stats_.bytes += bytes;
    if (lost) {
      failed_.emplace_back(first_failed, last_failed);
      if (failed_.size() > kMaxFailedRanges) failed_.pop_front();
    }
    done_seq_ = batch.back().first;
    done_cv_.notify_all();
  }
}

uint64_t AuditLog::write_batch(const std::deque<std::pair<uint64_t, std::string>>& lines, uint64_t& first_failed,
                               uint64_t& last_failed) {
  // Lines go out in chunks that end where the file must rotate.
  std::string chunk;
  uint64_t chunk_first = 0, lost = 0;
  Status failure;
  auto flush = [&](uint64_t last_seq, size_t n_lines) {
    if (chunk.empty()) return;
    Status s;
    if (!fd_.valid()) s = reopen();
    if (s.ok() && torn_) {
      if (::write(fd_.get(), "\n", 1) == 1) torn_ = false, ++size_;
    }
    size_t off = 0;
    while (s.ok() && off < chunk.size()) {
      ssize_t n = ::write(fd_.get(), chunk.data() + off, chunk.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        s = Status::Io(n < 0 ? errno : EIO, "audit log " + opts_.path);
        break;
      }
      off += static_cast<size_t>(n);
      size_ += static_cast<uint64_t>(n);
    }
    if (s.ok() && ::fdatasync(fd_.get()) != 0) s = Status::Io(errno, "audit log " + opts_.path + ": fdatasync");
    if (!s.ok()) {
      torn_ = off > 0 && off < chunk.size();
      if (!first_failed) first_failed = chunk_first;
      last_failed = last_seq;
      lost += n_lines;
      failure = s;
    }
    chunk.clear();
  };
  size_t n_lines = 0;
  uint64_t last_seq = 0;
  for (const auto& [seq, line] : lines) {
    if (size_ + chunk.size() + line.size() > opts_.max_size && size_ + chunk.size() > 0) {
      flush(last_seq, n_lines);
      n_lines = 0;
      if (Status r = rotate(); !r.ok()) note_failure(r, 0);
    }
    if (chunk.empty()) chunk_first = seq;
    chunk += line;
    ++n_lines;
    last_seq = seq;
  }
  flush(last_seq, n_lines);
  if (lost) note_failure(failure, lost);
  return lost;
}

Status AuditLog::rotate() {
  if (fd_.valid()) ::fdatasync(fd_.get());
  fd_.reset();
  const std::string& p = opts_.path;
  ::unlink((p + "." + std::to_string(opts_.keep)).c_str());
  for (unsigned i = opts_.keep; i > 1; --i)
    ::rename((p + "." + std::to_string(i - 1)).c_str(), (p + "." + std::to_string(i)).c_str());
  if (::rename(p.c_str(), (p + ".1").c_str()) != 0 && errno != ENOENT)
    return Status::Io(errno, "audit log " + p + ": rotating to " + p + ".1");
  torn_ = false;
  {
    std::lock_guard lk(mu_);
    ++stats_.rotations;
  }
  return reopen();
}

Status AuditLog::reopen() {
  uint64_t size = 0;
  auto fd = open_log(opts_.path, size);
  if (!fd.ok()) return fd.status();
  fd_ = std::move(*fd);
  size_ = size;
  return Status::Ok();
}

void AuditLog::note_failure(const Status& s, uint64_t lines) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(mu_);
  stats_.write_failures += lines;
  stats_.last_failure_unix =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  unwarned_failures_ += lines;
  if (now - last_warned_ < kWarnEvery) return;
  last_warned_ = now;
  // At most one line per 10 s, however fast lines are lost.
  spdlog::error("{}; {} audit line(s) lost since the last such message", s.message(), unwarned_failures_);
  unwarned_failures_ = 0;
}

}  // namespace kmsfs
