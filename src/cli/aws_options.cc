#include "cli/aws_options.h"

namespace kmsfs::cli {

void add_aws_options(CLI::App& cmd, AwsCliOptions& opts) {
  cmd.add_option("--region", opts.region,
                 "AWS region of the KMS key (default: AWS_REGION, AWS_DEFAULT_REGION, the AWS "
                 "profile, else that of a key ARN you named or trust; never one from a header)")
      ->type_name("REGION");
  cmd.add_option("--kms-endpoint", opts.kms_endpoint,
                 "KMS endpoint URL (default: AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, else "
                 "https://kms.REGION.amazonaws.com)")
      ->type_name("URL");
}

}  // namespace kmsfs::cli
