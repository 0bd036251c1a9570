// kms-local: a KMS- and STS-compatible server for development and tests. Flags, wiring,
// the port announcement and clean shutdown on SIGTERM/SIGINT. docs/KMS_LOCAL.md has the
// whole story.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "base/file_io.h"
#include "credentials.h"
#include "dispatcher.h"
#include "faults.h"
#include "http_server.h"
#include "key_store.h"
#include "kms_service.h"
#include "state_file.h"
#include "stats.h"
#include "sts_service.h"

namespace kmsfs::kms_local {
namespace {

struct Flags {
  std::string credentials_file;
  std::string state_file;
  std::string port_file;
  std::string region = "us-east-1";
  std::string account_id = "111122223333";
  std::optional<double> session_lifetime;
  double max_skew = 300;
  ServerOptions server;
  FaultConfig faults;
  bool quiet = false;
};

Status check_flags(const Flags& f) {
  if (f.account_id.size() != 12 ||
      f.account_id.find_first_not_of("0123456789") != std::string::npos) {
    return Status(Code::kInvalidArgument, "--account-id must be 12 digits");
  }
  if (f.region.empty() ||
      f.region.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return Status(Code::kInvalidArgument, "--region must look like us-east-1");
  }
  if (f.server.threads < 1 || f.server.threads > 1024) {
    return Status(Code::kInvalidArgument, "--threads must be 1..1024");
  }
  if (f.session_lifetime && *f.session_lifetime < 1) {
    return Status(Code::kInvalidArgument, "--session-lifetime must be at least 1 second");
  }
  return validate(f.faults);
}

Result<KeyStore> open_store(const Flags& f) {
  if (f.state_file.empty()) return KeyStore(f.region, f.account_id);
  auto loaded = load_state(f.state_file, f.region, f.account_id);
  if (loaded.ok() || loaded.status().code() != Code::kNotFound) return loaded;
  return KeyStore(f.region, f.account_id);  // first start: the file appears on the first change
}

// SIGTERM / SIGINT are blocked in every thread and taken here, synchronously, so stopping
// the server runs as ordinary code rather than in a signal handler.
void wait_for_signal(HttpServer& server, const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  server.stop();
}

int run(const Flags& f) {
  if (Status st = check_flags(f); !st.ok()) {
    std::fprintf(stderr, "kms-local: %s\n", st.message().c_str());
    return 2;
  }
  auto keys = load_credentials_file(f.credentials_file);
  if (!keys.ok()) {
    std::fprintf(stderr, "kms-local: %s\n", keys.status().to_string().c_str());
    return 2;
  }
  auto store = open_store(f);
  if (!store.ok()) {
    std::fprintf(stderr, "kms-local: %s\n", store.status().to_string().c_str());
    return 1;
  }
  CredentialStore creds(std::move(keys).value(), f.account_id);
  KmsService kms(std::move(store).value(), f.state_file);
  StsService sts(StsConfig{f.account_id, f.session_lifetime}, creds);
  Faults faults(f.faults);
  Stats stats;
  Dispatcher dispatcher(AuthPolicy{f.region, f.max_skew}, kms, sts, creds, faults, stats);
  ServerOptions server_options = f.server;
  server_options.log_requests = !f.quiet;
  HttpServer server(server_options, dispatcher, faults, stats);

  // Before any thread starts, so every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a client gone mid-answer is an error return, not a death

  auto port = server.bind();
  if (!port.ok()) {
    std::fprintf(stderr, "kms-local: %s\n", port.status().to_string().c_str());
    return 1;
  }
  if (!f.port_file.empty()) {
    std::string text = std::to_string(*port) + "\n";
    if (Status st = write_file_atomic(f.port_file, as_bytes(text), 0644); !st.ok()) {
      std::fprintf(stderr, "kms-local: %s\n", st.to_string().c_str());
      return 1;
    }
  }
  std::printf("kms-local listening on %s://%s:%d\n", f.server.tls_cert.empty() ? "http" : "https",
              f.server.listen.c_str(), *port);
  std::fflush(stdout);

  std::thread signals(wait_for_signal, std::ref(server), set);
  Status served = server.serve();
  // serve() may also return on its own failure: wake the signal thread so it can be joined
  // (a signal already taken leaves this one pending, harmlessly: the process is ending).
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  if (!served.ok()) {
    std::fprintf(stderr, "kms-local: %s\n", served.to_string().c_str());
    return 1;
  }
  if (!f.quiet) std::fprintf(stderr, "kms-local: stopped\n");
  return 0;
}

}  // namespace
}  // namespace kmsfs::kms_local

int main(int argc, char** argv) {
  using kmsfs::kms_local::Flags;
  Flags f;
  CLI::App app{"kms-local: a KMS- and STS-compatible server for development and tests"};
  app.add_option("--credentials-file", f.credentials_file,
                 "access keys the server accepts, in the AWS shared-credentials format")
      ->required();
  app.add_option("--state-file", f.state_file,
                 "keep keys and aliases in this file (created 0600); default: memory only");
  app.add_option("--listen", f.server.listen, "address to listen on")->capture_default_str();
  app.add_option("--port", f.server.port, "port; 0 picks a free one")->capture_default_str();
  app.add_option("--port-file", f.port_file, "write the bound port to this file once listening");
  app.add_option("--region", f.region, "the Region in key ARNs and credential scopes")
      ->capture_default_str();
  app.add_option("--account-id", f.account_id, "the account in ARNs")->capture_default_str();
  app.add_option("--tls-cert", f.server.tls_cert, "serve HTTPS with this PEM certificate");
  app.add_option("--tls-key", f.server.tls_key, "... and this PEM private key");
  app.add_option("--session-lifetime", f.session_lifetime,
                 "seconds STS sessions last, whatever DurationSeconds asks");
  app.add_option("--max-clock-skew", f.max_skew, "seconds a signature's date may be off")
      ->capture_default_str();
  app.add_option("--threads", f.server.threads, "requests served at once")->capture_default_str();
  app.add_option("--latency-ms", f.faults.latency_ms, "fault: delay every request");
  app.add_option("--throttle-rate", f.faults.throttle_rate, "fault: share answered ThrottlingException");
  app.add_option("--error-rate", f.faults.error_rate, "fault: share answered 500 KMSInternalException");
  app.add_option("--drop-rate", f.faults.drop_rate, "fault: share whose connection is dropped");
  app.add_option("--fault-operations", f.faults.operations, "fault: only these operations")
      ->delimiter(',');
  app.add_option("--fault-count", f.faults.count, "fault: inject at most this many, then clear");
  app.add_option_function<std::string>(
         "--quirk",
         [&f](const std::string& name) {
           std::optional<kmsfs::kms_local::Quirk> q = kmsfs::kms_local::quirk_from_name(name);
           if (!q) throw CLI::ValidationError("--quirk", "one of none, nulls, missing_field, html_error, xml_error");
           f.faults.quirk = *q;
         },
         "answer quirk (faults.h): nulls, missing_field, html_error, xml_error");
  app.add_option("--quirk-status", f.faults.quirk_status, "HTTP status of html_error / xml_error");
  app.add_flag("--quiet", f.quiet, "no per-request log lines on stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a "parse error" with code 0; every real one is our usage error, 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  return kmsfs::kms_local::run(f);
}
