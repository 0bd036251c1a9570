// A scripted HttpTransport: answers in order and records what was sent. Not a KMS: it
// knows nothing of the protocol, each test says exactly what comes back.
#pragma once

#include <deque>
#include <mutex>

#include "keys/aws/http.h"

namespace kmsfs::aws::testing {

class FakeTransport final : public HttpTransport {
 public:
  void answer(long status, std::string body,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpResponse r;
    r.status = status;
    r.body.assign(body.data(), body.size());
    r.headers = std::move(headers);
    std::lock_guard g(mu_);
    script_.emplace_back(std::move(r));
  }
  void fail(Code code, std::string message) {
    std::lock_guard g(mu_);
    script_.emplace_back(Status(code, std::move(message)));
  }
  Result<HttpResponse> send(const HttpCall& call) override {
    std::lock_guard g(mu_);
    calls.push_back(call);
    if (script_.empty()) return Status(Code::kInternal, "FakeTransport: unexpected call to " + call.url);
    Result<HttpResponse> r = std::move(script_.front());
    script_.pop_front();
    return r;
  }
  size_t pending() {
    std::lock_guard g(mu_);
    return script_.size();
  }
  std::vector<HttpCall> calls;

 private:
  std::mutex mu_;
  std::deque<Result<HttpResponse>> script_;
};

}  // namespace kmsfs::aws::testing
