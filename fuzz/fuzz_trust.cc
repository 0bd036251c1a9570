// The trust record (vault/trust_store): this host's anchor for a vault, outside the
// backing directory, read by every mount and offline tool. Its writer is root or the
// user, but a damaged or hand-edited file must be refused, never misread. Oracles: no
// crash or throw; a record that parses serialises to text that parses to a record that
// serialises identically; the generation is read as written; a record with operator-given
// strings in any encoding serialises, or is refused if the keyring path or a key id is not
// UTF-8, and never throws.
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "vault/trust_store.h"

using namespace kmsfs;
using json = nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto r = parse_trust_record(text, "trust.json");
  if (r.ok()) {
    const json in = json::parse(text, nullptr, false);
    const json& g = in.at("generation");
    FUZZ_CHECK(g.is_number_unsigned() && g.get<uint64_t>() == r->generation, "generation read as written: " + g.dump());
    auto out = serialize_trust_record(*r);
    FUZZ_CHECK(out.ok(), "a parsed record serialises: " + out.status().message());
    auto again = parse_trust_record(*out, "rewritten");
    FUZZ_CHECK(again.ok(), "a serialised record parses: " + again.status().message());
    auto out2 = serialize_trust_record(*again);
    FUZZ_CHECK(out2.ok() && *out2 == *out, "a rewrite changes nothing");
    FUZZ_CHECK(again->fs_id == r->fs_id && again->keys == r->keys && again->distrusted == r->distrusted &&
                   again->keyring == r->keyring,
               "fields survive");
  }
  // A record as `kmsfs init` / `trust accept` make it, from operator strings.
  TrustRecord made;
  fuzz::Input in(data, size);
  made.keyring = "/" + in.piece();
  made.vault_dir = in.piece();
  made.keys.push_back({ProviderId::kKeyring, in.rest()});
  auto m = serialize_trust_record(made);
  FUZZ_CHECK(m.ok() == (is_utf8(made.keyring) && is_utf8(made.keys[0].key_id)),
             "refused exactly when the keyring path or key id is not UTF-8: " + m.status().message());
  if (m.ok()) {
    auto back = parse_trust_record(*m, "made");
    FUZZ_CHECK(back.ok() && back->keyring == made.keyring && back->keys == made.keys, "operator strings read back");
  }
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  TrustRecord r;
  r.fs_id[0] = 0x42;
  r.generation = 5;
  r.keys = {{ProviderId::kKeyring, "main"}, {ProviderId::kAwsKms, "arn:aws:kms:eu-west-1:111122223333:key/k1"}};
  r.distrusted = {{ProviderId::kKeyring, "old"}};
  r.keyring = "/etc/kmsfs/keyring";
  r.vault_dir = "/srv/vault";
  r.updated = "2026-01-02T03:04:05Z";
  out("full", *serialize_trust_record(r));
  r.distrusted.clear();
  r.keyring.clear();
  out("aws", *serialize_trust_record(r));
}
