// Encrypted names (format/names): directory entries, long-name side files, symlink
// targets and user.* xattrs as stored in the backing directory. Oracles: decryption of
// stored bytes never crashes; whatever decrypts re-encrypts to exactly the stored name
// (one plaintext name, one backing name: otherwise two entries could show as one); what
// encrypts decrypts back; a stored value that opens was sealed by us (never a forgery).
#include <memory>

#include "format/names.h"
#include "fuzz_check.h"

using namespace kmsfs;

namespace {

const NameCipher& cipher(int which) {
  static std::unique_ptr<NameCipher> c[4];
  if (!c[which]) {
    uint8_t key[32];
    for (int i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(i * 7 + 1);
    FsId id{};
    id[0] = 0x42;
    const NameEncoding enc = which & 1 ? NameEncoding::kBase32 : NameEncoding::kBase64Url;
    const size_t longname_max = which & 2 ? kMinLongnameMax : kDefaultLongnameMax;
    const CipherId ciph = which & 1 ? CipherId::kXChaCha20Poly1305 : CipherId::kAes256Gcm;
    auto made = NameCipher::create(ByteSpan(key, 32), id, ciph, enc, longname_max);
    FUZZ_CHECK(made.ok(), made.status().message());
    c[which] = std::move(*made);
  }
  return *c[which];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t sel = in.byte();
  const NameCipher& nc = cipher(sel & 3);
  const std::string s = in.rest();
  switch ((sel >> 2) % 6) {
    case 0: {  // a stored (full) encrypted name
      auto plain = nc.decrypt_name(s);
      if (!plain.ok()) break;
      auto enc = nc.encrypt_name(*plain);
      FUZZ_CHECK(enc.ok(), "a decrypted name re-encrypts: " + enc.status().message());
      FUZZ_CHECK((enc->is_long() ? enc->full : enc->name) == s, "one backing name per plaintext name");
      break;
    }
    case 1: {  // a plaintext name from an application
      auto enc = nc.encrypt_name(s);
      if (!enc.ok()) break;
      FUZZ_CHECK(enc->name.size() <= nc.longname_max(), "backing name within the limit");
      if (enc->is_long()) {
        FUZZ_CHECK(NameCipher::is_long_name(enc->name), "hashed name recognised");
        FUZZ_CHECK(nc.long_name_matches(enc->name, enc->full), "side file matches");
      }
      auto back = nc.decrypt_name(enc->is_long() ? enc->full : enc->name);
      FUZZ_CHECK(back.ok() && *back == s, "a name decrypts to itself");
      break;
    }
    case 2: {  // a side file's content against a hashed name
      const size_t cut = s.find('\n');
      if (cut == std::string::npos) break;
      (void)NameCipher::is_long_name(s.substr(0, cut));
      (void)nc.long_name_matches(s.substr(0, cut), s.substr(cut + 1));
      break;
    }
    case 3: {  // a stored symlink target
      auto target = nc.open_link(s);
      (void)NameCipher::link_plain_size(s.size());
      if (!target.ok()) break;
      FUZZ_CHECK(NameCipher::link_plain_size(s.size()) == target->size(), "lstat size of a target");
      auto sealed = nc.seal_link(*target);
      FUZZ_CHECK(sealed.ok(), "an opened target seals again");
      break;
    }
    case 4: {  // a stored xattr name, then a value under it
      auto name = nc.decrypt_xattr_name(s);
      if (!name.ok()) break;
      auto enc = nc.encrypt_xattr_name(*name);
      FUZZ_CHECK(enc.ok() && *enc == s, "one stored xattr name per plaintext name");
      break;
    }
    case 5: {  // a stored xattr value
      auto enc = nc.encrypt_xattr_name("user.fuzz");
      if (!enc.ok()) break;
      auto v = nc.open_xattr_value(*enc, as_bytes(s));
      if (v.ok()) {
        auto resealed = nc.seal_xattr_value(*enc, *v);
        FUZZ_CHECK(resealed.ok(), "an opened value seals again");
      }
      // Our own seal opens; any single changed byte of it does not.
      auto sealed = nc.seal_xattr_value(*enc, as_bytes(s));
      if (!sealed.ok()) break;
      auto opened = nc.open_xattr_value(*enc, *sealed);
      FUZZ_CHECK(opened.ok() && Bytes(opened->begin(), opened->end()) == Bytes(s.begin(), s.end()), "a value opens");
      if (!s.empty()) {
        Bytes bad = *sealed;
        bad[static_cast<uint8_t>(s[0]) % bad.size()] ^= static_cast<uint8_t>(s.size() | 1);
        FUZZ_CHECK(!nc.open_xattr_value(*enc, bad).ok(), "a modified xattr value never opens");
      }
      break;
    }
  }
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  const std::string names[] = {"a", "report.pdf", "a name with spaces", std::string(40, 'x'), std::string(200, 'y'),
                               "\xc3\xa9t\xc3\xa9"};
  int n = 0;
  for (int which = 0; which < 4; ++which) {
    const NameCipher& nc = cipher(which);
    for (const auto& name : names) {
      auto enc = nc.encrypt_name(name);
      if (!enc.ok()) continue;
      const std::string full = enc->is_long() ? enc->full : enc->name;
      out("name-" + std::to_string(n), std::string(1, char(which | 0 << 2)) + full);
      out("plain-" + std::to_string(n), std::string(1, char(which | 1 << 2)) + name);
      out("side-" + std::to_string(n), std::string(1, char(which | 2 << 2)) + enc->name + "\n" + full);
      if (auto link = nc.seal_link("../" + name); link.ok())
        out("link-" + std::to_string(n), std::string(1, char(which | 3 << 2)) + *link);
      if (auto x = nc.encrypt_xattr_name(name); x.ok())
        out("xname-" + std::to_string(n), std::string(1, char(which | 4 << 2)) + *x);
      auto xn = nc.encrypt_xattr_name("user.fuzz");
      if (auto v = nc.seal_xattr_value(*xn, as_bytes(name)); v.ok())
        out("xvalue-" + std::to_string(n), std::string(1, char(which | 5 << 2)) + std::string(as_chars(*v)));
      ++n;
    }
  }
}
