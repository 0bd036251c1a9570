#include "fsck/file_check.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <array>

#include "format/file_keys.h"
#include "format/slot_rewrap.h"
#include "fsck/block_scan.h"

namespace kmsfs::fsck {

namespace {

struct Findings {
  const std::string& rel;
  const std::string& file_id;
  std::vector<Finding>& out;

  Finding& add(FindingKind kind, std::string message, std::string key = "") {
    out.push_back(make_finding(kind, rel, std::move(message), std::move(key), file_id));
    return out.back();
  }
};

// Checks that need nothing but the header's structure. A new kind of per-file finding
// the header can show (a re-encryption record left behind) is one more function here.
using HeaderCheck = void (*)(const CheckContext&, const FileHeader&, Findings&);

void slots_present(const CheckContext&, const FileHeader& h, Findings& out) {
  for (int i = 0; i < 2; ++i)
    if (!h.slots[i])
      out.add(FindingKind::kOneSlot, "key slot " + std::to_string(i) + " is unusable (" + h.slot_problem[i] +
                                         "); slot " + std::to_string(1 - i) + " carries the file",
              h.slots[1 - i]->key.to_string());
}

void under_current_key(const CheckContext& ctx, const FileHeader& h, Findings& out) {
  if (!ctx.current_key || all_slots_under(h, *ctx.current_key)) return;
  std::string keys;
  for (const auto& s : h.slots)
    if (s && keys.find(s->key.to_string()) == std::string::npos) keys += (keys.empty() ? "" : ", ") + s->key.to_string();
  out.add(FindingKind::kNotRotated, "wrapped under " + keys + ", not the current key " + ctx.current_key->to_string(),
          h.slots[h.active_slot()]->key.to_string());
}

void reencryption_left(const CheckContext&, const FileHeader& h, Findings& out) {
  const auto& re = h.slots[h.active_slot()]->reencrypt;
  if (!re) return;
  out.add(FindingKind::kInterruptedReencryption,
          "re-encryption (run " + to_hex(re->run) + ") stopped at block " + std::to_string(re->watermark) +
              ": the file reads and writes normally under its two keys; --repair or the next rotate --reencrypt "
              "finishes it",
          h.slots[h.active_slot()]->key.to_string());
}

constexpr HeaderCheck kHeaderChecks[] = {&slots_present, &under_current_key, &reencryption_left};

// A refusal that says nothing about the file: the key is disabled, denied, missing or
// its provider did not answer. Only kCorrupt says the wrap itself is bad.
bool key_refusal(const Status& s) { return s.code() != Code::kCorrupt; }

struct Opened {
  std::unique_ptr<CryptFile> file;
  int slot = -1;
  std::array<Status, 2> failed;  // per slot, when it did not open the file
};

// Tries every valid slot: the active one first, then the other unless it holds the very
// same wrap (the usual case, which costs one unwrap).
Opened open_by_slots(const CheckContext& ctx, std::shared_ptr<BackingFile> backing, const FileHeader& h) {
  Opened o;
  const int active = h.active_slot();
  for (int idx : {active, 1 - active}) {
    if (!h.slots[idx]) continue;
    if (idx != active && h.slots[active] && wrap_of(*h.slots[idx]) == wrap_of(*h.slots[active])) {
      o.failed[idx] = o.failed[active];
      continue;
    }
    auto dek = ctx.keys.dek(h, *h.slots[idx]);
    if (!dek.ok()) {
      o.failed[idx] = dek.status();
      continue;
    }
    auto keys = FileKeys::derive(h.cipher, dek->span(), h.file_id);
    if (!keys.ok()) {
      o.failed[idx] = keys.status();
      continue;
    }
    // Part-way through a re-encryption, the blocks below the watermark need its key too.
    std::shared_ptr<const FileKeys> next;
    if (const auto& re = h.slots[active]->reencrypt) {
      auto next_dek = ctx.keys.dek_like(h, *h.slots[active], re->wrapped_dek);
      auto next_keys = next_dek.ok() ? FileKeys::derive(h.cipher, next_dek->span(), h.file_id)
                                     : Result<std::shared_ptr<const FileKeys>>(next_dek.status());
      if (!next_keys.ok()) {
        o.failed[idx] = next_keys.status();
        continue;
      }
      next = std::move(*next_keys);
    }
    auto f = CryptFile::open(backing, h, std::move(*keys), ctx.file_opts, std::move(next));
    if (!f.ok()) {
      o.failed[idx] = f.status();
      continue;
    }
    if (!o.file) {
      o.file = std::move(*f);
      o.slot = idx;
    }
  }
  return o;
}

void check_content(const CheckContext& ctx, FileCheck& out, Findings& findings, CryptFile& f) {
  BlockScan scan = scan_blocks(f, out.backing_size, ctx.max_blocks_listed);
  out.bad_blocks = scan.bad_total;
  for (size_t i = 0; i < scan.bad.size(); ++i) {
    std::string why = scan.bad[i].why;
    if (i + 1 == scan.bad.size() && scan.bad_total > scan.bad.size())
      why += " (and " + std::to_string(scan.bad_total - scan.bad.size()) + " more damaged blocks, not listed)";
    findings.add(FindingKind::kDamagedBlock, std::move(why)).block = scan.bad[i].block;
  }
  if (scan.truncated) findings.add(FindingKind::kTruncated, scan.truncated_why);
}

}  // namespace

namespace {

FileCheck check_opened(const CheckContext& ctx, Result<std::unique_ptr<PosixBackingFile>> opened,
                       const std::string& rel) {
  FileCheck out;
  Findings findings{rel, out.file_id, out.findings};
  if (!opened.ok()) {
    findings.add(FindingKind::kUnreadable, opened.status().message());
    return out;
  }
  std::shared_ptr<BackingFile> backing(std::move(*opened));
  auto size = backing->size();
  if (!size.ok()) {
    findings.add(FindingKind::kUnreadable, size.status().message());
    return out;
  }
  out.backing_size = *size;
  Bytes raw(header::kSize);
  auto n = backing->read_at(raw, 0);
  if (!n.ok()) {
    findings.add(FindingKind::kUnreadable, n.status().message());
    return out;
  }
  raw.resize(*n);
  if (!has_kmsfs_magic(raw)) {
    findings.add(FindingKind::kNotKmsfs, out.backing_size == 0 ? "empty file" : "no kmsfs magic: not written by kmsfs");
    return out;
  }
  out.kmsfs = true;
  // What the header says its id is, unauthenticated: it helps to find the file in a
  // backup even when nothing else in the header parses.
  if (raw.size() >= 48) out.file_id = to_hex(ByteSpan(raw).subspan(32, 16));
  auto h = parse_header(raw);
  if (!h.ok()) {
    const bool newer = h.status().code() == Code::kUnsupported;
    findings.add(newer ? FindingKind::kUnsupportedHeader : FindingKind::kDamagedHeader, h.status().message());
    return out;
  }
  out.file_id = to_hex(h->file_id);
  auto fs = h->context.get(EncryptionContext::kFsIdKey);
  if (!fs || *fs != ctx.config.fs_id_hex()) {
    findings.add(FindingKind::kWrongVault, "belongs to another filesystem (fs id " + std::string(fs.value_or("none")) +
                                               ")");
    return out;
  }
  out.ours = true;
  for (HeaderCheck check : kHeaderChecks) check(ctx, *h, findings);

  Opened o = open_by_slots(ctx, backing, *h);
  out.good_slot = o.slot;
  if (!o.file) {
    const int active = h->active_slot();
    int refused = -1;
    for (int idx : {active, 1 - active})
      if (refused < 0 && h->slots[idx] && key_refusal(o.failed[idx])) refused = idx;
    if (refused >= 0) {
      findings.add(FindingKind::kKeyUnavailable, o.failed[refused].message(), h->slots[refused]->key.to_string());
    } else {
      findings.add(FindingKind::kDamagedHeader, "no key slot opens the file: " + o.failed[active].message(),
                   h->slots[active]->key.to_string());
    }
    out.header = std::move(*h);
    return out;
  }
  for (int idx = 0; idx < 2; ++idx)
    if (idx != o.slot && h->slots[idx] && !o.failed[idx].ok() && !key_refusal(o.failed[idx]))
      findings.add(FindingKind::kOneSlot,
                   "key slot " + std::to_string(idx) + " does not open the file (" + o.failed[idx].message() +
                       "); slot " + std::to_string(o.slot) + " carries it",
                   h->slots[o.slot]->key.to_string());
  check_content(ctx, out, findings, *o.file);
  out.header = std::move(*h);
  return out;
}

}  // namespace

FileCheck check_file(const CheckContext& ctx, const std::string& path, const std::string& rel) {
  return check_opened(ctx, PosixBackingFile::open(path, O_RDONLY | O_NOFOLLOW), rel);
}

FileCheck check_file(const CheckContext& ctx, int dirfd, std::string_view name, const std::string& path,
                     const std::string& rel) {
  return check_opened(ctx, PosixBackingFile::open_at(dirfd, std::string(name), O_RDONLY, path), rel);
}

}  // namespace kmsfs::fsck
