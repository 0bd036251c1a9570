#include "keys/aws/http.h"

#include <curl/curl.h>
#include <openssl/ssl.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "crypto/nodump_heap.h"

namespace kmsfs::aws {

std::string HttpResponse::header(std::string_view lname) const {
  for (const auto& [n, v] : headers) {
    if (n == lname) return v;
  }
  return {};
}

namespace {

struct EasyDeleter {
  void operator()(CURL* h) const noexcept { curl_easy_cleanup(h); }
};
struct ShareDeleter {
  void operator()(CURLSH* h) const noexcept { curl_share_cleanup(h); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using SharePtr = std::unique_ptr<CURLSH, ShareDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// libcurl's own memory comes from the no-dump heap: its receive buffer holds every KMS
// answer (data keys in base64), its request buffers an Encrypt's plaintext, and both stay
// in a pooled handle after the call. Locked, left out of core dumps, zeroed when freed.
void* curl_alloc(size_t n) { return nodump_alloc(n); }
void curl_release(void* p) { nodump_free(p); }
void* curl_grow(void* p, size_t n) { return nodump_realloc(p, n); }
char* curl_dup(const char* s) {
  const size_t n = std::strlen(s) + 1;
  auto* p = static_cast<char*>(nodump_alloc(n));
  if (p != nullptr) std::memcpy(p, s, n);
  return p;
}
void* curl_zalloc(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;
  void* p = nodump_alloc(n * size);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

// curl_global_init is not thread-safe in libcurl < 7.84: run it once, before the first
// handle, whichever thread gets here first.
void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    curl_global_init_mem(CURL_GLOBAL_DEFAULT, curl_alloc, curl_release, curl_grow, curl_dup, curl_zalloc);
  });
}

// OpenSSL decrypts each TLS record in place in its read buffer and by default leaves the
// plaintext there (a KMS answer with its data key) until the buffer is reused or freed
// unwiped. With SSL_OP_CLEANSE_PLAINTEXT it wipes it once libcurl has copied it out.
// libcurl calls this only with its OpenSSL backend, which is what Debian builds.
CURLcode on_ssl_ctx(CURL*, void* ssl_ctx, void*) {
  SSL_CTX_set_options(static_cast<SSL_CTX*>(ssl_ctx), SSL_OP_CLEANSE_PLAINTEXT);
  return CURLE_OK;
}

struct Sink {
  HttpResponse* resp;
  size_t limit;
  bool overflow = false;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t len = size * n;
  if (sink->resp->body.size() + len > sink->limit) {
    sink->overflow = true;
    return 0;  // makes curl fail with CURLE_WRITE_ERROR
  }
  sink->resp->body.append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* resp = static_cast<HttpResponse*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    resp->headers.clear();  // a 100 Continue or a proxy's CONNECT answer came first
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  resp->headers.emplace_back(std::move(name), std::string(value));
  return size * n;
}

Status transport_error(CURLcode rc, const std::string& url, const char* detail) {
  std::string msg = "HTTP request to " + url + " failed: " + curl_easy_strerror(rc);
  if (detail && *detail) msg += std::string(" (") + detail + ")";
  switch (rc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Status(Code::kInvalidArgument, msg);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return Status(Code::kPermissionDenied, msg + "; check AWS_CA_BUNDLE");
    default:
      return Status(Code::kUnavailable, msg);
  }
}

class CurlTransport final : public HttpTransport {
 public:
  explicit CurlTransport(CurlOptions opts) : opts_(std::move(opts)) {
    global_init();
    if (opts_.ca_bundle.empty()) {
      if (const char* b = std::getenv("AWS_CA_BUNDLE"); b && *b) opts_.ca_bundle = b;
    }
    share_.reset(curl_share_init());
    if (share_) {
      curl_share_setopt(share_.get(), CURLSHOPT_LOCKFUNC, &CurlTransport::lock);
      curl_share_setopt(share_.get(), CURLSHOPT_UNLOCKFUNC, &CurlTransport::unlock);
      curl_share_setopt(share_.get(), CURLSHOPT_USERDATA, this);
      curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
      curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
      curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    }
  }

  ~CurlTransport() override {
    // Easy handles attached to the share must go first.
    pool_.clear();
  }

  Result<HttpResponse> send(const HttpCall& call) override {
    EasyPtr h = acquire();
    if (!h) return Status(Code::kInternal, "curl_easy_init failed");
    Result<HttpResponse> r = perform(h.get(), call);
    release(std::move(h));
    return r;
  }

 private:
  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<CurlTransport*>(user)->locks_[size_t(data) % kLocks].lock();
  }
  static void unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<CurlTransport*>(user)->locks_[size_t(data) % kLocks].unlock();
  }

  EasyPtr acquire() {
    {
      std::lock_guard g(pool_mu_);
      if (!pool_.empty()) {
        EasyPtr h = std::move(pool_.back());
        pool_.pop_back();
        return h;
      }
    }
    return EasyPtr(curl_easy_init());
  }

  void release(EasyPtr h) {
    // Reset drops per-request options but keeps the handle's connections and caches.
    curl_easy_reset(h.get());
    std::lock_guard g(pool_mu_);
    if (pool_.size() < kMaxPooled) pool_.push_back(std::move(h));
  }

  Result<HttpResponse> perform(CURL* h, const HttpCall& call) {
    HttpResponse resp;
    Sink sink{&resp, opts_.max_response_bytes};
    char errbuf[CURL_ERROR_SIZE] = {0};

    SlistPtr headers;
    auto append = [&headers](const std::string& line) {
      curl_slist* l = curl_slist_append(headers.get(), line.c_str());
      if (!l) return false;
      (void)headers.release();  // l is the same list, grown (or a new one)
      headers.reset(l);
      return true;
    };
    for (const auto& [n, v] : call.headers) {
      // "Name;" is curl's spelling of a header with an empty value; "Name:" would remove it.
      if (!append(v.empty() ? n + ";" : n + ": " + v)) {
        return Status(Code::kInternal, "curl_slist_append failed");
      }
    }
    // No "Expect: 100-continue" round trip for our small bodies.
    if (!append("Expect:")) return Status(Code::kInternal, "curl_slist_append failed");

    auto ms = [](std::chrono::milliseconds v, std::chrono::milliseconds dflt) {
      return long((v.count() > 0 ? v : dflt).count());
    };
    curl_easy_setopt(h, CURLOPT_URL, call.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms(call.connect_timeout, opts_.connect_timeout));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms(call.timeout, opts_.timeout));
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
    if (share_) curl_easy_setopt(h, CURLOPT_SHARE, share_.get());
    if (!opts_.ca_bundle.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, opts_.ca_bundle.c_str());
    curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, &on_ssl_ctx);
    // Not setting CURLOPT_PROXY is what makes libcurl read the proxy environment; "*"
    // in NOPROXY bypasses it for this request only.
    if (call.no_proxy) curl_easy_setopt(h, CURLOPT_NOPROXY, "*");

    if (call.method == "POST" || call.method == "PUT") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, call.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(call.body.size()));
      if (call.method == "PUT") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    } else if (call.method != "GET") {
      return Status(Code::kInvalidArgument, "unsupported HTTP method " + call.method);
    }

    CURLcode rc = curl_easy_perform(h);
    if (sink.overflow) {
      return Status(Code::kUnavailable, "HTTP response from " + call.url + " exceeds " +
                                            std::to_string(opts_.max_response_bytes) + " bytes");
    }
    if (rc != CURLE_OK) return transport_error(rc, call.url, errbuf);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
  }

  static constexpr size_t kMaxPooled = 32;
  static constexpr size_t kLocks = CURL_LOCK_DATA_LAST + 1;

  CurlOptions opts_;
  std::array<std::mutex, kLocks> locks_;
  SharePtr share_;  // declared before pool_: destroyed after the handles that use it
  std::mutex pool_mu_;
  std::vector<EasyPtr> pool_;
};

}  // namespace

std::unique_ptr<HttpTransport> make_curl_transport(CurlOptions opts) {
  return std::make_unique<CurlTransport>(std::move(opts));
}

}  // namespace kmsfs::aws
