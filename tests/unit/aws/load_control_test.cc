// What keeps a struggling KMS from being hit harder: the circuit breaker, the standard
// retry mode's retry quota, the adaptive mode's rate limiter, and the KMS client spending
// attempts by call priority. Time is a fake clock throughout: nothing here sleeps.
#include <gtest/gtest.h>

#include <cmath>

#include "fake_transport.h"
#include "keys/aws/adaptive_limiter.h"
#include "keys/aws/aws_kms_provider.h"
#include "keys/aws/kms_client.h"
#include "keys/aws/retry.h"
#include "keys/call_priority.h"
#include "keys/circuit_breaker.h"

namespace kmsfs {
namespace {

using std::chrono::milliseconds;
using Admission = CircuitBreaker::Admission;

struct FakeClock {
  std::chrono::steady_clock::time_point t{std::chrono::seconds(1000)};
  auto fn() {
    return [this] { return t; };
  }
};

CircuitBreakerOptions breaker_options(FakeClock& c, double random = 0.5) {
  CircuitBreakerOptions o;
  o.clock = c.fn();
  o.random = [random] { return random; };  // 0.5: no jitter (0.75 + 0.5 * 0.5 = 1)
  return o;
}

TEST(CircuitBreaker, OpensAfterFiveConsecutiveFailuresAndAnAnswerResetsTheCount) {
  FakeClock c;
  CircuitBreaker b(breaker_options(c));
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(b.admit(true), Admission::kAllowed);
    b.on_failure(false);
  }
  b.on_success(false);  // e.g. a DisabledException: the KMS answered
  for (int i = 0; i < 4; ++i) b.on_failure(false);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  b.on_failure(false);
  EXPECT_EQ(b.state(), BreakerState::kOpen);
  EXPECT_EQ(b.stats().opened, 1u);
  EXPECT_EQ(b.retry_in(), milliseconds(1000));
  EXPECT_EQ(b.admit(true), Admission::kRejected);
  EXPECT_EQ(b.admit(false), Admission::kRejected);
  EXPECT_EQ(b.stats().rejected, 2u);
}

TEST(CircuitBreaker, OneProbeAtATimeAndOnlyFromCallersThatMayProbe) {
  FakeClock c;
  CircuitBreaker b(breaker_options(c));
  for (int i = 0; i < 5; ++i) b.on_failure(false);
  c.t += milliseconds(1000);
  EXPECT_EQ(b.admit(false), Admission::kRejected) << "background work never probes";
  EXPECT_EQ(b.admit(true), Admission::kProbe);
  EXPECT_EQ(b.state(), BreakerState::kHalfOpen);
  EXPECT_EQ(b.admit(true), Admission::kRejected) << "a second probe while one is out";
  b.cancel_probe();  // the probe never went out (e.g. no credentials)
  EXPECT_EQ(b.admit(true), Admission::kProbe);
  b.on_success(true);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  EXPECT_EQ(b.admit(false), Admission::kAllowed);
}

TEST(CircuitBreaker, AFailedProbeReopensForLongerUpToTenSeconds) {
  FakeClock c;
  CircuitBreaker b(breaker_options(c));
  for (int i = 0; i < 5; ++i) b.on_failure(false);
  std::vector<int64_t> periods;
  for (int round = 0; round < 7; ++round) {
    periods.push_back(b.retry_in().count());
    c.t += b.retry_in();
    ASSERT_EQ(b.admit(true), Admission::kProbe);
    b.on_failure(true);
  }
  EXPECT_EQ(periods, (std::vector<int64_t>{1000, 2000, 4000, 8000, 10000, 10000, 10000}));
  EXPECT_EQ(b.stats().opened, 8u);
  // A probe that succeeds starts the backoff over.
  c.t += b.retry_in();
  ASSERT_EQ(b.admit(true), Admission::kProbe);
  b.on_success(true);
  for (int i = 0; i < 5; ++i) b.on_failure(false);
  EXPECT_EQ(b.retry_in(), milliseconds(1000));
}

TEST(CircuitBreaker, OpenPeriodsAreJittered) {
  FakeClock c;
  CircuitBreaker lo(breaker_options(c, 0.0)), hi(breaker_options(c, 0.999));
  for (int i = 0; i < 5; ++i) lo.on_failure(false), hi.on_failure(false);
  EXPECT_EQ(lo.retry_in(), milliseconds(750));
  EXPECT_GE(hi.retry_in(), milliseconds(1240));
  EXPECT_LE(hi.retry_in(), milliseconds(1250));
}

TEST(RetryQuota, RetriesCostFiveOrTenAndSuccessesRefund) {
  aws::RetryQuota q;
  EXPECT_EQ(q.available(), 500);
  EXPECT_TRUE(q.acquire(false));
  EXPECT_EQ(q.available(), 495);
  EXPECT_TRUE(q.acquire(true));
  EXPECT_EQ(q.available(), 485);
  q.release(15);  // the call those retries were for succeeded
  EXPECT_EQ(q.available(), 500);
  q.release(0);  // never above the initial amount
  EXPECT_EQ(q.available(), 500);
  // A sustained outage: 50 timeout retries spend it all, then retries are refused.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(q.acquire(true));
  EXPECT_EQ(q.available(), 0);
  EXPECT_FALSE(q.acquire(false));
  EXPECT_EQ(q.refused(), 1u);
  // Successes without retries earn it back one token each.
  for (int i = 0; i < 5; ++i) q.release(0);
  EXPECT_TRUE(q.acquire(false));
}

struct FakeTime {
  std::chrono::steady_clock::time_point t{std::chrono::seconds(1000)};
  double slept = 0;
  aws::AdaptiveRateLimiter::Options options() {
    aws::AdaptiveRateLimiter::Options o;
    o.clock = [this] { return t; };
    o.sleep = [this](std::chrono::duration<double> d) {
      slept += d.count();
      t += std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
    };
    return o;
  }
  void advance(double s) { t += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s)); }
};

TEST(AdaptiveRateLimiter, UnlimitedUntilTheFirstThrottleThenCutToSeventyPercentAndGrowsBack) {
  FakeTime ft;
  aws::AdaptiveRateLimiter l(ft.options());
  // 100 requests/s for 5 s, all fine: nothing waits.
  for (int i = 0; i < 500; ++i) {
    EXPECT_EQ(l.acquire().count(), 0);
    l.on_response(false);
    ft.advance(0.01);
  }
  EXPECT_FALSE(l.enabled());
  EXPECT_NEAR(l.measured_rate(), 100, 5);
  l.on_response(true);
  ASSERT_TRUE(l.enabled());
  const double cut = l.max_rate();
  EXPECT_NEAR(cut, 0.7 * l.measured_rate(), 1);
  // Now sending is paced: 20 requests take about 20 / rate seconds.
  const double before = ft.slept;
  for (int i = 0; i < 20; ++i) {
    l.acquire();
    l.on_response(false);
  }
  EXPECT_GT(ft.slept - before, 20 / (2 * cut));
  // Successes grow the rate back along the cubic curve: past the old maximum in time.
  for (int i = 0; i < 2000 && l.max_rate() < 100; ++i) {
    ft.advance(0.01);
    l.on_response(false);
  }
  EXPECT_GE(l.max_rate(), 0.9 * cut);
}

TEST(AdaptiveRateLimiter, RepeatedThrottlesKeepCuttingButNeverBelowHalfARequestPerSecond) {
  FakeTime ft;
  aws::AdaptiveRateLimiter l(ft.options());
  for (int i = 0; i < 200; ++i) {
    l.on_response(false);
    ft.advance(0.01);
  }
  double prev = 1e9;
  for (int i = 0; i < 30; ++i) {
    l.acquire();
    l.on_response(true);
    EXPECT_LE(l.max_rate(), prev + 1e-9);
    prev = l.max_rate();
  }
  EXPECT_NEAR(l.max_rate(), 0.5, 1e-9);
}

// The client: attempts by priority, the breaker failing calls fast, the quota.
const std::string kArn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const std::string kThrottle = R"({"__type":"ThrottlingException","message":"slow down"})";

struct Rig {
  std::shared_ptr<aws::testing::FakeTransport> http = std::make_shared<aws::testing::FakeTransport>();
  FakeClock steady;
  std::shared_ptr<aws::KmsClient> client;
  Rig() {
    aws::KmsClientOptions o;
    o.region = "eu-west-1";
    o.random = [] { return 0.5; };
    o.sleep = [](milliseconds) {};
    o.breaker = breaker_options(steady);
    client = std::make_shared<aws::KmsClient>(
        http, aws::make_static_provider(aws::Credentials::make("AKIDTEST", "sekrit", "")), std::move(o));
  }
  Status describe() { return client->describe_key(kArn).status(); }
};

TEST(KmsClientLoad, UserCallsRetryRotationAndBackgroundCallsMakeOneAttempt) {
  Rig rig;
  for (int i = 0; i < 3; ++i) rig.http->answer(400, kThrottle);
  EXPECT_EQ(rig.describe().code(), Code::kUnavailable);
  EXPECT_EQ(rig.http->calls.size(), 3u);
  rig.http->answer(400, R"({"__type":"DisabledException"})");  // an answer: resets the count
  EXPECT_EQ(rig.describe().code(), Code::kPermissionDenied);
  for (CallPriority p : {CallPriority::kRotation, CallPriority::kBackground}) {
    CallPriorityScope scope(p);
    rig.http->answer(400, kThrottle);
    const size_t before = rig.http->calls.size();
    EXPECT_EQ(rig.describe().code(), Code::kUnavailable) << call_priority_name(p);
    EXPECT_EQ(rig.http->calls.size(), before + 1) << call_priority_name(p);
  }
  EXPECT_EQ(rig.client->stats().snapshot().throttled, 5u);
}

TEST(KmsClientLoad, AnOpenBreakerFailsCallsWithoutSendingThemAndOneProbeClosesIt) {
  Rig rig;
  for (int i = 0; i < 5; ++i) rig.http->fail(Code::kUnavailable, "connection refused");
  EXPECT_EQ(rig.describe().code(), Code::kUnavailable);  // 3 attempts
  // The next call's second attempt is the fifth failure: it stops there, not after a third.
  EXPECT_EQ(rig.describe().code(), Code::kUnavailable);
  EXPECT_EQ(rig.http->calls.size(), 5u);
  EXPECT_EQ(rig.http->pending(), 0u);
  Status s = rig.describe();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("circuit breaker open"), std::string::npos) << s.message();
  EXPECT_EQ(rig.http->calls.size(), 5u);
  {
    CallPriorityScope scope(CallPriority::kBackground);
    rig.steady.t += std::chrono::seconds(2);
    EXPECT_EQ(rig.describe().code(), Code::kUnavailable);  // background never probes
    EXPECT_EQ(rig.http->calls.size(), 5u);
  }
  rig.http->answer(200, R"({"KeyMetadata":{"Arn":")" + kArn + R"(","KeyId":"k","Enabled":true}})");
  EXPECT_TRUE(rig.describe().ok());
  EXPECT_EQ(rig.http->calls.size(), 6u);
  RequestStats::Snapshot st = rig.client->stats().snapshot();
  EXPECT_EQ(st.breaker_opened, 1u);
  EXPECT_EQ(st.breaker_rejected, 2u);
  ASSERT_EQ(st.breaker_state.size(), 1u);
  EXPECT_EQ(st.breaker_state.begin()->second, 0);
}

TEST(KmsClientLoad, ASpentRetryQuotaLeavesEachCallOneAttempt) {
  Rig rig;
  // Alternate throttles and answers so the breaker never opens: only the quota limits.
  int calls = 0;
  while (rig.client->stats().snapshot().retry_quota >= 5 && calls < 400) {
    rig.http->answer(400, kThrottle);
    rig.http->answer(400, R"({"__type":"NotFoundException"})");
    EXPECT_EQ(rig.describe().code(), Code::kNotFound);
    ++calls;
  }
  EXPECT_EQ(calls, 100);
  rig.http->answer(400, kThrottle);
  rig.http->answer(400, R"({"__type":"NotFoundException"})");  // answers the next call
  const size_t before = rig.http->calls.size();
  EXPECT_EQ(rig.describe().code(), Code::kUnavailable);
  EXPECT_EQ(rig.http->calls.size(), before + 1);
  EXPECT_EQ(rig.client->stats().snapshot().retries_refused, 1u);
  EXPECT_EQ(rig.describe().code(), Code::kNotFound);
}

TEST(KmsClientLoad, RetrySettingsComeFromTheEnvironment) {
  auto env = [](std::map<std::string, std::string> m) {
    aws::Env e;
    for (auto& [k, v] : m) e.vars[k] = v;
    return e;
  };
  auto d = aws::retry_settings(env({}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->max_attempts, 3);
  EXPECT_FALSE(d->adaptive);
  auto a = aws::retry_settings(env({{"AWS_MAX_ATTEMPTS", "5"}, {"AWS_RETRY_MODE", "adaptive"}}));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->max_attempts, 5);
  EXPECT_TRUE(a->adaptive);
  EXPECT_EQ(aws::retry_settings(env({{"AWS_MAX_ATTEMPTS", "0"}})).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(aws::retry_settings(env({{"AWS_RETRY_MODE", "fast"}})).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kmsfs
