// Shared helpers for the CLI tests: run the real `kmsfs` binary (KMSFS_BIN) in a fresh
// temp directory, build keyrings and vaults, tamper with files, and check the documented
// outcome (exit code, one-line error) of each run.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "subprocess.h"
#include "temp_dir.h"

namespace kmsfs::testing {

// Exit codes, as documented in docs/CLI.md (src/cli/exit_codes.h).
enum : int {
  kOk = 0, kInternal = 1, kUsage = 2, kNotFound = 3, kPermission = 4, kCorrupt = 5,
  kUnsupported = 6, kIo = 7, kExists = 8, kUnavailable = 9,
};

// Exit 0 and an empty stderr.
::testing::AssertionResult Succeeded(const ProcessResult& r);
// Exit `code`, stderr exactly one line "kmsfs: ...", containing every needle.
::testing::AssertionResult FailedWith(const ProcessResult& r, int code,
                                      std::initializer_list<std::string_view> needles);

std::string random_bytes(size_t n, uint64_t seed);
void write_file(const std::string& path, std::string_view data);
std::string read_file(const std::string& path);
void flip_bit(const std::string& path, uint64_t offset, int bit = 0);
bool contains(std::string_view hay, std::string_view needle);

class CliTest : public ::testing::Test {
 protected:
  // kmsfs ARGS..., cwd = the temp dir, KMSFS_KEYRING unset unless opts.env sets it.
  ProcessResult kmsfs(std::vector<std::string> args, SpawnOptions opts = {}) const;

  std::string p(const std::string& rel) const { return tmp_ / rel; }

  // Extra init options from $KMSFS_TEST_INIT_ARGS (the CI option matrix), split on spaces.
  static std::vector<std::string> matrix_init_args();
  // The cipher the matrix asks for (default aes-256-gcm).
  static std::string matrix_cipher();
  // False when the matrix asks for --plaintext-names (then a plaintext path is a backing path).
  static bool matrix_encrypts_names();

  // keyring create KEYRING --no-passphrase --key main.
  void make_plain_keyring(const std::string& keyring, std::vector<std::string> keys = {"main"});
  // mkdir VAULT; kmsfs init VAULT --keyring KEYRING --key main [extra] [matrix args].
  // Returns init's stdout.
  std::string make_vault(const std::string& vault, const std::string& keyring,
                         std::vector<std::string> extra = {});
  // Writes `data` to a plaintext file and encrypt-files it as DEST into VAULT.
  void encrypt(const std::string& vault, const std::string& dest, const std::string& data,
               std::vector<std::string> extra = {});
  // inspect FILE --json [extra], parsed; fails the test on a non-zero exit.
  nlohmann::json inspect_json(const std::string& file, std::vector<std::string> extra = {});

  TempDir tmp_;
};

}  // namespace kmsfs::testing
