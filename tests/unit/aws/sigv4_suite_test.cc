// Runs every case of the AWS signing test suite (tests/fixtures/sigv4, copied from
// aws-c-auth's tests/aws-signing-test-suite/v4): header and query signing, each checked at
// all four stages (canonical request, string to sign, signature, signed request), and the
// header-signed request checked again through the verifier a server uses.
//
// No case is skipped: every directory is a test, and SuiteIsComplete fails if a case lacks
// one of the ten files, so a case cannot silently lose a stage.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "keys/aws/sigv4.h"

namespace kmsfs::aws {
namespace {

namespace fs = std::filesystem;
const fs::path kSuite = fs::path(KMSFS_SOURCE_DIR) / "tests/fixtures/sigv4";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> case_names() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(kSuite)) {
    if (e.is_directory()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Case {
  HttpRequest request;
  Credentials creds;
  SigningParams params;
};

Case load(const std::string& name) {
  fs::path dir = kSuite / name;
  auto ctx = nlohmann::json::parse(slurp(dir / "context.json"));
  Result<HttpRequest> req = parse_http_request(slurp(dir / "request.txt"));
  EXPECT_TRUE(req.ok()) << req.status().to_string();
  const auto& c = ctx["credentials"];
  Case out{*req,
           Credentials::make(c["access_key_id"], c["secret_access_key"].get<std::string>(),
                             c.value("token", "")),
           {}};
  out.params.region = ctx["region"];
  out.params.service = ctx["service"];
  out.params.amz_date = *amz_date_from_iso8601(ctx["timestamp"].get<std::string>());
  out.params.normalize_path = ctx["normalize"];
  out.params.sign_body = ctx["sign_body"];
  out.params.omit_session_token = ctx.value("omit_session_token", false);
  out.params.expires = std::chrono::seconds(ctx["expiration_in_seconds"].get<int>());
  return out;
}

class SigV4Suite : public ::testing::TestWithParam<std::string> {};

TEST_P(SigV4Suite, HeaderSigning) {
  fs::path dir = kSuite / GetParam();
  Case c = load(GetParam());
  Result<Signed> s = sign_headers(c.request, c.creds, c.params);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->canonical_request, slurp(dir / "header-canonical-request.txt"));
  EXPECT_EQ(s->string_to_sign, slurp(dir / "header-string-to-sign.txt"));
  EXPECT_EQ(s->signature, slurp(dir / "header-signature.txt"));
  EXPECT_EQ(to_http_text(c.request), slurp(dir / "header-signed-request.txt"));
}

TEST_P(SigV4Suite, QuerySigning) {
  fs::path dir = kSuite / GetParam();
  Case c = load(GetParam());
  Result<Signed> s = presign_query(c.request, c.creds, c.params);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->canonical_request, slurp(dir / "query-canonical-request.txt"));
  EXPECT_EQ(s->string_to_sign, slurp(dir / "query-string-to-sign.txt"));
  EXPECT_EQ(s->signature, slurp(dir / "query-signature.txt"));
  EXPECT_EQ(to_http_text(c.request), slurp(dir / "query-signed-request.txt"));
}

// What kms-local does: parse the received request, recompute, compare in constant time.
TEST_P(SigV4Suite, VerifierAcceptsTheSuitesSignedRequestAndRejectsTampering) {
  fs::path dir = kSuite / GetParam();
  Case c = load(GetParam());
  Result<HttpRequest> got = parse_http_request(slurp(dir / "header-signed-request.txt"));
  ASSERT_TRUE(got.ok());
  Result<Authorization> auth = parse_authorization(*got->header("authorization"));
  ASSERT_TRUE(auth.ok()) << auth.status().to_string();
  EXPECT_EQ(auth->access_key_id, c.creds.access_key_id);
  EXPECT_EQ(auth->region, c.params.region);
  EXPECT_EQ(auth->service, c.params.service);
  ByteSpan secret = c.creds.secret_access_key.span();
  Status st = verify_header_signature(*got, *auth, secret, c.params.normalize_path);
  EXPECT_TRUE(st.ok()) << st.to_string();

  HttpRequest tampered = *got;
  tampered.method = tampered.method == "GET" ? "PUT" : "GET";
  EXPECT_EQ(verify_header_signature(tampered, *auth, secret, c.params.normalize_path).code(),
            Code::kPermissionDenied);
  tampered = *got;
  tampered.query += tampered.query.empty() ? "x=1" : "&x=1";
  EXPECT_EQ(verify_header_signature(tampered, *auth, secret, c.params.normalize_path).code(),
            Code::kPermissionDenied);
  if (!got->body.empty()) {
    tampered = *got;
    tampered.body.back() ^= 1;
    EXPECT_EQ(verify_header_signature(tampered, *auth, secret, c.params.normalize_path).code(),
              Code::kPermissionDenied);
  }
  std::string wrong = "x" + std::string(as_chars(secret)).substr(1);
  EXPECT_EQ(verify_header_signature(*got, *auth, as_bytes(wrong), c.params.normalize_path).code(),
            Code::kPermissionDenied);
}

INSTANTIATE_TEST_SUITE_P(Aws, SigV4Suite, ::testing::ValuesIn(case_names()),
                         [](const auto& param_info) {
                           std::string n = param_info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(SigV4SuiteMeta, SuiteIsComplete) {
  std::vector<std::string> names = case_names();
  EXPECT_EQ(names.size(), 38u);
  for (const std::string& n : names) {
    for (const char* f : {"context.json", "request.txt", "header-canonical-request.txt",
                          "header-string-to-sign.txt", "header-signature.txt",
                          "header-signed-request.txt", "query-canonical-request.txt",
                          "query-string-to-sign.txt", "query-signature.txt",
                          "query-signed-request.txt"}) {
      EXPECT_TRUE(fs::exists(kSuite / n / f)) << n << "/" << f;
    }
  }
}

}  // namespace
}  // namespace kmsfs::aws
