#include "keys/aws/kms_arn.h"

#include <array>

#include "format/key_ref.h"

namespace kmsfs::aws {
namespace {

constexpr size_t kMaxRegion = 32;
constexpr size_t kMaxKeyIdChars = 128;  // a UUID is 36, a multi-Region "mrk-" id 36
constexpr size_t kMaxAliasChars = 250;  // KMS: "alias/" + name <= 256

bool lower(char c) { return c >= 'a' && c <= 'z'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool alnum(char c) { return lower(c) || digit(c) || (c >= 'A' && c <= 'Z'); }

bool all_of(std::string_view s, bool (*ok)(char)) {
  for (char c : s) {
    if (!ok(c)) return false;
  }
  return true;
}

bool key_id_char(char c) { return alnum(c) || c == '-'; }
bool alias_char(char c) { return alnum(c) || c == '/' || c == '_' || c == '-'; }

bool valid_key_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxKeyIdChars && all_of(id, key_id_char);
}
bool valid_alias_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxAliasChars && all_of(name, alias_char);
}

// Prefix-specific partitions first; everything else well-formed is the standard one.
constexpr std::array<std::pair<std::string_view, AwsPartition>, 4> kByPrefix = {{
    {"cn-", {"aws-cn", "amazonaws.com.cn", "api.amazonwebservices.com.cn"}},
    {"us-gov-", {"aws-us-gov", "amazonaws.com", "api.aws"}},
    {"us-iso-", {"aws-iso", "c2s.ic.gov", ""}},
    {"us-isob-", {"aws-iso-b", "sc2s.sgov.gov", ""}},
}};
constexpr AwsPartition kStandard{"aws", "amazonaws.com", "api.aws"};

Status bad_arn(std::string_view why) {
  return Status(Code::kInvalidArgument, "not a valid KMS key ARN (" + std::string(why) + ")");
}

}  // namespace

bool valid_region(std::string_view r) {
  // ^[a-z]{2}(-[a-z]+)+-[0-9]+$
  if (r.size() < 6 || r.size() > kMaxRegion) return false;
  if (!lower(r[0]) || !lower(r[1]) || r[2] != '-') return false;
  size_t last_dash = r.rfind('-');
  std::string_view number = r.substr(last_dash + 1);
  if (number.empty() || !all_of(number, digit)) return false;
  // The middle, between the first and the last dash: one or more [a-z]+ words joined by '-'.
  std::string_view middle = r.substr(3, last_dash - 3);
  if (middle.empty() || middle.front() == '-' || middle.back() == '-') return false;
  char prev = ' ';
  for (char c : middle) {
    if (c == '-' ? prev == '-' : !lower(c)) return false;
    prev = c;
  }
  return true;
}

std::optional<AwsPartition> partition_of_region(std::string_view region) {
  if (!valid_region(region)) return std::nullopt;
  for (const auto& [prefix, p] : kByPrefix) {
    if (region.starts_with(prefix)) return p;
  }
  return kStandard;
}

Result<KmsArn> parse_kms_arn(std::string_view s) {
  if (s.size() > kMaxKeyIdSize) return bad_arn("too long");
  if (!s.starts_with("arn:")) return bad_arn("no arn: prefix");
  // Exactly six ':'-separated fields; the resource itself has no ':'.
  std::array<std::string_view, 6> f;
  std::string_view rest = s;
  for (size_t i = 0; i < 5; ++i) {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return bad_arn("too few fields");
    f[i] = rest.substr(0, colon);
    rest.remove_prefix(colon + 1);
  }
  f[5] = rest;
  if (f[5].find(':') != std::string_view::npos) return bad_arn("too many fields");
  if (f[2] != "kms") return bad_arn("not a kms ARN");
  KmsArn a;
  std::optional<AwsPartition> p = partition_of_region(f[3]);
  if (!p) return bad_arn("malformed region");
  bool known_partition = false;
  for (std::string_view name : {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"}) {
    known_partition = known_partition || f[1] == name;
  }
  if (!known_partition) return bad_arn("unknown partition");
  if (f[1] != p->name) return bad_arn("region not in the ARN's partition");
  if (f[4].size() != 12 || !all_of(f[4], digit)) return bad_arn("account is not 12 digits");
  a.partition = std::string(f[1]);
  a.region = std::string(f[3]);
  a.account = std::string(f[4]);
  if (f[5].starts_with("key/")) {
    if (!valid_key_id(f[5].substr(4))) return bad_arn("malformed key id");
    a.resource = std::string(f[5].substr(4));
  } else if (f[5].starts_with("alias/")) {
    if (!valid_alias_name(f[5].substr(6))) return bad_arn("malformed alias name");
    a.alias = true;
    a.resource = std::string(f[5].substr(6));
  } else {
    return bad_arn("resource is neither key/ nor alias/");
  }
  return a;
}

Status check_kms_key_name(std::string_view key_id) {
  if (key_id.starts_with("arn:")) return parse_kms_arn(key_id).status();
  if (key_id.starts_with("alias/")) {
    if (valid_alias_name(key_id.substr(6))) return Status::Ok();
    return Status(Code::kInvalidArgument, "not a valid KMS alias (alias/ then [A-Za-z0-9/_-], at most " +
                                              std::to_string(kMaxAliasChars) + ")");
  }
  if (valid_key_id(key_id)) return Status::Ok();
  return Status(Code::kInvalidArgument,
                "not a valid KMS key name (a key ARN, alias/NAME, an alias ARN or a key id)");
}

Result<std::string> default_kms_endpoint(std::string_view region, EndpointVariant v) {
  std::optional<AwsPartition> p = partition_of_region(region);
  if (!p) return Status(Code::kInvalidArgument, "not a valid AWS region name");
  if (v.dualstack && p->dualstack_suffix.empty()) {
    return Status(Code::kInvalidArgument, "AWS_USE_DUALSTACK_ENDPOINT: partition " + std::string(p->name) +
                                              " (region " + std::string(region) + ") has no dual-stack endpoints");
  }
  return std::string(v.fips ? "https://kms-fips." : "https://kms.") + std::string(region) + "." +
         std::string(v.dualstack ? p->dualstack_suffix : p->dns_suffix);
}

}  // namespace kmsfs::aws
