// What a KMS key name may look like, strictly. Key references come from file headers, and
// everything in the backing directory is attacker-controlled: nothing from a key name
// reaches a host name, a log line or a request unless it has the shape checked here.
//
//   arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID      (ACCOUNT: 12 digits)
//   arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME
//   KEY-ID                                           ([A-Za-z0-9-]: UUID or mrk-...)
//   alias/NAME                                       ([A-Za-z0-9/_-])
//
// PARTITION is one of aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, and must be the
// partition of REGION (cn-* only in aws-cn, us-gov-* only in aws-us-gov, us-iso-* only in
// aws-iso, us-isob-* only in aws-iso-b). REGION has the shape ^[a-z]{2}(-[a-z]+)+-[0-9]+$.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kmsfs::aws {

struct AwsPartition {
  std::string_view name;        // "aws", "aws-cn", ...
  std::string_view dns_suffix;  // "amazonaws.com", "amazonaws.com.cn", ...
  // Of the dual-stack (IPv4 and IPv6) endpoints: "api.aws", "api.amazonwebservices.com.cn";
  // empty where the partition has none (the ISO partitions).
  std::string_view dualstack_suffix;
};

// True if `region` has the shape of an AWS region (at most 32 characters).
bool valid_region(std::string_view region);
// The partition a well-formed region belongs to; nullopt if `region` is not well-formed.
std::optional<AwsPartition> partition_of_region(std::string_view region);

struct KmsArn {
  std::string partition;
  std::string region;
  std::string account;   // 12 digits
  bool alias = false;    // alias/NAME rather than key/KEY-ID
  std::string resource;  // the KEY-ID or the alias NAME
};

// kInvalidArgument, with a message that never repeats the refused text, unless `arn` is a
// KMS key or alias ARN of the shape above.
Result<KmsArn> parse_kms_arn(std::string_view arn);

// Any key name a KMS request may carry (the four forms above); kInvalidArgument otherwise.
Status check_kms_key_name(std::string_view key_id);

// Which of a Region's KMS endpoints (AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT).
struct EndpointVariant {
  bool fips = false;       // kms-fips.REGION...: FIPS 140 validated
  bool dualstack = false;  // ...REGION.api.aws: IPv4 and IPv6
};

// https://kms.REGION.DNS-SUFFIX for a well-formed region, built only from the checked
// region and its partition's DNS suffix; kInvalidArgument otherwise. With `v.fips` the host
// is kms-fips.REGION...; with `v.dualstack` the partition's dual-stack suffix
// (kms.REGION.api.aws; both: kms-fips.REGION.api.aws), kInvalidArgument in a partition
// without dual-stack endpoints.
Result<std::string> default_kms_endpoint(std::string_view region, EndpointVariant v = {});

}  // namespace kmsfs::aws
