#include <gtest/gtest.h>

#include "keys/aws/kms_errors.h"
#include "keys/aws/retry.h"

namespace kmsfs::aws {
namespace {

using std::chrono::milliseconds;

TEST(Retry, ShortErrorCode) {
  EXPECT_EQ(short_error_code("com.amazonaws.kms#NotFoundException"), "NotFoundException");
  EXPECT_EQ(short_error_code("NotFoundException:http://internal.amazon.com/coral/"), "NotFoundException");
  EXPECT_EQ(short_error_code("ThrottlingException"), "ThrottlingException");
  EXPECT_EQ(short_error_code(""), "");
}

TEST(Retry, Table) {
  // Throttling, by code or by 429.
  for (auto c : {"ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
                 "Throttling", "SlowDown", "com.amazonaws.kms#ThrottlingException"}) {
    EXPECT_EQ(classify_http(400, c), RetryClass::kThrottled) << c;
  }
  EXPECT_EQ(classify_http(429, ""), RetryClass::kThrottled);
  // Transient: 5xx and KMS's own transient errors (our documented choice).
  for (long s : {500L, 502L, 503L, 504L}) EXPECT_EQ(classify_http(s, ""), RetryClass::kTransient);
  EXPECT_EQ(classify_http(500, "KMSInternalException"), RetryClass::kTransient);
  EXPECT_EQ(classify_http(400, "DependencyTimeoutException"), RetryClass::kTransient);
  EXPECT_EQ(classify_http(500, "DependencyTimeoutException"), RetryClass::kTransient);
  // Never, even on a 5xx status.
  for (auto c : {"AccessDeniedException", "NotFoundException", "InvalidCiphertextException",
                 "DisabledException", "KMSInvalidStateException", "IncorrectKeyException",
                 "ValidationException", "UnrecognizedClientException", "InvalidSignatureException"}) {
    EXPECT_EQ(classify_http(400, c), RetryClass::kNever) << c;
    EXPECT_EQ(classify_http(500, c), RetryClass::kNever) << c;
  }
  EXPECT_EQ(classify_http(400, ""), RetryClass::kNever);
  EXPECT_EQ(classify_http(403, ""), RetryClass::kNever);
  EXPECT_EQ(classify_http(404, ""), RetryClass::kNever);
}

TEST(Retry, FullJitterBackoff) {
  RetryPolicy p;  // base 1 s, cap 20 s
  EXPECT_EQ(backoff_delay(p, 0, 0.0), milliseconds(0));
  EXPECT_EQ(backoff_delay(p, 0, 0.5), milliseconds(500));
  EXPECT_EQ(backoff_delay(p, 1, 0.5), milliseconds(1000));
  EXPECT_EQ(backoff_delay(p, 2, 0.999), milliseconds(3996));
  EXPECT_EQ(backoff_delay(p, 4, 0.999), milliseconds(15984));
  EXPECT_EQ(backoff_delay(p, 5, 0.999), milliseconds(19980));  // capped at 20 s
  EXPECT_EQ(backoff_delay(p, 1000, 0.5), milliseconds(10000));  // no overflow
  EXPECT_EQ(backoff_delay(p, 3, 7.0), milliseconds(8000));      // random clamped to 1
  p.base = milliseconds(10);
  EXPECT_EQ(backoff_delay(p, 3, 0.5), milliseconds(40));
}

TEST(Retry, DefaultRandomIsInRange) {
  double lo = 1, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    double r = default_random01();
    ASSERT_GE(r, 0.0);
    ASSERT_LT(r, 1.0);
    lo = std::min(lo, r);
    hi = std::max(hi, r);
  }
  EXPECT_LT(lo, 0.05);
  EXPECT_GT(hi, 0.95);
}

TEST(KmsErrors, Mapping) {
  const std::string arn = "arn:aws:kms:eu-west-1:111122223333:key/k1";
  Status s = map_kms_error(400, "AccessDeniedException", "User is not authorized", "Decrypt", arn);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("Decrypt"), std::string::npos);
  EXPECT_NE(s.message().find(arn), std::string::npos);
  EXPECT_NE(s.message().find("User is not authorized"), std::string::npos);

  s = map_kms_error(400, "DisabledException", "", "GenerateDataKey", arn);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("key disabled"), std::string::npos);

  s = map_kms_error(400, "KMSInvalidStateException", "is pending deletion", "Decrypt", arn);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("pending deletion"), std::string::npos);
  EXPECT_NE(s.message().find("invalid state"), std::string::npos);

  EXPECT_EQ(map_kms_error(400, "NotFoundException", "", "DescribeKey", "alias/x").code(), Code::kNotFound);
  EXPECT_EQ(map_kms_error(400, "com.amazonaws.kms#InvalidCiphertextException", "", "Decrypt", arn).code(),
            Code::kCorrupt);
  EXPECT_EQ(map_kms_error(400, "IncorrectKeyException", "", "Decrypt", arn).code(), Code::kCorrupt);
  EXPECT_EQ(map_kms_error(400, "ThrottlingException", "Rate exceeded", "Decrypt", arn).code(),
            Code::kUnavailable);
  EXPECT_EQ(map_kms_error(503, "", "", "Decrypt", arn).code(), Code::kUnavailable);
  EXPECT_EQ(map_kms_error(500, "KMSInternalException", "", "Decrypt", arn).code(), Code::kUnavailable);
  EXPECT_EQ(map_kms_error(400, "UnrecognizedClientException", "", "Decrypt", arn).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(map_kms_error(400, "InvalidSignatureException", "", "Decrypt", arn).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(map_kms_error(400, "ValidationException", "bad", "Decrypt", arn).code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace kmsfs::aws
