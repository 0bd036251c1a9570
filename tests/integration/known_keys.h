// The key material of a vault, worked out by the test from what it legitimately knows (the
// keyring file it made, or the KMS server it runs) and what the backing directory holds,
// as search patterns: every key in each form it could take in memory or in a log line.
// Derivations are written out here from FORMAT.md (§4 file keys, §11 name keys, the C2SP
// XAES-256-GCM spec), not taken from the daemon's code, so a key the daemon holds under
// another name would still be recognised.
#pragma once

#include <functional>
#include <string>

#include "base/bytes.h"
#include "core_scan.h"
#include "format/key_ref.h"

namespace kmsfs::testing {

enum class KeyUse {
  kOpaque,  // HMAC, HKDF input, XChaCha20 key: the raw bytes only
  kAes,     // an AES-256 key: also its expanded key schedule
  kXaes,    // an XAES-256-GCM key: also its schedule and its CMAC subkey K1
};

// The raw bytes, their hex and base64 spellings (a KMS answer carries keys in base64), and
// per `use` the AES-256 round keys 2..3 and 12..13 in both layouts OpenSSL uses (AES-NI:
// byte order; its C code: big-endian 32-bit words in host order) and XAES's K1.
void add_key(PatternSet& set, const std::string& category, const std::string& what, ByteSpan key, KeyUse use);

// Unwraps a provider-wrapped key the way the test can: its own keyring provider, or the
// KMS server's Decrypt. Throws on failure.
using TestUnwrap = std::function<Bytes(const KeyRef&, ByteSpan wrapped, const EncryptionContext&)>;

struct VaultSecretCount {
  size_t files = 0;
  size_t block_subkeys = 0;
};

// Every key of the vault at `backing`: the filesystem key and what derives from it (config
// MAC key, name key, name value key), and per file its DEK (with its intermediate key in
// that mode), content key, header and state MAC keys. With `block_subkeys`, for XAES files
// also the per-message subkey Kx of every block on disk, its key schedule and its GHASH
// key (what a pooled GCM context keeps after its last message).
VaultSecretCount add_vault_keys(PatternSet& set, const std::string& backing, const TestUnwrap& unwrap,
                                bool block_subkeys);

// Base64 (standard alphabet, padded), for keys the test reads from a KMS answer.
std::string base64(ByteSpan b);
Bytes unbase64(const std::string& s);

}  // namespace kmsfs::testing
