// The re-encryption journal (format/reencrypt_journal): kmsfs.journal in the backing
// root, read by recovery as root at mount time. Oracles: parsing never crashes; an entry
// that parses encodes back to exactly the bytes read (nothing recovery acts on is lost or
// changed by a save); its path can be handed to a path syscall (shorter than PATH_MAX, no
// NUL that would silently cut it).
#include <climits>
#include <cstring>

#include "crypto/kdf.h"
#include "format/reencrypt_journal.h"
#include "fuzz_check.h"

using namespace kmsfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // As read, and with the checksum a storage writer would recompute (random bytes never
  // match it, so without this the fuzzer would not get past it).
  Bytes fixed(data, data + size);
  if (size >= 32) {
    Digest32 sum = sha256(ByteSpan(fixed).first(size - 32));
    std::copy(sum.begin(), sum.end(), fixed.end() - 32);
  }
  for (const Bytes& raw : {Bytes(data, data + size), fixed}) {
    auto e = parse_journal_entry(raw, "kmsfs.journal");
    if (!e.ok() || !e->has_value()) continue;
    const JournalEntry& j = **e;
    FUZZ_CHECK(j.path.size() < PATH_MAX, "a journaled path a syscall takes");
    FUZZ_CHECK(j.path.find('\0') == std::string::npos, "a journaled path without NUL");
    FUZZ_CHECK(encode_journal_entry(j) == raw, "an entry saves as it was read");
  }
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  JournalEntry e;
  e.file_id[0] = 1;
  e.next_wrap[1] = 2;
  e.from_block = 4;
  e.to_block = 8;
  e.offset = 4096 + 4 * 4124;
  e.path = "reports/2026/q3.pdf";
  e.data = Bytes(300, 0x5a);
  out("entry", std::string(as_chars(encode_journal_entry(e))));
  e.path.clear();
  e.data.clear();
  out("entry-no-path", std::string(as_chars(encode_journal_entry(e))));
}
