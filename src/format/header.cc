#include "format/header.h"

#include <algorithm>
#include <cstring>

#include "crypto/secure_buffer.h"

namespace kmsfs {

namespace {

constexpr uint16_t kCritical = 0x8000;
// Immutable records.
constexpr uint16_t kTlvContext = 0x8001;
// Slot records.
constexpr uint16_t kTlvKeyRef = 0x8001;
constexpr uint16_t kTlvWrappedDek = 0x8002;
constexpr uint16_t kTlvFileState = 0x8003;
constexpr uint16_t kTlvIntermediateKey = 0x8004;
constexpr uint16_t kTlvReencrypt = 0x8005;
constexpr uint16_t kTlvDekRun = 0x0006;
constexpr uint8_t kIntermediateKeyFormat = 1;
constexpr uint8_t kReencryptFormat = 1;

Status corrupt(const std::string& what) { return Status(Code::kCorrupt, "header: " + what); }

void put_tlv(ByteWriter& w, uint16_t type, ByteSpan value) {
  w.u16(type);
  w.u16(static_cast<uint16_t>(value.size()));
  w.raw(value);
}

struct Tlv {
  uint16_t type;
  ByteSpan value;
};

// Walks a TLV area. Zero padding after the last record ends the walk (type 0 is reserved).
Result<std::vector<Tlv>> read_tlvs(ByteSpan area, const char* where) {
  std::vector<Tlv> out;
  ByteReader r(area);
  while (r.left() >= 4) {
    uint16_t type = 0, len = 0;
    r.u16(type);
    r.u16(len);
    if (type == 0) {
      if (len != 0) return corrupt(std::string(where) + ": record of type 0");
      break;
    }
    ByteSpan v;
    if (!r.raw(len, v)) return corrupt(std::string(where) + ": record runs past its area");
    out.push_back({type, v});
  }
  return out;
}

Bytes encode_key_ref(const KeyRef& k) {
  ByteWriter w;
  w.u8(static_cast<uint8_t>(k.provider));
  w.u32(k.version);
  w.u16(static_cast<uint16_t>(k.key_id.size()));
  w.raw(as_bytes(k.key_id));
  return w.take();
}

Result<KeyRef> decode_key_ref(ByteSpan b) {
  ByteReader r(b);
  uint8_t p = 0;
  uint16_t len = 0;
  ByteSpan id;
  KeyRef k;
  if (!r.u8(p) || !r.u32(k.version) || !r.u16(len) || !r.raw(len, id) || r.left() != 0)
    return corrupt("key reference malformed");
  if (p != static_cast<uint8_t>(ProviderId::kKeyring) && p != static_cast<uint8_t>(ProviderId::kAwsKms))
    return Status(Code::kUnsupported, "header: unknown key provider id " + std::to_string(p));
  if (len == 0 || len > kMaxKeyIdSize) return corrupt("key id length out of range");
  // Key ids go into KMS requests (JSON strings: UTF-8 only), logs and error messages.
  if (!is_utf8(as_chars(id))) return corrupt("key reference is not UTF-8");
  if (has_control_chars(as_chars(id))) return corrupt("key reference contains control characters");
  k.provider = static_cast<ProviderId>(p);
  k.key_id.assign(as_chars(id));
  return k;
}

Bytes encode_state(const SealedFileState& s) {
  ByteWriter w;
  w.u64(s.generation);
  w.u16(static_cast<uint16_t>(s.ranges.size()));
  for (const auto& r : s.ranges) {
    w.u64(r.begin);
    w.u64(r.end);
  }
  w.raw(s.mac);
  return w.take();
}

Result<SealedFileState> decode_state(ByteSpan b) {
  ByteReader r(b);
  SealedFileState s;
  uint16_t n = 0;
  if (!r.u64(s.generation) || !r.u16(n) || n > SparseMap::kMaxRanges)
    return corrupt("file state malformed");
  for (uint16_t i = 0; i < n; ++i) {
    BlockRange br;
    if (!r.u64(br.begin) || !r.u64(br.end)) return corrupt("file state malformed");
    s.ranges.push_back(br);
  }
  ByteSpan mac;
  if (!r.raw(32, mac) || r.left() != 0) return corrupt("file state malformed");
  std::copy(mac.begin(), mac.end(), s.mac.begin());
  return s;
}

Result<HeaderSlot> parse_slot(ByteSpan b) {
  bool all_zero = std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
  if (all_zero) return Status(Code::kNotFound, "empty");
  Digest32 sum = sha256(b.first(header::kSlotChecksumOffset));
  if (!ct_equal(sum, b.subspan(header::kSlotChecksumOffset, 32)))
    return corrupt("slot checksum mismatch (torn write or damage)");
  ByteReader r(b);
  uint32_t magic = 0, len = 0;
  HeaderSlot s;
  r.u32(magic);
  r.u32(len);
  r.u64(s.seq);
  if (magic != header::kSlotMagic) return corrupt("slot magic");
  if (len > header::kSlotChecksumOffset - 16) return corrupt("slot length");
  ASSIGN_OR_RETURN(auto tlvs, read_tlvs(b.subspan(16, len), "slot"));
  bool have_key = false, have_dek = false;
  for (const auto& t : tlvs) {
    switch (t.type) {
      case kTlvKeyRef: {
        if (have_key) return corrupt("duplicate key reference");
        ASSIGN_OR_RETURN(s.key, decode_key_ref(t.value));
        have_key = true;
        break;
      }
      case kTlvWrappedDek:
        if (have_dek) return corrupt("duplicate wrapped key");
        if (t.value.empty()) return corrupt("empty wrapped key");
        s.wrapped_dek.assign(t.value.begin(), t.value.end());
        have_dek = true;
        break;
      case kTlvFileState: {
        if (s.state) return corrupt("duplicate file state");
        ASSIGN_OR_RETURN(s.state, decode_state(t.value));
        break;
      }
      case kTlvIntermediateKey: {
        if (s.intermediate) return corrupt("duplicate intermediate key");
        // u8 format || 16-byte id || wrapped key (non-empty)
        if (t.value.size() < 1 + 16 + 1) return corrupt("intermediate key record too short");
        if (t.value[0] != kIntermediateKeyFormat)
          return Status(Code::kUnsupported, "header: intermediate key record format " + std::to_string(t.value[0]) +
                                                " (written by a newer kmsfs)");
        IntermediateKeyRecord ik;
        std::copy_n(t.value.begin() + 1, ik.id.size(), ik.id.begin());
        ik.wrapped.assign(t.value.begin() + 17, t.value.end());
        s.intermediate = std::move(ik);
        break;
      }
      case kTlvReencrypt: {
        if (s.reencrypt) return corrupt("duplicate re-encryption record");
        // u8 format || u64 watermark || 8-byte run id || wrapped DEK (non-empty)
        if (t.value.size() < 1 + 8 + 8 + 1) return corrupt("re-encryption record too short");
        if (t.value[0] != kReencryptFormat)
          return Status(Code::kUnsupported, "header: re-encryption record format " + std::to_string(t.value[0]) +
                                                " (written by a newer kmsfs)");
        ReencryptRecord re;
        re.watermark = get_le64(&t.value[1]);
        std::copy_n(t.value.begin() + 9, re.run.size(), re.run.begin());
        re.wrapped_dek.assign(t.value.begin() + 17, t.value.end());
        s.reencrypt = std::move(re);
        break;
      }
      case kTlvDekRun: {
        if (s.dek_run) return corrupt("duplicate re-encryption run record");
        if (t.value.size() != ReencryptRunId{}.size()) return corrupt("re-encryption run record size");
        s.dek_run.emplace();
        std::copy(t.value.begin(), t.value.end(), s.dek_run->begin());
        break;
      }
      default:
        if (t.type & kCritical)
          return Status(Code::kUnsupported, "header: slot has unknown critical record type " +
                                                std::to_string(t.type) + " (written by a newer kmsfs)");
        s.extra.push_back({t.type, Bytes(t.value.begin(), t.value.end())});
    }
  }
  if (!have_key || !have_dek) return corrupt("slot lacks key reference or wrapped key");
  return s;
}

}  // namespace

bool valid_block_size(uint64_t b) noexcept {
  return b >= header::kMinBlockSize && b <= header::kMaxBlockSize && (b & (b - 1)) == 0;
}

int FileHeader::active_slot() const {
  int best = -1;
  for (int i = 0; i < 2; ++i)
    if (slots[i] && (best < 0 || slots[i]->seq > slots[best]->seq)) best = i;
  return best;
}

Result<uint64_t> next_slot_seq(const FileHeader& h) {
  uint64_t top = 0;
  for (const auto& o : h.slots)
    if (o) top = std::max(top, o->seq);
  if (top >= kMaxSlotSeq)
    return Status(Code::kCorrupt, "header: slot sequence number " + std::to_string(top) +
                                      " is at its limit (a tampered slot?): refusing to write");
  return top + 1;
}

bool has_kmsfs_magic(ByteSpan bytes) noexcept {
  return bytes.size() >= sizeof header::kMagic &&
         std::equal(std::begin(header::kMagic), std::end(header::kMagic), bytes.begin());
}

Result<FileHeader> parse_header(ByteSpan bytes) {
  if (bytes.size() < header::kPrefixSize || !has_kmsfs_magic(bytes))
    return Status(Code::kCorrupt, "not a kmsfs file (bad magic)");
  FileHeader h;
  ByteReader r(bytes.subspan(8));
  uint8_t cipher = 0, reserved = 0;
  uint32_t imm_len = 0;
  r.u16(h.version);
  r.u8(cipher);
  r.u8(reserved);
  r.u32(h.header_size);
  r.u32(h.block_size);
  r.u32(h.critical_features);
  r.u32(h.optional_features);
  r.u32(imm_len);
  if (h.version > header::kVersion)
    return Status(Code::kUnsupported, "header: format version " + std::to_string(h.version) +
                                          " is newer than this kmsfs supports (" +
                                          std::to_string(header::kVersion) + "); upgrade kmsfs");
  if (h.version == 0) return corrupt("format version 0");
  if (h.critical_features & ~header::kKnownCriticalFeatures)
    return Status(Code::kUnsupported, "header: unknown critical feature bits " +
                                          std::to_string(h.critical_features & ~header::kKnownCriticalFeatures) +
                                          " (written by a newer kmsfs)");
  if (!cipher_known(cipher)) return Status(Code::kUnsupported, "header: unknown cipher id " + std::to_string(cipher));
  h.cipher = static_cast<CipherId>(cipher);
  if (reserved != 0) return corrupt("reserved byte set");
  if (h.header_size != header::kSize)
    return Status(Code::kUnsupported, "header: header size " + std::to_string(h.header_size) + " not supported");
  if (bytes.size() < h.header_size) return corrupt("truncated (" + std::to_string(bytes.size()) + " of " + std::to_string(h.header_size) + " bytes)");
  if (!valid_block_size(h.block_size)) return corrupt("block size " + std::to_string(h.block_size) + " out of range");
  if (imm_len > header::kMacOffset - header::kPrefixSize) return corrupt("immutable area length");
  std::copy_n(bytes.begin() + 32, 16, h.file_id.begin());

  ASSIGN_OR_RETURN(auto tlvs, read_tlvs(bytes.subspan(header::kPrefixSize, imm_len), "immutable area"));
  bool have_ctx = false;
  for (const auto& t : tlvs) {
    if (t.type == kTlvContext) {
      if (have_ctx) return corrupt("duplicate encryption context");
      auto ctx = EncryptionContext::decode(t.value);
      if (!ctx.ok()) return ctx.status().with_context("header");
      h.context = std::move(*ctx);
      have_ctx = true;
    } else if (t.type & kCritical) {
      return Status(Code::kUnsupported, "header: unknown critical record type " + std::to_string(t.type) + " (written by a newer kmsfs)");
    } else {
      h.extra_immutable.push_back({t.type, Bytes(t.value.begin(), t.value.end())});
    }
  }
  if (!have_ctx) return corrupt("no encryption context");
  std::copy_n(bytes.begin() + header::kMacOffset, 32, h.mac.begin());
  h.immutable_raw.assign(bytes.begin(), bytes.begin() + header::kMacOffset);

  for (int i = 0; i < 2; ++i) {
    auto s = parse_slot(bytes.subspan(header::kSlotOffset[i], header::kSlotSize));
    if (s.ok()) {
      h.slots[i] = std::move(*s);
    } else {
      if (s.status().code() == Code::kUnsupported) return s.status();
      h.slot_problem[i] = s.status().message();
    }
  }
  if (h.active_slot() < 0)
    return corrupt("no valid key slot (slot 0: " + h.slot_problem[0] + "; slot 1: " + h.slot_problem[1] + ")");
  return h;
}

Result<Bytes> encode_immutable(const FileHeader& h, ByteSpan mac_key) {
  ByteWriter tlv;
  put_tlv(tlv, kTlvContext, h.context.canonical());
  for (const auto& e : h.extra_immutable) put_tlv(tlv, e.type, e.value);
  if (tlv.size() > header::kMacOffset - header::kPrefixSize)
    return Status(Code::kInvalidArgument, "header: encryption context too large");
  Bytes out(header::kImmutableSize, 0);
  std::copy(std::begin(header::kMagic), std::end(header::kMagic), out.begin());
  put_le16(&out[8], h.version);
  out[10] = static_cast<uint8_t>(h.cipher);
  out[11] = 0;
  put_le32(&out[12], h.header_size);
  put_le32(&out[16], h.block_size);
  put_le32(&out[20], h.critical_features);
  put_le32(&out[24], h.optional_features);
  put_le32(&out[28], static_cast<uint32_t>(tlv.size()));
  std::copy(h.file_id.begin(), h.file_id.end(), out.begin() + 32);
  std::copy(tlv.bytes().begin(), tlv.bytes().end(), out.begin() + header::kPrefixSize);
  Digest32 mac = hmac_sha256(mac_key, ByteSpan(out).first(header::kMacOffset));
  std::copy(mac.begin(), mac.end(), out.begin() + header::kMacOffset);
  return out;
}

Result<Bytes> encode_slot(const HeaderSlot& slot) {
  if (slot.key.key_id.empty() || slot.key.key_id.size() > kMaxKeyIdSize)
    return Status(Code::kInvalidArgument, "header: key id length out of range");
  ByteWriter tlv;
  put_tlv(tlv, kTlvKeyRef, encode_key_ref(slot.key));
  put_tlv(tlv, kTlvWrappedDek, slot.wrapped_dek);
  if (slot.intermediate) {
    if (slot.intermediate->wrapped.empty())
      return Status(Code::kInvalidArgument, "header: empty intermediate key");
    Bytes v;
    v.push_back(kIntermediateKeyFormat);
    v.insert(v.end(), slot.intermediate->id.begin(), slot.intermediate->id.end());
    v.insert(v.end(), slot.intermediate->wrapped.begin(), slot.intermediate->wrapped.end());
    put_tlv(tlv, kTlvIntermediateKey, v);
  }
  if (slot.reencrypt) {
    if (slot.reencrypt->wrapped_dek.empty())
      return Status(Code::kInvalidArgument, "header: empty re-encryption key");
    Bytes v(1 + 8, 0);
    v[0] = kReencryptFormat;
    put_le64(&v[1], slot.reencrypt->watermark);
    v.insert(v.end(), slot.reencrypt->run.begin(), slot.reencrypt->run.end());
    v.insert(v.end(), slot.reencrypt->wrapped_dek.begin(), slot.reencrypt->wrapped_dek.end());
    put_tlv(tlv, kTlvReencrypt, v);
  }
  if (slot.dek_run) put_tlv(tlv, kTlvDekRun, *slot.dek_run);
  if (slot.state) put_tlv(tlv, kTlvFileState, encode_state(*slot.state));
  for (const auto& e : slot.extra) put_tlv(tlv, e.type, e.value);
  if (tlv.size() > header::kSlotChecksumOffset - 16)
    return Status(Code::kInvalidArgument, "header: key slot contents exceed " +
                                              std::to_string(header::kSlotChecksumOffset - 16) + " bytes");
  Bytes out(header::kSlotSize, 0);
  put_le32(&out[0], header::kSlotMagic);
  put_le32(&out[4], static_cast<uint32_t>(tlv.size()));
  put_le64(&out[8], slot.seq);
  std::copy(tlv.bytes().begin(), tlv.bytes().end(), out.begin() + 16);
  Digest32 sum = sha256(ByteSpan(out).first(header::kSlotChecksumOffset));
  std::copy(sum.begin(), sum.end(), out.begin() + header::kSlotChecksumOffset);
  return out;
}

Status verify_header_mac(const FileHeader& h, ByteSpan mac_key) {
  if (h.immutable_raw.size() != header::kMacOffset) return corrupt("immutable area missing");
  Digest32 want = hmac_sha256(mac_key, h.immutable_raw);
  if (!ct_equal(want, h.mac))
    return Status(Code::kCorrupt,
                  "header does not authenticate: tampered with, copied from another file, or "
                  "wrapped under a different key");
  return Status::Ok();
}

}  // namespace kmsfs
