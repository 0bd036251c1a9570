// The vault config (vault/config): kmsfs.conf in the backing root, parsed before its MAC
// can be checked (the MAC key comes from the key the config names). Oracles: parsing
// never crashes or throws; a config that parses serialises, and that parses to a config
// that serialises to the same bytes (no field changes on a rewrite); the MAC verifies
// under the key that made it and under no other; integer fields are integers in range in
// the file (a 4096.5 or a -1 must not become some other number); a config holding
// operator-given strings (a keyring path in any encoding) serialises without throwing.
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "vault/config.h"

using namespace kmsfs;
using json = nlohmann::json;

namespace {

const uint8_t kKeyA[32] = {0xa};
const uint8_t kKeyB[32] = {0xb};

// What the file says at a path, if anything.
const json* at(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return nullptr;
    p = &(*p)[k];
  }
  return p;
}

void integers_as_written(const json& in, const FsConfig& c) {
  struct Field {
    std::initializer_list<const char*> path;
    uint64_t parsed;
  };
  const Field fields[] = {{{"kmsfs_config"}, c.version},
                          {{"block_size"}, c.block_size},
                          {{"header_size"}, c.header_size},
                          {{"names", "longname_max"}, c.longname_max},
                          {{"key_mode", "intermediate_max_files"}, c.intermediate_max_files},
                          {{"key_mode", "intermediate_max_age_s"}, c.intermediate_max_age_s},
                          {{"fs_key", "version"}, c.fs_key_ref.version},
                          {{"generation"}, c.generation}};
  for (const auto& f : fields) {
    const json* v = at(in, f.path);
    if (!v) continue;
    // A plaintext-names config has no use for "names", and the parser ignores it as it
    // ignores any member it does not read.
    if (!c.encrypted_names() && *f.path.begin() == std::string_view("names")) continue;
    FUZZ_CHECK(v->is_number_unsigned(), "an accepted integer field is an unsigned integer: " + v->dump());
    FUZZ_CHECK(v->get<uint64_t>() == f.parsed, "an integer field read as written: " + v->dump());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan text(data, size);
  auto c = parse_config(text, "kmsfs.conf");
  if (!c.ok()) return 0;
  const json in = json::parse(as_chars(text), nullptr, false);
  FUZZ_CHECK(!in.is_discarded(), "accepted text is JSON");
  integers_as_written(in, *c);

  auto out = serialize_config(*c, ByteSpan(kKeyA, 32));
  FUZZ_CHECK(out.ok(), "an accepted config serialises: " + out.status().message());
  auto again = parse_config(*out, "rewritten");
  FUZZ_CHECK(again.ok(), "a serialised config parses: " + again.status().message());
  auto out2 = serialize_config(*again, ByteSpan(kKeyA, 32));
  FUZZ_CHECK(out2.ok() && *out2 == *out, "a rewrite changes nothing");
  FUZZ_CHECK(verify_config(*out, *again, ByteSpan(kKeyA, 32), "rewritten").ok(), "our MAC verifies");
  FUZZ_CHECK(!verify_config(*out, *again, ByteSpan(kKeyB, 32), "rewritten").ok(), "a MAC verifies under another key");

  // Operator-given strings (init's --keyring path) in any bytes: an error, never a throw.
  FsConfig odd = std::move(*c);
  odd.keyring_hint = std::string(as_chars(text.first(std::min<size_t>(size, 64))));
  (void)serialize_config(odd, ByteSpan(kKeyA, 32));
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  for (const char* v : {"vault-aes-4k", "vault-xchacha-1k", "vault-sealed"})
    out(v, read_fixture(std::string("v1/") + v + "/kmsfs.conf"));
  // What newer configs carry: key modes, generations, trust keys, endorsements.
  FsConfig c;
  c.fs_id[0] = 1;
  c.created = "2026-01-02T03:04:05Z";
  c.features = {kFeatureIntermediateKeys};
  c.key_spec = "arn:aws:kms:eu-west-1:111122223333:alias/vault";
  c.provider = ProviderId::kAwsKms;
  (void)c.user_context.set("team", "storage");
  c.key_mode = KeyMode::kIntermediate;
  c.fs_key_ref = KeyRef{ProviderId::kAwsKms, "arn:aws:kms:eu-west-1:111122223333:key/k1", 0};
  c.fs_key_wrapped = Bytes(48, 0x11);
  c.generation = 3;
  c.trust_keys = {{ProviderId::kAwsKms, "arn:aws:kms:eu-west-1:111122223333:key/k1"},
                  {ProviderId::kKeyring, "main"}};
  c.endorsements.push_back({KeyRef{ProviderId::kKeyring, "main", 2}, Bytes(60, 0x22)});
  auto s = serialize_config(c, ByteSpan(kKeyA, 32));
  FUZZ_CHECK(s.ok(), "seed config");
  out("everything", std::string(as_chars(*s)));
  c.name_mode = "plaintext";
  c.key_mode = KeyMode::kPerFile;
  s = serialize_config(c, ByteSpan(kKeyA, 32));
  out("plaintext-names", std::string(as_chars(*s)));
}
