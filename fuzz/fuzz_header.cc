// The file header (format/header): the first 4096 bytes of every backing file, written
// by whoever can write the backing directory. Oracles: parsing never crashes; a header
// that parses re-encodes (immutable area, each slot) to one that parses to the same
// fields; the MAC never verifies under a key that did not make it; the next slot
// sequence number is above both slots' and refused near the top.
#include <algorithm>
#include <cstring>

#include "crypto/kdf.h"
#include "format/header.h"
#include "fuzz_check.h"

using namespace kmsfs;

namespace {

void same_slot(const HeaderSlot& a, const HeaderSlot& b) {
  FUZZ_CHECK(a.seq == b.seq, "slot seq");
  FUZZ_CHECK(a.key == b.key, "slot key ref");
  FUZZ_CHECK(a.wrapped_dek == b.wrapped_dek, "slot wrapped DEK");
  FUZZ_CHECK(a.intermediate == b.intermediate, "slot intermediate record");
  FUZZ_CHECK(a.reencrypt == b.reencrypt, "slot re-encryption record");
  FUZZ_CHECK(a.dek_run == b.dek_run, "slot dek run");
  FUZZ_CHECK(a.state == b.state, "slot file state");
  FUZZ_CHECK(a.extra == b.extra, "slot unknown records");
}

void check_parsed(const FileHeader& h) {
  const int active = h.active_slot();
  FUZZ_CHECK(active >= 0, "a parsed header has a slot");
  auto next = next_slot_seq(h);
  for (const auto& s : h.slots) {
    if (!s) continue;
    FUZZ_CHECK(s->seq <= h.slots[active]->seq, "the active slot has the highest seq");
    if (next.ok()) FUZZ_CHECK(*next > s->seq, "the next seq is above every slot's");
    else FUZZ_CHECK(s->seq >= kMaxSlotSeq || h.slots[active]->seq >= kMaxSlotSeq, "refused below the limit");
  }

  // Re-encode under a key of ours: the result parses to the same header, its MAC verifies
  // under that key only.
  const uint8_t key_a[32] = {1}, key_b[32] = {2};
  auto imm = encode_immutable(h, ByteSpan(key_a, 32));
  FUZZ_CHECK(imm.ok(), "a parsed header re-encodes: " + imm.status().message());
  FUZZ_CHECK(!verify_header_mac(h, ByteSpan(key_a, 32)).ok() || std::equal(h.mac.begin(), h.mac.end(), imm->begin() + header::kMacOffset),
             "the MAC verifies only as computed");
  Bytes file(header::kSize, 0);
  std::copy(imm->begin(), imm->end(), file.begin());
  for (int i = 0; i < 2; ++i) {
    if (!h.slots[i]) continue;
    auto slot = encode_slot(*h.slots[i]);
    FUZZ_CHECK(slot.ok(), "a parsed slot re-encodes: " + slot.status().message());
    FUZZ_CHECK(slot->size() == header::kSlotSize, "slot size");
    std::copy(slot->begin(), slot->end(), file.begin() + header::kSlotOffset[i]);
  }
  auto again = parse_header(file);
  FUZZ_CHECK(again.ok(), "a re-encoded header parses: " + again.status().message());
  FUZZ_CHECK(again->version == h.version && again->cipher == h.cipher && again->block_size == h.block_size &&
                 again->critical_features == h.critical_features && again->optional_features == h.optional_features,
             "prefix fields survive the round trip");
  FUZZ_CHECK(again->file_id == h.file_id, "file id");
  FUZZ_CHECK(again->context == h.context, "encryption context");
  FUZZ_CHECK(again->extra_immutable == h.extra_immutable, "unknown immutable records");
  for (int i = 0; i < 2; ++i) {
    FUZZ_CHECK(again->slots[i].has_value() == h.slots[i].has_value(), "slot presence");
    if (h.slots[i]) same_slot(*h.slots[i], *again->slots[i]);
  }
  FUZZ_CHECK(verify_header_mac(*again, ByteSpan(key_a, 32)).ok(), "our MAC verifies");
  FUZZ_CHECK(!verify_header_mac(*again, ByteSpan(key_b, 32)).ok(), "a MAC verifies under another key");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto h = parse_header(ByteSpan(data, size));
  if (h.ok()) check_parsed(*h);
  // The slots are checksummed (torn writes), which random bytes never match: a storage
  // writer recomputes the checksum, so the fuzzer does too, to reach the slot parser.
  if (size >= header::kSize) {
    Bytes fixed(data, data + header::kSize);
    for (size_t off : header::kSlotOffset) {
      ByteSpan slot(fixed.data() + off, header::kSlotSize);
      if (std::all_of(slot.begin(), slot.end(), [](uint8_t c) { return c == 0; })) continue;
      Digest32 sum = sha256(slot.first(header::kSlotChecksumOffset));
      std::copy(sum.begin(), sum.end(), fixed.begin() + off + header::kSlotChecksumOffset);
    }
    auto hf = parse_header(fixed);
    if (hf.ok()) check_parsed(*hf);
  }
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  for (const char* v : {"vault-aes-4k", "vault-xchacha-1k", "vault-sealed"})
    for (const char* f : {"empty", "one", "b4097"})
      out(std::string(v) + "-" + f, read_fixture(std::string("v1/") + v + "/" + f, header::kSize));
  // Every slot record kind, which the fixtures (made before some existed) lack.
  FileHeader h;
  h.file_id[3] = 9;
  (void)h.context.set("kmsfs:fs-id", "00112233445566778899aabbccddeeff");
  (void)h.context.set("team", "storage");
  h.extra_immutable.push_back({0x0101, Bytes{1, 2, 3}});
  HeaderSlot s;
  s.seq = 7;
  s.key = KeyRef{ProviderId::kAwsKms, "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd", 0};
  s.wrapped_dek = Bytes(64, 0xab);
  s.intermediate = IntermediateKeyRecord{{1, 2, 3}, Bytes(40, 0xcd)};
  s.reencrypt = ReencryptRecord{3, {4, 5}, Bytes(48, 0xef)};
  s.dek_run = ReencryptRunId{6};
  s.state = SealedFileState{2, {{1, 4}, {9, 12}}, {}};
  s.extra.push_back({0x0111, Bytes{7}});
  const uint8_t key[32] = {};
  Bytes file(header::kSize, 0);
  auto imm = encode_immutable(h, ByteSpan(key, 32));
  auto slot0 = encode_slot(s);
  s.seq = 8;
  s.key = KeyRef{ProviderId::kKeyring, "main", 2};
  s.intermediate.reset();
  auto slot1 = encode_slot(s);
  FUZZ_CHECK(imm.ok() && slot0.ok() && slot1.ok(), "seed header encodes");
  std::copy(imm->begin(), imm->end(), file.begin());
  std::copy(slot0->begin(), slot0->end(), file.begin() + header::kSlotOffset[0]);
  out("all-records-one-slot", std::string(as_chars(file)));
  std::copy(slot1->begin(), slot1->end(), file.begin() + header::kSlotOffset[1]);
  out("all-records", std::string(as_chars(file)));
}
