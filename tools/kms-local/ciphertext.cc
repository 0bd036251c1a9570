#include "ciphertext.h"

#include "crypto/aead.h"

namespace kmsfs::kms_local {
namespace {

constexpr char kMagic[4] = {'K', 'L', 'C', '1'};
constexpr size_t kMaxKeyIdSize = 255;  // one length byte

struct Parsed {
  BlobHeader header;
  size_t header_size = 0;  // bytes before the AEAD part
};

Result<Parsed> parse(ByteSpan blob) {
  auto bad = [](const char* why) {
    return Status(Code::kCorrupt, std::string("not a kms-local ciphertext: ") + why);
  };
  ByteReader r(blob);
  ByteSpan magic, key_id;
  uint8_t id_len = 0;
  Parsed p;
  if (!r.raw(4, magic) || !std::equal(magic.begin(), magic.end(), kMagic)) return bad("magic");
  if (!r.u8(id_len) || id_len == 0 || !r.raw(id_len, key_id) ||
      !r.u32(p.header.material_version)) {
    return bad("truncated header");
  }
  if (p.header.material_version == 0) return bad("material version 0");
  if (r.left() < kAeadOverhead) return bad("truncated");
  p.header.key_id = std::string(as_chars(key_id));
  p.header_size = r.pos();
  return p;
}

Bytes aad_of(ByteSpan header_bytes, const ContextMap& context) {
  Bytes aad(header_bytes.begin(), header_bytes.end());
  Bytes ctx = canonical_context(context);
  aad.insert(aad.end(), ctx.begin(), ctx.end());
  return aad;
}

}  // namespace

Bytes canonical_context(const ContextMap& context) {
  // std::map<std::string> orders keys as memcmp does, the order the encoding promises.
  ByteWriter w;
  w.u32(static_cast<uint32_t>(context.size()));
  for (const auto& [k, v] : context) {
    w.u32(static_cast<uint32_t>(k.size()));
    w.raw(as_bytes(k));
    w.u32(static_cast<uint32_t>(v.size()));
    w.raw(as_bytes(v));
  }
  return w.take();
}

Result<Bytes> seal_blob(const BlobHeader& header, ByteSpan material, ByteSpan plaintext,
                        const ContextMap& context) {
  if (header.key_id.empty() || header.key_id.size() > kMaxKeyIdSize ||
      header.material_version == 0) {
    return Status(Code::kInvalidArgument, "blob header: bad key id or material version");
  }
  ByteWriter w;
  w.raw({reinterpret_cast<const uint8_t*>(kMagic), sizeof kMagic});
  w.u8(static_cast<uint8_t>(header.key_id.size()));
  w.raw(as_bytes(header.key_id));
  w.u32(header.material_version);
  const size_t header_size = w.size();
  Bytes blob = w.take();
  Bytes aad = aad_of(blob, context);

  ASSIGN_OR_RETURN(auto aead, Aead::create(CipherId::kAes256Gcm, material));
  blob.resize(header_size + plaintext.size() + kAeadOverhead);
  RETURN_IF_ERROR(aead->seal(plaintext, aad, MutableByteSpan(blob).subspan(header_size)));
  return blob;
}

Result<BlobHeader> parse_blob_header(ByteSpan blob) {
  ASSIGN_OR_RETURN(Parsed p, parse(blob));
  return std::move(p.header);
}

Result<Bytes> open_blob(ByteSpan blob, ByteSpan material, const ContextMap& context) {
  ASSIGN_OR_RETURN(Parsed p, parse(blob));
  Bytes aad = aad_of(blob.first(p.header_size), context);
  ASSIGN_OR_RETURN(auto aead, Aead::create(CipherId::kAes256Gcm, material));
  ByteSpan sealed = blob.subspan(p.header_size);
  Bytes plaintext(sealed.size() - kAeadOverhead);
  RETURN_IF_ERROR(aead->open(sealed, aad, plaintext));
  return plaintext;
}

}  // namespace kmsfs::kms_local
