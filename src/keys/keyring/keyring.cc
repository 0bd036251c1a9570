#include "keys/keyring/keyring.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "base/file_io.h"
#include "crypto/aead.h"
#include "crypto/random.h"
#include "keys/keyring/key_spec.h"
#include "keys/keyring/keyring_file.h"
#include "keys/keyring/timestamp.h"
#include "keys/keyring/wipe_on_exit.h"

namespace kmsfs {

namespace {

constexpr mode_t kKeyringMode = 0600;

std::span<const char> as_char_span(const SecureBuffer& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

Result<SecureBuffer> derive_kek(const SecureBuffer& passphrase, const KdfMeta& kdf) {
  SecureBuffer kek(kAeadKeySize);
  RETURN_IF_ERROR(argon2id(as_char_span(passphrase), kdf.salt, kdf.params, kek.span()));
  return kek;
}

Result<KdfMeta> new_kdf(const SecureBuffer* passphrase, const Argon2Params& params) {
  if (passphrase->empty()) return Status(Code::kInvalidArgument, "empty passphrase");
  RETURN_IF_ERROR(check_keyring_kdf_params(params));
  KdfMeta kdf;
  random_bytes(kdf.salt);
  kdf.params = params;
  return kdf;
}

SecureBuffer new_material() {
  SecureBuffer m(kKeyringMaterialSize);
  random_bytes(m.span());
  return m;
}

// Everything a keyring file says, checked, before anything is decrypted.
struct ParsedFile {
  KeyringContainer container;
  KeyringMeta meta;
};

Result<ParsedFile> parse_file(const std::string& path, ByteSpan bytes) {
  auto where = [&](const Status& s) { return s.with_context("keyring " + path); };
  auto c = parse_keyring_container(bytes);
  if (!c.ok()) return where(c.status());
  auto meta = parse_meta(c->meta, c->sealed);
  if (!meta.ok()) return where(meta.status());
  if (meta->any_pruned() && !c->pruned)
    return where(Status(Code::kCorrupt, "meta lists a pruned version, but the file lacks the pruned flag"));
  if (meta->material_count() != c->material_count) {
    return where(Status(Code::kCorrupt, "blob: holds " + std::to_string(c->material_count) +
                                            " keys but meta lists " +
                                            std::to_string(meta->material_count())));
  }
  return ParsedFile{*c, std::move(meta).value()};
}

}  // namespace

Status check_keyring_kdf_params(const Argon2Params& p) {
  if (p.opslimit < kMinArgon2Ops || p.opslimit > kMaxArgon2Ops)
    return Status(Code::kInvalidArgument, "argon2id opslimit must be in [" +
                                              std::to_string(kMinArgon2Ops) + ", " +
                                              std::to_string(kMaxArgon2Ops) + "]");
  if (p.memlimit < kMinArgon2Mem || p.memlimit > kMaxArgon2Mem)
    return Status(Code::kInvalidArgument, "argon2id memlimit must be in [8 KiB, 4 GiB]");
  return Status::Ok();
}

Result<Keyring> Keyring::create(const std::string& path, const SecureBuffer* passphrase,
                                const Argon2Params& kdf,
                                std::span<const std::string> initial_keys) {
  Keyring k;
  k.path_ = path;
  uint8_t id[kKeyringIdHexSize / 2];
  random_bytes(id);
  k.meta_.keyring_id = to_hex(id);
  k.meta_.created = rfc3339_utc_now();
  if (passphrase != nullptr) {
    ASSIGN_OR_RETURN(KdfMeta meta_kdf, new_kdf(passphrase, kdf));
    ASSIGN_OR_RETURN(k.kek_, derive_kek(*passphrase, meta_kdf));
    k.meta_.kdf = meta_kdf;
  }
  for (const auto& name : initial_keys) RETURN_IF_ERROR(k.add_key(name));
  RETURN_IF_ERROR(k.write(/*exclusive=*/true));
  return k;
}

Result<Keyring> Keyring::open(const std::string& path, const SecureBuffer* passphrase) {
  return load(path, passphrase, nullptr);
}

Status Keyring::reload() {
  ASSIGN_OR_RETURN(Keyring fresh, load(path_, nullptr, this));
  if (fresh.meta_.keyring_id != meta_.keyring_id)
    return Status(Code::kPermissionDenied, "keyring " + path_ + " was replaced by another keyring (id " +
                                               fresh.meta_.keyring_id + "); remount to use it");
  *this = std::move(fresh);
  return Status::Ok();
}

Result<Keyring> Keyring::load(const std::string& path, const SecureBuffer* passphrase, const Keyring* previous) {
  auto read = read_file(path, kMaxKeyringFileSize);
  if (!read.ok()) return read.status().with_context("opening keyring");
  Bytes bytes = std::move(read).value();
  WipeOnExit wipe(bytes);  // an unsealed keyring's bytes are raw key material
  ASSIGN_OR_RETURN(ParsedFile f, parse_file(path, bytes));

  Keyring k;
  k.path_ = path;
  k.meta_ = std::move(f.meta);
  SecureBuffer sealed_materials;
  ByteSpan materials = f.container.blob;
  if (f.container.sealed) {
    // A reload reuses the KEK it was opened with: same passphrase, same salt.
    const bool same_kdf = previous && previous->meta_.kdf && previous->meta_.kdf->salt == k.meta_.kdf->salt &&
                          previous->meta_.kdf->params.opslimit == k.meta_.kdf->params.opslimit &&
                          previous->meta_.kdf->params.memlimit == k.meta_.kdf->params.memlimit;
    if (previous && !same_kdf)
      return Status(Code::kPermissionDenied, "keyring " + path + ": its passphrase changed since it was opened; remount");
    if (!previous && passphrase == nullptr)
      return Status(Code::kInvalidArgument, "keyring " + path + " is sealed: a passphrase is needed");
    Result<SecureBuffer> kek = previous ? Result<SecureBuffer>(previous->kek_.clone()) : derive_kek(*passphrase, *k.meta_.kdf);
    if (!kek.ok()) {
      // The bounds in keyring_meta should make this unreachable for parameters; memory
      // exhaustion is passed on as is.
      if (kek.status().code() == Code::kInvalidArgument)
        return k.corrupt("meta.kdf: parameters rejected (" + kek.status().message() + ")");
      return kek.status().with_context("keyring " + path);
    }
    k.kek_ = std::move(kek).value();
    ASSIGN_OR_RETURN(auto aead, Aead::create(CipherId::kXChaCha20Poly1305, k.kek_.span()));
    size_t n = f.container.blob.size() - kAeadOverhead;
    if (n > 0) sealed_materials = SecureBuffer(n);
    Status s = aead->open(f.container.blob, f.container.aad, sealed_materials.span());
    if (!s.ok()) {
      if (s.code() != Code::kCorrupt) return s.with_context("keyring " + path);
      return Status(Code::kPermissionDenied,
                    "keyring " + path + ": wrong passphrase (or the keyring was modified)");
    }
    materials = sealed_materials.span();
  }

  size_t off = 0;
  for (const auto& key : k.meta_.keys) {
    auto& mats = k.materials_.emplace_back();
    for (const auto& v : key.versions) {
      if (v.state == KeyState::kPruned) {
        mats.emplace_back();  // nothing in the blob
        continue;
      }
      mats.push_back(SecureBuffer::copy_of(materials.subspan(off, kKeyringMaterialSize)));
      off += kKeyringMaterialSize;
    }
  }
  return k;
}

Result<KeyringInfo> Keyring::peek(const std::string& path) {
  auto read = read_file(path, kMaxKeyringFileSize);
  if (!read.ok()) return read.status().with_context("opening keyring");
  Bytes bytes = std::move(read).value();
  WipeOnExit wipe(bytes);
  ASSIGN_OR_RETURN(ParsedFile f, parse_file(path, bytes));
  KeyringInfo info;
  info.path = path;
  info.id = f.meta.keyring_id;
  info.created = f.meta.created;
  info.sealed = f.container.sealed;
  if (f.meta.kdf) info.kdf = f.meta.kdf->params;
  info.keys = std::move(f.meta.keys);
  return info;
}

Status Keyring::add_key(std::string_view name) {
  if (!valid_key_name(name))
    return Status(Code::kInvalidArgument,
                  "key name '" + std::string(name) + "' must match [A-Za-z0-9._-]{1,64}");
  if (find(name) != nullptr)
    return Status(Code::kAlreadyExists,
                  "key '" + std::string(name) + "' already exists in keyring " + path_);
  KeyInfo key;
  key.name = std::string(name);
  key.versions.push_back({1, rfc3339_utc_now(), KeyState::kEnabled});
  std::vector<SecureBuffer> mats;
  mats.push_back(new_material());
  meta_.keys.push_back(std::move(key));
  materials_.push_back(std::move(mats));
  return Status::Ok();
}

Result<uint32_t> Keyring::rotate(std::string_view name) {
  KeyInfo* key = find(name);
  if (key == nullptr)
    return Status(Code::kNotFound,
                  "key '" + std::string(name) + "' not found in keyring " + path_);
  if (key->versions.size() >= UINT32_MAX)
    return Status(Code::kInvalidArgument, "key '" + key->name + "' has too many versions");
  auto& mats = materials_[index_of(key)];
  uint32_t version = static_cast<uint32_t>(key->versions.size() + 1);
  mats.push_back(new_material());
  key->versions.push_back({version, rfc3339_utc_now(), KeyState::kEnabled});
  return version;
}

Status Keyring::set_state(std::string_view name, uint32_t version, KeyState state) {
  KeyInfo* key = find(name);
  if (key == nullptr)
    return Status(Code::kNotFound,
                  "key '" + std::string(name) + "' not found in keyring " + path_);
  if (version == 0 || version > key->versions.size())
    return Status(Code::kNotFound, "key '" + key->name + "' has no version " +
                                       std::to_string(version) + " in keyring " + path_);
  if (key->versions[version - 1].state == KeyState::kPruned) return pruned(key->name, version);
  if (state == KeyState::kPruned) return Status(Code::kInvalidArgument, "only prune() prunes a key version");
  key->versions[version - 1].state = state;
  return Status::Ok();
}

Status Keyring::prune(std::string_view name, uint32_t version) {
  KeyInfo* key = find(name);
  if (key == nullptr)
    return Status(Code::kNotFound, "key '" + std::string(name) + "' not found in keyring " + path_);
  if (version == 0 || version > key->versions.size())
    return Status(Code::kNotFound, "key '" + key->name + "' has no version " + std::to_string(version) +
                                       " in keyring " + path_);
  KeyVersionInfo& v = key->versions[version - 1];
  if (v.state == KeyState::kPruned) return pruned(key->name, version);
  if (v.state == KeyState::kEnabled)
    return Status(Code::kAlreadyExists, "key '" + key->name + "' version " + std::to_string(version) +
                                            " is enabled: disable it first");
  v.state = KeyState::kPruned;
  materials_[index_of(key)][version - 1] = SecureBuffer();  // wiped as it goes
  return Status::Ok();
}

Status Keyring::pruned(const std::string& name, uint32_t version) const {
  return Status(Code::kNotFound, "key '" + name + "' version " + std::to_string(version) + " was pruned from keyring " +
                                     path_ + " (its key material is destroyed)");
}

Status Keyring::set_passphrase(const SecureBuffer* passphrase, const Argon2Params& kdf) {
  if (passphrase == nullptr) {
    meta_.kdf.reset();
    kek_ = SecureBuffer();
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(KdfMeta meta_kdf, new_kdf(passphrase, kdf));
  ASSIGN_OR_RETURN(SecureBuffer kek, derive_kek(*passphrase, meta_kdf));
  kek_ = std::move(kek);
  meta_.kdf = meta_kdf;
  return Status::Ok();
}

Status Keyring::save() { return write(/*exclusive=*/false); }

Status Keyring::write(bool exclusive) const {
  const std::string meta = encode_meta(meta_);
  const size_t count = meta_.material_count();
  size_t size = sealed() ? sealed_keyring_size(meta.size(), count)
                         : plain_keyring_size(meta.size(), count);
  if (size > kMaxKeyringFileSize)
    return Status(Code::kInvalidArgument,
                  "keyring " + path_ + " would exceed the 4 MiB limit: too many key versions");

  SecureBuffer materials;
  if (count > 0) materials = SecureBuffer(count * kKeyringMaterialSize);
  size_t off = 0;
  for (const auto& mats : materials_) {
    for (const auto& m : mats) {
      if (m.empty()) continue;  // pruned
      std::memcpy(materials.data() + off, m.data(), kKeyringMaterialSize);
      off += kKeyringMaterialSize;
    }
  }

  Status s;
  const bool pruned = meta_.any_pruned();
  if (sealed()) {
    ASSIGN_OR_RETURN(auto aead, Aead::create(CipherId::kXChaCha20Poly1305, kek_.span()));
    ASSIGN_OR_RETURN(Bytes file, build_sealed_keyring(meta, materials.span(), *aead, pruned));
    s = write_file_atomic(path_, file, kKeyringMode, exclusive);
  } else {
    SecureBuffer file = build_plain_keyring(meta, materials.span(), pruned);
    s = write_file_atomic(path_, file.span(), kKeyringMode, exclusive);
  }
  if (!s.ok()) return s.with_context("writing keyring");
  return Status::Ok();
}

KeyringInfo Keyring::info() const {
  KeyringInfo info;
  info.path = path_;
  info.id = meta_.keyring_id;
  info.created = meta_.created;
  info.sealed = sealed();
  if (meta_.kdf) info.kdf = meta_.kdf->params;
  info.keys = meta_.keys;
  return info;
}

Result<KeyVersionView> Keyring::lookup(std::string_view name, uint32_t version) const {
  const KeyInfo* key = find(name);
  if (key == nullptr)
    return Status(Code::kNotFound,
                  "key '" + std::string(name) + "' not found in keyring " + path_);
  if (version == 0 || version > key->versions.size())
    return Status(Code::kNotFound, "key '" + key->name + "' has no version " +
                                       std::to_string(version) + " in keyring " + path_);
  const auto& info = key->versions[version - 1];
  if (info.state == KeyState::kPruned) return pruned(key->name, version);
  return KeyVersionView{version, info.state, materials_[index_of(key)][version - 1].span()};
}

Result<uint32_t> Keyring::newest_enabled(std::string_view name) const {
  const KeyInfo* key = find(name);
  if (key == nullptr)
    return Status(Code::kNotFound,
                  "key '" + std::string(name) + "' not found in keyring " + path_);
  for (auto it = key->versions.rbegin(); it != key->versions.rend(); ++it) {
    if (it->state == KeyState::kEnabled) return it->version;
  }
  return Status(Code::kPermissionDenied,
                "key '" + key->name + "' has no enabled version in keyring " + path_);
}

Status Keyring::corrupt(const std::string& why) const {
  return Status(Code::kCorrupt, "keyring " + path_ + ": " + why);
}

template <typename Self>
static auto* find_in(Self& keys, std::string_view name) {
  auto it = std::find_if(keys.begin(), keys.end(), [&](const KeyInfo& k) { return k.name == name; });
  return it == keys.end() ? nullptr : &*it;
}

KeyInfo* Keyring::find(std::string_view name) { return find_in(meta_.keys, name); }
const KeyInfo* Keyring::find(std::string_view name) const { return find_in(meta_.keys, name); }

}  // namespace kmsfs
