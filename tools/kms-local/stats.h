// Request counters per operation and result, for tests to read (GET /__admin/stats):
//   {"total": 7, "operations": {"Encrypt": {"ok": 3, "ThrottlingException": 1},
//                               "AssumeRole": {"ok": 1}, ...}}
// The result is "ok", the error's type (AWS's __type / STS Code), or "ConnectionDropped".
// Requests that name no known operation count under "(unknown)".
//
// And a journal of the last kJournalSize requests (GET /__admin/requests), oldest first:
//   [{"operation": "Decrypt", "result": "ok", "caller": "arn:aws:iam::...:user/test",
//     "KeyId": "...", "EncryptionContext": {...}}, ...]
// so tests can check what a client sent (the context on every Decrypt, the credentials
// that signed it). Key ids and contexts only: never plaintexts or ciphertext blobs.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kmsfs::kms_local {

class Stats {
 public:
  static constexpr size_t kJournalSize = 4096;

  // `detail`: an object of request fields to journal (may be null).
  void record(std::string_view op, std::string_view result, nlohmann::json detail = nullptr);
  nlohmann::json to_json() const;
  nlohmann::json journal() const;
  void reset();

 private:
  mutable std::mutex mu_;
  uint64_t total_ = 0;
  std::map<std::string, std::map<std::string, uint64_t>, std::less<>> counts_;
  std::deque<nlohmann::json> journal_;
};

}  // namespace kmsfs::kms_local
