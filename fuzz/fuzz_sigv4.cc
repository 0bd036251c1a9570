// SigV4 (keys/aws/sigv4): the request parser and canonicalisation a server
// (tools/kms-local) runs on what a client sends, and the signer's inputs (header names and
// values, paths, queries; the endpoint's path and query come from the operator). Oracles:
// no crash or throw; request text round-trips; a request the signer signs is verified by
// the verifier with the same secret and refused with another (sign and verify agree on
// the canonical request; the signer refuses what it cannot send as signed, e.g. no Host); URI encoding round-trips; an Authorization header that parses
// names what it said.
#include "fuzz_check.h"
#include "keys/aws/sigv4.h"

using namespace kmsfs;
using namespace kmsfs::aws;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  const uint8_t sel = in.byte();
  switch (sel % 4) {
    case 0: {  // request text, then sign and verify it
      const std::string text = in.rest();
      auto req = parse_http_request(text);
      if (!req.ok()) break;
      const std::string again_text = to_http_text(*req);
      auto again = parse_http_request(again_text);
      FUZZ_CHECK(again.ok(), "request text re-parses: " + again.status().message());
      FUZZ_CHECK(to_http_text(*again) == again_text, "request text round trip");
      Credentials creds = Credentials::make("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                            sel & 4 ? "session-token" : "");
      SigningParams p;
      p.region = "us-east-1";
      p.service = "kms";
      p.amz_date = "20150830T123600Z";
      p.normalize_path = !(sel & 8);
      p.sign_body = sel & 16;
      HttpRequest signed_req = *req;
      auto s = sign_headers(signed_req, creds, p);
      if (!s.ok()) {
        FUZZ_CHECK(to_http_text(signed_req) == again_text, "a request the signer refuses is left as it was");
        break;
      }
      auto auth_value = signed_req.header("Authorization");
      FUZZ_CHECK(auth_value.has_value(), "signed request has Authorization");
      auto auth = parse_authorization(*auth_value);
      FUZZ_CHECK(auth.ok(), "our Authorization parses: " + auth.status().message());
      // What the signer signed must be what goes on the wire: through the text form.
      auto wire = parse_http_request(to_http_text(signed_req));
      FUZZ_CHECK(wire.ok(), "a signed request's text parses: " + wire.status().message());
      Status v = verify_header_signature(*wire, *auth, creds.secret_access_key.span(), p.normalize_path);
      FUZZ_CHECK(v.ok(), "the verifier accepts what the signer signed: " + v.message() + "\n" + s->canonical_request);
      const std::string other = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ";
      FUZZ_CHECK(!verify_header_signature(*wire, *auth, as_bytes(other), p.normalize_path).ok(),
                 "another secret verifies");
      break;
    }
    case 1: {  // an Authorization header value
      const std::string v = in.rest();
      auto a = parse_authorization(v);
      if (!a.ok()) break;
      FUZZ_CHECK(v.find(a->access_key_id) != std::string::npos && v.find(a->signature) != std::string::npos,
                 "fields come from the value");
      break;
    }
    case 2: {  // paths and queries
      const std::string s = in.rest();
      FUZZ_CHECK(uri_decode(uri_encode(s, false)) == s, "uri encoding round trip");
      FUZZ_CHECK(uri_decode(uri_encode(s, true)) == s, "uri encoding round trip, slashes kept");
      const std::string q = canonical_query(s);
      FUZZ_CHECK(canonical_query(q) == q, "a canonical query is its own canonical form");
      (void)canonical_path(s, true);
      (void)canonical_path(s, false);
      break;
    }
    case 3: {  // a header name and value given to the signer
      HttpRequest req;
      req.method = "POST";
      req.path = "/";
      req.headers = {{"Host", "kms.us-east-1.amazonaws.com"}, {in.piece(), in.piece()}};
      req.body = in.rest();
      Credentials creds = Credentials::make("AKIDEXAMPLE", "secret");
      SigningParams p{"us-east-1", "kms", "20150830T123600Z"};
      auto s = sign_headers(req, creds, p);
      if (!s.ok()) break;
      auto wire = parse_http_request(to_http_text(req));
      FUZZ_CHECK(wire.ok(), "a signed request's text parses: " + wire.status().message());
      auto auth = parse_authorization(*req.header("Authorization"));
      FUZZ_CHECK(auth.ok(), "our Authorization parses");
      Status v = verify_header_signature(*wire, *auth, creds.secret_access_key.span());
      FUZZ_CHECK(v.ok(), "the verifier accepts what the signer signed: " + v.message() + "\n" + s->canonical_request);
      break;
    }
  }
  return 0;
}

void kmsfs::fuzz::write_seeds(const SeedWriter& out) {
  for (const char* t : {"get-vanilla", "get-header-value-multiline", "get-header-key-duplicate",
                        "get-vanilla-query-order-encoded", "get-space-normalized", "get-utf8",
                        "post-x-www-form-urlencoded", "get-slash-dot-slash-unnormalized"}) {
    const std::string req = read_fixture(std::string("sigv4/") + t + "/request.txt");
    out(std::string("req-") + t, std::string(1, '\0') + req);
    out(std::string("sreq-") + t, std::string(1, char(4 | 16)) + req);
    const std::string signed_req = read_fixture(std::string("sigv4/") + t + "/header-signed-request.txt");
    const size_t a = signed_req.find("Authorization:");
    if (a != std::string::npos) {
      const size_t e = signed_req.find('\n', a);
      out(std::string("authz-") + t, std::string(1, '\1') + signed_req.substr(a + 14, e == std::string::npos ? e : e - a - 14));
    }
  }
  out("query", std::string(1, '\2') + "Param2=value2&Param1=value%201&a=b+c&&=x");
  out("header", std::string(1, '\3') + std::string(1, char(12 * 255 / 255)) + "X-Amz-Target" +
                    std::string(1, char(22)) + "TrentService.Decrypt" + "{}");
}
