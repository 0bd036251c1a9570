// The keyring file (keys/keyring): its framing and its metadata JSON. A keyring is the
// operator's file, but a damaged one, or one an attacker swapped where permissions were
// lax, must be refused, never misread. Oracles: no crash or throw; an unsealed container
// that parses is rebuilt byte for byte from its parts; a sealed one's AAD is its prefix;
// metadata that parses encodes to metadata that parses and encodes identically.
#include "crypto/secure_buffer.h"
#include "fuzz_check.h"
#include "keys/keyring/keyring_file.h"
#include "keys/keyring/keyring_meta.h"

using namespace kmsfs;

namespace {

void check_meta(ByteSpan json, bool sealed) {
  auto m = parse_meta(json, sealed);
  if (!m.ok()) return;
  FUZZ_CHECK(m->kdf.has_value() == sealed, "kdf present exactly when sealed");
  for (const auto& k : m->keys) {
    FUZZ_CHECK(!k.versions.empty(), "a key has versions");
    for (size_t i = 0; i < k.versions.size(); ++i) FUZZ_CHECK(k.versions[i].version == i + 1, "versions consecutive");
  }
  const std::string enc = encode_meta(*m);
  auto again = parse_meta(as_bytes(enc), sealed);
  FUZZ_CHECK(again.ok(), "encoded meta parses: " + again.status().message());
  FUZZ_CHECK(encode_meta(*again) == enc, "meta round trip");
}

void check_container(ByteSpan file) {
  auto c = parse_keyring_container(file);
  if (!c.ok()) return;
  FUZZ_CHECK(c->blob.size() == (c->sealed ? c->blob.size() : c->material_count * kKeyringMaterialSize),
             "unsealed blob is whole keys");
  const Bytes prefix = keyring_prefix(c->sealed, c->pruned, as_chars(c->meta));
  FUZZ_CHECK(Bytes(c->aad.begin(), c->aad.end()) == prefix, "AAD is the prefix");
  if (!c->sealed) {
    SecureBuffer again = build_plain_keyring(as_chars(c->meta), c->blob, c->pruned);
    FUZZ_CHECK(Bytes(again.span().begin(), again.span().end()) == Bytes(file.begin(), file.end()),
               "unsealed keyring rebuilt byte for byte");
  }
  check_meta(c->meta, c->sealed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t mode = in.byte();
  if (mode & 1) {
    // Raw file bytes.
    check_container(ByteSpan(data, size));
    return 0;
  }
  // Meta JSON inside a correctly framed and checksummed unsealed file (what a writer who
  // recomputes the checksum can make), or on its own as sealed meta.
  const std::string materials = in.piece(128);
  const std::string meta = in.rest();
  if (mode & 2) {
    check_meta(as_bytes(meta), true);
    return 0;
  }
  const size_t whole = materials.size() / kKeyringMaterialSize * kKeyringMaterialSize;
  SecureBuffer file = build_plain_keyring(meta, as_bytes(std::string_view(materials).substr(0, whole)), mode & 4);
  check_container(file.span());
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  for (const char* f : {"keyring", "keyring-sealed"}) {
    const std::string file = read_fixture(std::string("v1/") + f);
    out(std::string(f) + "-file", std::string(1, '\1') + file);
    auto c = parse_keyring_container(as_bytes(file));
    FUZZ_CHECK(c.ok(), "fixture keyring parses");
    const std::string meta(as_chars(c->meta));
    if (c->sealed) {
      out(std::string(f) + "-meta", std::string(1, '\2') + std::string(1, '\0') + meta);
    } else {
      const std::string blob(as_chars(c->blob));
      out(std::string(f) + "-meta",
          std::string(1, '\0') + std::string(1, char(std::min<size_t>(blob.size(), 128) * 255 / 128)) +
              blob.substr(0, 128) + meta);
    }
  }
}
