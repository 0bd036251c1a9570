// --region / --kms-endpoint: where the AWS KMS provider sends its calls, added the same way
// to every command that may unwrap or create a KMS-wrapped key. Both are optional: the
// environment (AWS_REGION, AWS_ENDPOINT_URL_KMS, ...), the AWS profile and the key ARN
// fill in what is not given (docs/KMS.md). Credentials are never options.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace kmsfs::cli {

struct AwsCliOptions {
  std::string region;
  std::string kms_endpoint;
};

void add_aws_options(CLI::App& cmd, AwsCliOptions& opts);

}  // namespace kmsfs::cli
