// OpenSSL's low-level AES_set_encrypt_key is deprecated in 3.0, but it is exactly the
// reference for what an expanded key schedule looks like in memory.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "known_keys.h"

#include <openssl/aes.h>
#include <openssl/evp.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <stdexcept>

#include "crypto/kdf.h"
#include "format/header.h"
#include "format/layout.h"
#include "vault/config.h"
#include "vault/vault.h"

namespace kmsfs::testing {
namespace {

using Block = std::array<uint8_t, 16>;

Bytes read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

Bytes of(std::string_view s) { return Bytes(s.begin(), s.end()); }

Block aes256_block(ByteSpan key, const uint8_t* in) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  Block out{};
  int outl = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_ecb(), nullptr, key.data(), nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1 || EVP_EncryptUpdate(ctx.get(), out.data(), &outl, in, 16) != 1)
    throw std::runtime_error("AES-256-ECB failed");
  return out;
}

// The CMAC subkey doubling (NIST SP 800-38B): shift left by one, 0x87 into the last byte
// if the top bit was set.
Block dbl(const Block& l) {
  Block k{};
  for (size_t i = 0; i + 1 < 16; ++i) k[i] = uint8_t(l[i] << 1 | l[i + 1] >> 7);
  k[15] = uint8_t(l[15] << 1) ^ ((l[0] & 0x80) ? 0x87 : 0);
  return k;
}

Block xaes_k1(ByteSpan key) {
  static const uint8_t kZero[16] = {};
  return dbl(aes256_block(key, kZero));
}

void add_aes_schedule(PatternSet& set, const std::string& category, const std::string& what, ByteSpan key) {
  AES_KEY ks;
  if (AES_set_encrypt_key(key.data(), 256, &ks) != 0) throw std::runtime_error("AES_set_encrypt_key failed");
  // Round keys 0..1 are the key itself (found by the raw pattern); 2..3 and 12..13 are
  // what remains of a schedule whose first bytes were overwritten.
  // Whichever layout this libcrypto's AES_set_encrypt_key writes (its x86_64 code keeps
  // the key bytes in order, its C code big-endian words), make both from it: round keys
  // 0..1 are the key itself, which tells them apart.
  const bool byte_order = std::memcmp(ks.rd_key, key.data(), 32) == 0;
  for (size_t first_word : {8, 48}) {
    Bytes native(32), swapped(32);
    std::memcpy(native.data(), ks.rd_key + first_word, 32);
    for (size_t i = 0; i < 32; ++i) swapped[i] = native[i / 4 * 4 + 3 - i % 4];
    const std::string rounds = first_word == 8 ? "round keys 2-3" : "round keys 12-13";
    set.add({category + " schedule", what + ", " + rounds + " (byte order)", byte_order ? native : swapped});
    set.add({category + " schedule", what + ", " + rounds + " (32-bit words)", byte_order ? swapped : native});
  }
}

// Kx of one XAES message, and the GHASH key of the GCM context keyed with it.
void add_block_subkey(PatternSet& set, ByteSpan key, const Block& k1, const uint8_t* nonce,
                      const std::string& what) {
  Block m1{0x00, 0x01, 'X', 0x00}, m2{0x00, 0x02, 'X', 0x00};
  std::memcpy(m1.data() + 4, nonce, 12);
  std::memcpy(m2.data() + 4, nonce, 12);
  for (size_t i = 0; i < 16; ++i) {
    m1[i] ^= k1[i];
    m2[i] ^= k1[i];
  }
  const Block a = aes256_block(key, m1.data()), b = aes256_block(key, m2.data());
  Bytes kx(a.begin(), a.end());
  kx.insert(kx.end(), b.begin(), b.end());
  set.add({"block subkey", what, kx});
  add_aes_schedule(set, "block subkey", what, kx);
  static const uint8_t kZero[16] = {};
  const Block h = aes256_block(kx, kZero);
  set.add({"block GHASH key", what, Bytes(h.begin(), h.end())});
  // OpenSSL's GCM keeps H as two byte-swapped 64-bit halves.
  Bytes swapped(h.rbegin() + 8, h.rend());
  swapped.insert(swapped.end(), h.rbegin(), h.rbegin() + 8);
  set.add({"block GHASH key", what + " (host order)", swapped});
}

KeyUse use_of(CipherId c) { return c == CipherId::kAes256Gcm ? KeyUse::kXaes : KeyUse::kOpaque; }

Bytes hkdf(ByteSpan ikm, ByteSpan salt, std::string_view info, size_t size = 32) {
  Result<SecureBuffer> k = hkdf_key(ikm, salt, info, size);
  if (!k.ok()) throw std::runtime_error("HKDF: " + k.status().message());
  return Bytes(k->span().begin(), k->span().end());
}

}  // namespace

std::string base64(ByteSpan b) {
  std::string out(4 * ((b.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), b.data(), static_cast<int>(b.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Bytes unbase64(const std::string& s) {
  Bytes out(s.size() / 4 * 3 + 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) throw std::runtime_error("not base64: " + s);
  size_t len = static_cast<size_t>(n);
  for (size_t i = s.size(); i > 0 && s[i - 1] == '='; --i) --len;  // DecodeBlock counts padding
  out.resize(len);
  return out;
}

void add_key(PatternSet& set, const std::string& category, const std::string& what, ByteSpan key, KeyUse use) {
  set.add({category, what, Bytes(key.begin(), key.end())});
  set.add({category + " (hex)", what, of(to_hex(key))});
  std::string hex_upper = to_hex(key);
  for (char& c : hex_upper) c = char(std::toupper(static_cast<unsigned char>(c)));
  set.add({category + " (hex)", what + " upper case", of(hex_upper)});
  // 40 characters encode exactly the first 30 bytes, whatever follows them.
  const std::string b64 = base64(key).substr(0, 40);
  set.add({category + " (base64)", what, of(b64)});
  std::string url = b64;
  for (char& c : url) c = c == '+' ? '-' : c == '/' ? '_' : c;
  if (url != b64) set.add({category + " (base64)", what + " url alphabet", of(url)});
  if (use == KeyUse::kOpaque) return;
  add_aes_schedule(set, category, what, key);
  if (use == KeyUse::kXaes) {
    const Block k1 = xaes_k1(key);
    set.add({category + " XAES K1", what, Bytes(k1.begin(), k1.end())});
  }
}

VaultSecretCount add_vault_keys(PatternSet& set, const std::string& backing, const TestUnwrap& unwrap,
                                bool block_subkeys) {
  namespace fs = std::filesystem;
  VaultSecretCount count;
  const std::string conf_path = backing + "/kmsfs.conf";
  const Bytes conf_raw = read_all(conf_path);
  Result<FsConfig> conf = parse_config(conf_raw, conf_path);
  if (!conf.ok()) throw std::runtime_error(conf.status().message());
  Result<EncryptionContext> fs_ctx = conf->fs_key_context();
  if (!fs_ctx.ok()) throw std::runtime_error(fs_ctx.status().message());
  const Bytes fs_key = unwrap(conf->fs_key_ref, conf->fs_key_wrapped, *fs_ctx);
  const ByteSpan fs_id(conf->fs_id);
  add_key(set, "filesystem key", "filesystem key", fs_key, KeyUse::kOpaque);
  add_key(set, "config MAC key", "config MAC key", hkdf(fs_key, fs_id, "kmsfs v1 config mac key"), KeyUse::kOpaque);
  if (conf->encrypted_names()) {
    // AES-SIV (RFC 5297): the first half keys S2V's CMAC, the second the CTR pass.
    const Bytes name_key = hkdf(fs_key, fs_id, "kmsfs v1 name key", 64);
    add_key(set, "name key", "name key", name_key, KeyUse::kOpaque);
    const ByteSpan mac_half = ByteSpan(name_key).first(32), ctr_half = ByteSpan(name_key).subspan(32);
    add_key(set, "name key", "name key, S2V half", mac_half, KeyUse::kAes);
    add_key(set, "name key", "name key, CTR half", ctr_half, KeyUse::kAes);
    static const uint8_t kZero[16] = {};
    const Block l = aes256_block(mac_half, kZero), k1 = dbl(l), k2 = dbl(k1);
    set.add({"name key CMAC subkey", "name key CMAC K1", Bytes(k1.begin(), k1.end())});
    set.add({"name key CMAC subkey", "name key CMAC K2", Bytes(k2.begin(), k2.end())});
    add_key(set, "name value key", "name value key", hkdf(fs_key, fs_id, "kmsfs v1 name value key"),
            use_of(conf->cipher));
  }

  std::set<Bytes> intermediate_seen;  // one intermediate key wraps many files' DEKs
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(backing, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    std::ifstream in(entry.path(), std::ios::binary);  // gone already: a load renamed it
    const Bytes raw(std::istreambuf_iterator<char>(in), {});
    if (!has_kmsfs_magic(raw)) continue;
    Result<FileHeader> h = parse_header(raw);
    const int active = h.ok() ? h->active_slot() : -1;
    if (active < 0) continue;
    const HeaderSlot& slot = *h->slots[active];
    const std::string file = "file " + to_hex(h->file_id);
    // The vault library's own slot reading (it knows the intermediate-key layout, §3.4.3);
    // the keys come from the test's unwrap, and whatever the provider hands back is a secret.
    const bool provider_key_is_intermediate = slot.intermediate.has_value();
    ProviderUnwrap recording = [&](const KeyRef& ref, ByteSpan wrapped,
                                   const EncryptionContext& ctx) -> Result<std::shared_ptr<const SecureBuffer>> {
      const Bytes k = unwrap(ref, wrapped, ctx);
      if (provider_key_is_intermediate && intermediate_seen.insert(k).second) add_key(set, "intermediate key", "intermediate key of " + file, k, KeyUse::kOpaque);
      return std::make_shared<const SecureBuffer>(SecureBuffer::copy_of(k));
    };
    Result<SecureBuffer> dek_buf = slot_dek(*h, slot, recording);
    if (!dek_buf.ok()) throw std::runtime_error(file + ": " + dek_buf.status().message());
    const Bytes dek(dek_buf->span().begin(), dek_buf->span().end());
    ++count.files;
    const ByteSpan file_id(h->file_id);
    add_key(set, "DEK", "DEK of " + file, dek, KeyUse::kOpaque);
    const Bytes content = hkdf(dek, file_id, "kmsfs v1 content key");
    add_key(set, "content key", "content key of " + file, content, use_of(h->cipher));
    add_key(set, "header MAC key", "header MAC key of " + file, hkdf(dek, file_id, "kmsfs v1 header mac key"),
            KeyUse::kOpaque);
    add_key(set, "state MAC key", "state MAC key of " + file, hkdf(dek, file_id, "kmsfs v1 file state mac key"),
            KeyUse::kOpaque);
    if (!block_subkeys || h->cipher != CipherId::kAes256Gcm) continue;
    const Block k1 = xaes_k1(content);
    const Layout layout = Layout::of(h->header_size, h->block_size);
    for (uint64_t i = 0; layout.block_offset(i) + kAeadNonceSize <= raw.size(); ++i) {
      add_block_subkey(set, content, k1, raw.data() + layout.block_offset(i),
                       "subkey of block " + std::to_string(i) + " of " + file);
      ++count.block_subkeys;
    }
  }
  return count;
}

}  // namespace kmsfs::testing
