// kmsfs fsck and kmsfs keyring prune on real vaults: each kind of damage the tamper
// tests make is found (and --repair corrects what it can, moving, never deleting), files
// under an old or disabled key version are listed, and prune refuses a version while any
// file still needs it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cli_fixture.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

// fsck(8) exit statuses (docs/CLI.md "fsck").
enum : int { kClean = 0, kRepaired = 1, kUncorrected = 4, kOperational = 8 };

constexpr uint64_t kHeader = 4096;
constexpr uint64_t kSlotOffset[2] = {1024, 2560};

class FsckTest : public CliTest {
 protected:
  void SetUp() override {
    make_plain_keyring("kr");
    const std::string init = make_vault("vault", "kr");
    const auto at = init.find("block size: ");
    ASSERT_NE(at, std::string::npos) << init;
    block_size_ = std::stoull(init.substr(at + 12));
  }

  bool encrypted_names() const { return matrix_encrypts_names(); }

  // The backing path of a plaintext path in `vault`, relative to the temp dir.
  std::string backing_of(const std::string& plain, const std::string& vault = "vault") {
    auto r = kmsfs({"encrypt-path", vault, plain});
    EXPECT_TRUE(Succeeded(r));
    std::string out = r.out;
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  // Writes `data` into the vault as the plaintext path `plain`, naming its directories
  // as the mount would; returns the backing path relative to the vault.
  std::string put(const std::string& plain, const std::string& data, const std::string& vault = "vault") {
    for (size_t slash = plain.find('/'); slash != std::string::npos; slash = plain.find('/', slash + 1))
      ::mkdir(p(backing_of(plain.substr(0, slash), vault)).c_str(), 0755);
    const std::string rel = backing_of(plain, vault).substr(vault.size() + 1);
    encrypt(vault, rel, data);
    return rel;
  }

  uint64_t block_offset(uint64_t i) const { return kHeader + i * (block_size_ + 40); }

  ProcessResult fsck(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"fsck", "vault"};
    args.insert(args.end(), extra.begin(), extra.end());
    return kmsfs(args);
  }

  // fsck --json [extra]; expects exit `want` and nothing on stderr.
  json fsck_json(int want, std::vector<std::string> extra = {}) {
    extra.push_back("--json");
    ProcessResult r = fsck(extra);
    EXPECT_EQ(r.exit_code, want) << r.err << r.out;
    EXPECT_EQ(r.err, "");
    json j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  static std::vector<json> findings(const json& report, const std::string& kind) {
    std::vector<json> out;
    for (const auto& f : report["findings"])
      if (f["kind"] == kind) out.push_back(f);
    return out;
  }

  static std::string bytes_at(const std::string& path) { return read_file(path); }

  uint64_t block_size_ = 0;
};

TEST_F(FsckTest, CleanOnAFreshPopulatedVault) {
  put("a.txt", "hello");
  put("docs/big.bin", random_bytes(5 * block_size_ + 17, 1));
  put("docs/empty", "");
  put("docs/deep/x", random_bytes(block_size_, 2));
  const json j = fsck_json(kClean);
  EXPECT_EQ(j["fsck_version"], 1);
  EXPECT_EQ(j["vault"], "vault");
  EXPECT_EQ(j["outcome"], "clean");
  EXPECT_EQ(j["repair"], false);
  EXPECT_TRUE(j["in_use_by"].is_null());
  EXPECT_EQ(j["current_key"], "keyring:main@1");
  EXPECT_EQ(j["filesystem_key"], "keyring:main@1");
  EXPECT_EQ(j["names_checked"], true);
  EXPECT_TRUE(j["rotation"].is_null());
  EXPECT_EQ(j["findings"], json::array()) << j.dump(2);
  EXPECT_EQ(j["summary"]["files"], 4);
  EXPECT_EQ(j["summary"]["kmsfs_files"], 4);
  EXPECT_EQ(j["summary"]["entries"], 6);  // docs, docs/deep and four files
  EXPECT_EQ(j["summary"]["problems"], 0);
  EXPECT_EQ(j["summary"]["damaged_blocks"], 0);
  ASSERT_EQ(j["keys"].size(), 1u);
  EXPECT_EQ(j["keys"][0]["key"], "keyring:main@1");
  EXPECT_EQ(j["keys"][0]["provider"], "keyring");
  EXPECT_EQ(j["keys"][0]["key_id"], "main");
  EXPECT_EQ(j["keys"][0]["version"], 1);
  EXPECT_EQ(j["keys"][0]["files"], 4);
  EXPECT_EQ(j["keys"][0]["current"], true);
  EXPECT_EQ(j["keys"][0]["bytes"], j["summary"]["bytes"]);

  ProcessResult text = fsck();
  EXPECT_TRUE(Succeeded(text));
  EXPECT_TRUE(contains(text.out, "4 kmsfs files")) << text.out;
  EXPECT_TRUE(contains(text.out, "keyring:main@1")) << text.out;
  EXPECT_TRUE(contains(text.out, "clean: no problems found")) << text.out;
  // --repair on a clean vault changes nothing and says so.
  EXPECT_EQ(fsck_json(kClean, {"--repair"})["outcome"], "clean");
}

// One file or tree, named by its plaintext path as the mount shows it (or, with
// --backing-path, by the backing path fsck prints): only it is checked and counted.
TEST_F(FsckTest, OneFileOrTreeByItsPlaintextPath) {
  const std::string bad = put("docs/big.bin", random_bytes(4 * block_size_ + 9, 4));
  put("docs/deep/x", random_bytes(block_size_, 5));
  put("other/fine.txt", "fine");
  flip_bit(p("vault/" + bad), block_offset(2) + 7);

  auto one = [&](std::vector<std::string> args, int want) {
    args.push_back("--json");
    ProcessResult r = kmsfs(args);
    EXPECT_EQ(r.exit_code, want) << r.err << r.out;
    json j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out << r.err;
    return j;
  };
  json j = one({"fsck", "vault/other/fine.txt"}, kClean);
  EXPECT_EQ(j["summary"]["files"], 1) << j.dump(2);
  EXPECT_EQ(j["scope"]["path"], "other/fine.txt");
  EXPECT_EQ(j["scope"]["backing_path"], backing_of("other/fine.txt").substr(6));

  j = one({"fsck", "vault/docs"}, kUncorrected);  // the tree: big.bin, deep/, deep/x
  EXPECT_EQ(j["summary"]["files"], 2) << j.dump(2);
  ASSERT_EQ(findings(j, "damaged_block").size(), 1u) << j.dump(2);
  EXPECT_EQ(findings(j, "damaged_block")[0]["path"], bad);
  EXPECT_EQ(findings(j, "damaged_block")[0]["plain_path"], "docs/big.bin");

  j = one({"fsck", "--backing-path", "vault/" + bad}, kUncorrected);
  EXPECT_EQ(j["summary"]["files"], 1);
  EXPECT_EQ(j["summary"]["damaged_blocks"], 1);
  EXPECT_EQ(j["scope"]["backing_path"], bad);

  ProcessResult text = kmsfs({"fsck", "vault/docs/big.bin"});
  EXPECT_EQ(text.exit_code, kUncorrected);
  EXPECT_TRUE(contains(text.out, "checked: docs/big.bin only")) << text.out;
  EXPECT_TRUE(contains(text.out, "1 files")) << text.out;

  // Not there: the vault cannot be checked as asked (8), one line.
  ProcessResult missing = kmsfs({"fsck", "vault/docs/nope"});
  EXPECT_EQ(missing.exit_code, 8);
  EXPECT_TRUE(contains(missing.err, "docs/nope")) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
  if (matrix_encrypts_names()) {
    ProcessResult as_plain = kmsfs({"fsck", "vault/" + bad});  // an encrypted name without the flag
    EXPECT_EQ(as_plain.exit_code, 8);
    EXPECT_TRUE(contains(as_plain.err, "--backing-path")) << as_plain.err;
  }
}

TEST_F(FsckTest, DamagedBlocksAreListedAndTheFileStaysWhereItIs) {
  const std::string data = random_bytes(8 * block_size_ + 100, 3);
  const std::string rel = put("docs/big.bin", data);
  put("ok.txt", "fine");
  const std::string file_id = inspect_json(p("vault/" + rel))["file_id"];
  flip_bit(p("vault/" + rel), block_offset(5) + 100);
  {
    std::fstream f(p("vault/" + rel), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(block_offset(2)));
    f.write(std::string(block_size_ + 40, '\0').data(), static_cast<std::streamsize>(block_size_ + 40));
  }
  for (bool repair : {false, true}) {
    SCOPED_TRACE(repair ? "--repair" : "check");
    const json j = fsck_json(kUncorrected, repair ? std::vector<std::string>{"--repair"} : std::vector<std::string>{});
    const auto bad = findings(j, "damaged_block");
    ASSERT_EQ(bad.size(), 2u) << j.dump(2);
    EXPECT_EQ(bad[0]["block"], 2);
    EXPECT_EQ(bad[1]["block"], 5);
    for (const auto& f : bad) {
      EXPECT_EQ(f["path"], rel);
      EXPECT_EQ(f["plain_path"], "docs/big.bin");
      EXPECT_EQ(f["file_id"], file_id);
      EXPECT_EQ(f["severity"], "problem");
      EXPECT_EQ(f["repairable"], false);
      EXPECT_EQ(f["status"], "found");
    }
    EXPECT_EQ(j["summary"]["damaged_blocks"], 2);
    EXPECT_EQ(j["summary"]["uncorrected"], 2);
    EXPECT_EQ(j["findings"].size(), 2u) << j.dump(2);
  }
  // Still in place: the blocks before the first bad one read.
  ProcessResult cat = kmsfs({"cat", "--backing-path", "vault/" + rel});
  EXPECT_EQ(cat.exit_code, kCorrupt);
  EXPECT_EQ(cat.out, data.substr(0, 2 * block_size_));
  ProcessResult text = fsck();
  EXPECT_EQ(text.exit_code, kUncorrected);
  EXPECT_EQ(text.err, "");
  EXPECT_TRUE(contains(text.out, "damaged block: " + rel)) << text.out;
  EXPECT_TRUE(contains(text.out, "block 5: ")) << text.out;
  EXPECT_TRUE(contains(text.out, "2 of 2 problem(s) left uncorrected")) << text.out;
}

TEST_F(FsckTest, TruncatedFiles) {
  const std::string cut_in_block = put("cut-in-block", random_bytes(16 * block_size_ + 100, 4));
  const std::string cut_ragged = put("cut-ragged", random_bytes(16 * block_size_ + 100, 5));
  const std::string cut_header = put("cut-header", random_bytes(3 * block_size_, 6));
  ASSERT_EQ(::truncate(p("vault/" + cut_in_block).c_str(), static_cast<off_t>(block_offset(10) + (block_size_ + 40) / 2)), 0);
  ASSERT_EQ(::truncate(p("vault/" + cut_ragged).c_str(), static_cast<off_t>(block_offset(6) + 20)), 0);
  ASSERT_EQ(::truncate(p("vault/" + cut_header).c_str(), 100), 0);
  const std::string header_bytes = bytes_at(p("vault/" + cut_header));

  const json j = fsck_json(kUncorrected);
  std::map<std::string, std::vector<std::string>> by_path;
  for (const auto& f : j["findings"]) {
    std::string what = f["kind"].get<std::string>();
    if (f.contains("block")) what += " " + std::to_string(f["block"].get<uint64_t>());
    by_path[f["path"]].push_back(what);
  }
  EXPECT_EQ(by_path[cut_in_block], (std::vector<std::string>{"damaged_block 10"})) << j.dump(2);
  EXPECT_EQ(by_path[cut_ragged], (std::vector<std::string>{"damaged_block 5", "truncated"})) << j.dump(2);
  EXPECT_EQ(by_path[cut_header], (std::vector<std::string>{"damaged_header"})) << j.dump(2);
  EXPECT_TRUE(contains(findings(j, "damaged_header")[0]["message"].get<std::string>(), "truncated"));

  // --repair moves the file it cannot save, and only that one.
  const json r = fsck_json(kUncorrected, {"--repair"});
  const auto moved = findings(r, "damaged_header");
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0]["status"], "quarantined");
  EXPECT_EQ(moved[0]["quarantined_to"], "kmsfs.quarantine/" + cut_header);
  EXPECT_FALSE(std::filesystem::exists(p("vault/" + cut_header)));
  EXPECT_EQ(bytes_at(p("vault/kmsfs.quarantine/" + cut_header)), header_bytes);
  EXPECT_TRUE(std::filesystem::exists(p("vault/" + cut_in_block)));
  EXPECT_TRUE(std::filesystem::exists(p("vault/" + cut_ragged)));
  EXPECT_EQ(findings(fsck_json(kUncorrected), "damaged_header").size(), 0u);
}

TEST_F(FsckTest, BrokenHeaderMacIsQuarantinedNotDeleted) {
  const std::string rel = put("dir/victim", random_bytes(3000, 7));
  put("dir/other", "other");
  flip_bit(p("vault/" + rel), 40);  // the file id, inside the MAC'd immutable part
  const std::string before = bytes_at(p("vault/" + rel));
  const json j = fsck_json(kUncorrected);
  const auto bad = findings(j, "damaged_header");
  ASSERT_EQ(bad.size(), 1u) << j.dump(2);
  EXPECT_EQ(bad[0]["path"], rel);
  EXPECT_EQ(bad[0]["repairable"], true);
  EXPECT_EQ(bad[0]["status"], "found");
  ProcessResult text = fsck();
  EXPECT_TRUE(contains(text.out, "[--repair fixes this]")) << text.out;
  EXPECT_TRUE(contains(text.out, "kmsfs fsck --repair corrects 1 of them")) << text.out;

  const json r = fsck_json(kRepaired, {"--repair"});
  EXPECT_EQ(r["outcome"], "repaired");
  EXPECT_EQ(findings(r, "damaged_header")[0]["status"], "quarantined");
  EXPECT_FALSE(std::filesystem::exists(p("vault/" + rel)));
  EXPECT_EQ(bytes_at(p("vault/kmsfs.quarantine/" + rel)), before);
  EXPECT_EQ(std::filesystem::status(p("vault/kmsfs.quarantine")).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);
  // The quarantine is the vault's own: not walked, not listed.
  EXPECT_EQ(fsck_json(kClean)["outcome"], "clean");
  ProcessResult ls = kmsfs({"ls", "vault"});
  EXPECT_TRUE(Succeeded(ls));
  EXPECT_FALSE(contains(ls.out, "quarantine")) << ls.out;
  // A second file quarantined at the same path does not replace the first.
  const std::string again = put("dir/victim", "second", "vault");
  EXPECT_EQ(again, rel);
  flip_bit(p("vault/" + rel), 40);
  EXPECT_EQ(findings(fsck_json(kRepaired, {"--repair"}), "damaged_header")[0]["quarantined_to"],
            "kmsfs.quarantine/" + rel + ".1");
  EXPECT_EQ(bytes_at(p("vault/kmsfs.quarantine/" + rel)), before);
}

TEST_F(FsckTest, OneTornSlotIsRepairedThenTheVaultIsClean) {
  const std::string data = random_bytes(2 * block_size_ + 5, 8);
  const std::string rel = put("notes", data);
  const std::string path = p("vault/" + rel);
  flip_bit(path, kSlotOffset[1] + 30);  // slot 1, the active one: its checksum fails
  const timespec old_times[2] = {{1000000000, 0}, {1234567890, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), old_times, 0), 0);
  const json j = fsck_json(kUncorrected);
  const auto torn = findings(j, "one_slot");
  ASSERT_EQ(torn.size(), 1u) << j.dump(2);
  EXPECT_EQ(torn[0]["path"], rel);
  EXPECT_EQ(torn[0]["repairable"], true);
  EXPECT_TRUE(contains(torn[0]["message"].get<std::string>(), "key slot 1")) << torn[0];
  EXPECT_EQ(j["findings"].size(), 1u) << j.dump(2);

  const json r = fsck_json(kRepaired, {"--repair"});
  EXPECT_EQ(findings(r, "one_slot")[0]["status"], "repaired");
  EXPECT_EQ(fsck_json(kClean)["outcome"], "clean");
  const json h = inspect_json(path);
  EXPECT_EQ(h["slots"][0]["valid"], true);
  EXPECT_EQ(h["slots"][1]["valid"], true);
  ProcessResult cat = kmsfs({"cat", "--backing-path", path});
  EXPECT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, data);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);  // a header repair is not a content change
}

TEST_F(FsckTest, BothSlotsTornIsQuarantined) {
  const std::string rel = put("gone", random_bytes(500, 9));
  for (uint64_t off : kSlotOffset) flip_bit(p("vault/" + rel), off + 30);
  const std::string before = bytes_at(p("vault/" + rel));
  const json j = fsck_json(kUncorrected);
  const auto bad = findings(j, "damaged_header");
  ASSERT_EQ(bad.size(), 1u) << j.dump(2);
  EXPECT_TRUE(contains(bad[0]["message"].get<std::string>(), "no valid key slot")) << bad[0];
  const json r = fsck_json(kRepaired, {"--repair"});
  EXPECT_EQ(findings(r, "damaged_header")[0]["status"], "quarantined");
  EXPECT_EQ(bytes_at(p("vault/kmsfs.quarantine/" + rel)), before);
  EXPECT_FALSE(std::filesystem::exists(p("vault/" + rel)));
  EXPECT_EQ(fsck_json(kClean)["outcome"], "clean");
}

TEST_F(FsckTest, ForeignFilesOtherVaultsNewerHeadersAndStaleTemporaries) {
  put("mine", "mine");
  write_file(p("vault/intruder.txt"), "plain text, not a kmsfs file\n");
  write_file(p("vault/empty"), "");
  // A kmsfs file of another vault, under a name that decrypts here.
  make_vault("other", "kr");
  const std::string theirs = put("theirs", "theirs", "other");
  const std::string stray = backing_of("stray").substr(6);
  std::filesystem::copy_file(p("other/" + theirs), p("vault/" + stray));
  // A header of a newer kmsfs: an unknown critical feature bit.
  const std::string newer = put("newer", "newer");
  flip_bit(p("vault/" + newer), 20);
  const std::string newer_bytes = bytes_at(p("vault/" + newer));
  // Temporaries: an old one a crash left, a young one some command may be writing now.
  write_file(p("vault/kmsfs.conf.tmp.1.2"), "{}");
  const timespec old_times[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p("vault/kmsfs.conf.tmp.1.2").c_str(), old_times, 0), 0);
  write_file(p("vault/kmsfs.rotation.tmp.3.4"), "{}");

  const json j = fsck_json(kUncorrected);
  const auto foreign = findings(j, "not_kmsfs");
  ASSERT_EQ(foreign.size(), 2u) << j.dump(2);
  EXPECT_EQ(foreign[0]["path"], "empty");
  EXPECT_EQ(foreign[0]["message"], "empty file");
  EXPECT_EQ(foreign[1]["path"], "intruder.txt");
  EXPECT_EQ(findings(j, "undecryptable_name").size(), encrypted_names() ? 2u : 0u) << j.dump(2);
  const auto wrong = findings(j, "wrong_vault");
  ASSERT_EQ(wrong.size(), 1u);
  EXPECT_EQ(wrong[0]["path"], stray);
  EXPECT_EQ(wrong[0]["plain_path"], "stray");
  const auto unsupported = findings(j, "unsupported_header");
  ASSERT_EQ(unsupported.size(), 1u);
  EXPECT_EQ(unsupported[0]["path"], newer);
  const auto temps = findings(j, "stale_temporary");
  ASSERT_EQ(temps.size(), 1u) << j.dump(2);
  EXPECT_EQ(temps[0]["path"], "kmsfs.conf.tmp.1.2");

  // --repair removes the stale temporary and leaves everything that is not kmsfs's to move.
  const json r = fsck_json(kUncorrected, {"--repair"});
  EXPECT_EQ(findings(r, "stale_temporary")[0]["status"], "removed");
  EXPECT_FALSE(std::filesystem::exists(p("vault/kmsfs.conf.tmp.1.2")));
  EXPECT_TRUE(std::filesystem::exists(p("vault/kmsfs.rotation.tmp.3.4")));
  for (const char* kind : {"not_kmsfs", "wrong_vault", "unsupported_header"})
    for (const auto& f : findings(r, kind)) EXPECT_EQ(f["status"], "found") << f;
  EXPECT_EQ(read_file(p("vault/intruder.txt")), "plain text, not a kmsfs file\n");
  EXPECT_EQ(bytes_at(p("vault/" + newer)), newer_bytes);
  EXPECT_TRUE(std::filesystem::exists(p("vault/" + stray)));
  EXPECT_EQ(findings(fsck_json(kUncorrected), "stale_temporary").size(), 0u);
}

TEST_F(FsckTest, FilesUnderTheOldVersionAreListedUntilTheVaultIsRotated) {
  const std::string a = put("a", "a"), b = put("d/b", "b");
  ASSERT_EQ(kmsfs({"keyring", "rotate", "kr", "main"}).out, "2\n");
  const json j = fsck_json(kClean);  // notices do not make it unclean
  EXPECT_EQ(j["current_key"], "keyring:main@2");
  EXPECT_EQ(j["filesystem_key"], "keyring:main@1");
  const auto old = findings(j, "not_rotated");
  ASSERT_EQ(old.size(), 3u) << j.dump(2);  // kmsfs.conf's filesystem key and the two files
  EXPECT_EQ(old[0]["path"], "kmsfs.conf");
  std::set<std::string> paths, plain;
  for (size_t i = 1; i < old.size(); ++i) {
    paths.insert(old[i]["path"]);
    plain.insert(old[i]["plain_path"]);
  }
  EXPECT_EQ(paths, (std::set<std::string>{a, b}));
  EXPECT_EQ(plain, (std::set<std::string>{"a", "d/b"}));
  for (const auto& f : old) {
    EXPECT_EQ(f["severity"], "notice");
    EXPECT_EQ(f["key"], "keyring:main@1");
  }
  ASSERT_EQ(j["keys"].size(), 1u);
  EXPECT_EQ(j["keys"][0]["key"], "keyring:main@1");
  EXPECT_EQ(j["keys"][0]["current"], false);
  ProcessResult text = fsck();
  EXPECT_TRUE(contains(text.out, "notices (3):")) << text.out;
  EXPECT_TRUE(contains(text.out, "not under the current key: " + a)) << text.out;

  ProcessResult rot = kmsfs({"rotate", "--offline", "vault", "--to", "main"});
  ASSERT_EQ(rot.exit_code, 0) << rot.out << rot.err;
  const json after = fsck_json(kClean);
  EXPECT_EQ(findings(after, "not_rotated").size(), 0u) << after.dump(2);
  EXPECT_EQ(after["filesystem_key"], "keyring:main@2");
  ASSERT_EQ(after["keys"].size(), 1u);
  EXPECT_EQ(after["keys"][0]["key"], "keyring:main@2");
  EXPECT_EQ(after["keys"][0]["files"], 2);
  EXPECT_EQ(after["rotation"]["phase"], "done");
}

// A name holding a newline, an escape sequence and a backslash: one escaped line in the
// human output of fsck and ls (docs/CLI.md "Names in human output"), exact in JSON.
TEST_F(FsckTest, NamesWithControlCharactersAreEscapedInTextAndExactInJson) {
  const std::string name = "new\nline \x1b[31mred\\";
  const std::string shown = "new\\nline \\x1b[31mred\\\\";
  write_file(p("src"), "data");
  ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "vault", "src", "d/" + name})));

  ProcessResult ls = kmsfs({"ls", "vault/d"});
  ASSERT_TRUE(Succeeded(ls));
  EXPECT_EQ(ls.out, shown + "\n");
  ProcessResult ll = kmsfs({"ls", "vault/d", "-l"});
  ASSERT_TRUE(Succeeded(ll));
  EXPECT_EQ(std::count(ll.out.begin(), ll.out.end(), '\n'), 1) << ll.out;
  EXPECT_TRUE(contains(ll.out, " " + shown + "  (")) << ll.out;

  // A finding on the file names it (not under the current key after a rotation).
  ASSERT_EQ(kmsfs({"keyring", "rotate", "kr", "main"}).out, "2\n");
  ProcessResult text = fsck();
  EXPECT_EQ(text.exit_code, kClean) << text.err;
  EXPECT_TRUE(contains(text.out, "d/" + shown)) << text.out;
  EXPECT_EQ(text.out.find('\x1b'), std::string::npos) << text.out;
  EXPECT_FALSE(contains(text.out, "\nline ")) << "the name broke its line:\n" << text.out;
  const json j = fsck_json(kClean);
  std::set<std::string> plain;
  for (const auto& f : findings(j, "not_rotated"))
    if (f.contains("plain_path")) plain.insert(f["plain_path"].get<std::string>());
  EXPECT_EQ(plain.count("d/" + name), 1u) << j.dump(2);
}

TEST_F(FsckTest, InterruptedRotationIsFinishedByRepair) {
  const std::string a = put("a", "a");
  put("b", "b");
  const std::string before = bytes_at(p("vault/" + a));
  ASSERT_EQ(kmsfs({"keyring", "rotate", "kr", "main"}).out, "2\n");
  ASSERT_EQ(kmsfs({"rotate", "--offline", "vault", "--to", "main"}).exit_code, 0);
  // As a daemon killed at the start of a pass leaves it, with a file still under the old
  // key.
  json state = json::parse(read_file(p("vault/kmsfs.rotation")));
  state["phase"] = "running";
  state["cursor"] = "";
  write_file(p("vault/kmsfs.rotation"), state.dump());
  write_file(p("vault/" + a), before);
  const json j = fsck_json(kUncorrected);
  EXPECT_EQ(findings(j, "not_rotated").size(), 1u) << j.dump(2);
  const auto stopped = findings(j, "interrupted_rotation");
  ASSERT_EQ(stopped.size(), 1u) << j.dump(2);
  EXPECT_EQ(stopped[0]["path"], "kmsfs.rotation");
  const json r = fsck_json(kRepaired, {"--repair"});
  EXPECT_EQ(findings(r, "interrupted_rotation")[0]["status"], "repaired") << r.dump(2);
  EXPECT_EQ(r["rotation"]["phase"], "done");
  EXPECT_EQ(findings(r, "not_rotated").size(), 0u) << r.dump(2);
}

TEST_F(FsckTest, DisabledVersionIsReportedAndPruneRefusesUntilNothingNeedsIt) {
  const std::string a = put("a", random_bytes(3000, 10));
  const std::string b = put("b", "b");
  const std::string backup = bytes_at(p("vault/" + a));  // a backup taken before the rotation
  ASSERT_EQ(kmsfs({"keyring", "rotate", "kr", "main"}).out, "2\n");
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"}), kExists,
                         {"keyring prune: ", "keyring:main@1 is enabled"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "prune", "kr", "main:1"}), kUsage, {"--vault"}));

  // Disabled before the vault moved: the filesystem key and both files need it.
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "disable", "kr", "main:1"})));
  const json j = fsck_json(kUncorrected);
  const auto unavailable = findings(j, "key_unavailable");
  ASSERT_EQ(unavailable.size(), 3u) << j.dump(2);
  EXPECT_EQ(unavailable[0]["path"], "kmsfs.conf");
  for (const auto& f : unavailable) {
    EXPECT_EQ(f["key"], "keyring:main@1");
    EXPECT_TRUE(contains(f["message"].get<std::string>(), "disabled")) << f;
  }
  EXPECT_EQ(j["names_checked"], !encrypted_names());
  EXPECT_EQ(findings(j, "damaged_header").size(), 0u);
  ProcessResult refused = kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"});
  EXPECT_EQ(refused.exit_code, kExists);
  EXPECT_TRUE(contains(refused.err, "keyring:main@1 is still needed in 1 vault(s) (2 file(s)")) << refused.err;
  EXPECT_TRUE(contains(refused.out, "filesystem key")) << refused.out;
  EXPECT_TRUE(contains(refused.out, "2 file(s) still have a key slot under keyring:main@1")) << refused.out;
  EXPECT_TRUE(contains(refused.out, "    " + a + "\n")) << refused.out;

  // The vault moves; a file restored from the old backup is still under version 1.
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "enable", "kr", "main:1"})));
  ASSERT_EQ(kmsfs({"rotate", "--offline", "vault", "--to", "main"}).exit_code, 0);
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "disable", "kr", "main:1"})));
  EXPECT_EQ(fsck_json(kClean)["outcome"], "clean");
  write_file(p("vault/" + a), backup);
  const json restored = fsck_json(kUncorrected);
  const auto under_old = findings(restored, "key_unavailable");
  ASSERT_EQ(under_old.size(), 1u) << restored.dump(2);
  EXPECT_EQ(under_old[0]["path"], a);
  EXPECT_EQ(under_old[0]["key"], "keyring:main@1");
  refused = kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"});
  EXPECT_EQ(refused.exit_code, kExists);
  EXPECT_TRUE(contains(refused.out, "1 file(s) still have a key slot under keyring:main@1:\n    " + a + "\n"))
      << refused.out;
  EXPECT_FALSE(contains(refused.out, "filesystem key")) << refused.out;

  // Once nothing needs it, it goes for good.
  ASSERT_EQ(::rename(p("vault/" + a).c_str(), p("restored-copy").c_str()), 0);
  ProcessResult pruned = kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"});
  ASSERT_TRUE(Succeeded(pruned));
  EXPECT_EQ(pruned.out, "");
  const json listing = json::parse(kmsfs({"keyring", "list", "kr", "--json"}).out);
  EXPECT_EQ(listing["keys"][0]["versions"][0]["state"], "pruned");
  EXPECT_EQ(listing["keys"][0]["versions"][1]["state"], "enabled");
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "enable", "kr", "main:1"}), kNotFound, {"was pruned"}));
  EXPECT_TRUE(FailedWith(kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"}), kNotFound, {"was pruned"}));
  EXPECT_EQ(fsck_json(kClean)["outcome"], "clean");
  ASSERT_EQ(kmsfs({"keyring", "rotate", "kr", "main"}).out, "3\n");  // numbers are never reused
  // The old backup can no longer be read, and fsck says why.
  std::filesystem::copy_file(p("restored-copy"), p("vault/" + a));
  const auto lost = findings(fsck_json(kUncorrected), "key_unavailable");
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_TRUE(contains(lost[0]["message"].get<std::string>(), "was pruned")) << lost[0];
}

TEST_F(FsckTest, PruneCountsQuarantinedFilesAndUnreadableHeaders) {
  const std::string a = put("a", "a"), b = put("b", "b");
  const std::string backup = bytes_at(p("vault/" + a));  // taken before the rotation
  ASSERT_EQ(kmsfs({"keyring", "rotate", "kr", "main"}).out, "2\n");
  ASSERT_EQ(kmsfs({"rotate", "--offline", "vault", "--to", "main"}).exit_code, 0);
  // The backup comes back damaged (its header MAC fails, but the header parses and names
  // its key), and b's header loses both slots (it names no key at all).
  write_file(p("vault/" + a), backup);
  flip_bit(p("vault/" + a), 40);
  for (uint64_t off : kSlotOffset) flip_bit(p("vault/" + b), off + 30);
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "disable", "kr", "main:1"})));
  ProcessResult refused = kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"});
  EXPECT_EQ(refused.exit_code, kExists);
  EXPECT_TRUE(contains(refused.out, "1 file(s) still have a key slot under keyring:main@1:\n    " + a + "\n"))
      << refused.out;
  EXPECT_TRUE(contains(refused.out, "1 kmsfs file(s) whose header names no key that can be read")) << refused.out;
  // With its key disabled, fsck cannot tell that a's header is bad (key_unavailable);
  // enabled, it can, and --repair moves both files.
  EXPECT_EQ(findings(fsck_json(kUncorrected), "key_unavailable").size(), 1u);
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "enable", "kr", "main:1"})));
  ASSERT_EQ(fsck_json(kRepaired, {"--repair"})["outcome"], "repaired");
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "disable", "kr", "main:1"})));
  refused = kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"});
  EXPECT_EQ(refused.exit_code, kExists);
  EXPECT_TRUE(contains(refused.out, "    kmsfs.quarantine/" + a + "\n")) << refused.out;
  EXPECT_FALSE(contains(refused.out, "header names no key")) << refused.out;
  std::filesystem::remove_all(p("vault/kmsfs.quarantine"));
  EXPECT_TRUE(Succeeded(kmsfs({"keyring", "prune", "kr", "main:1", "--vault", "vault"})));
}

TEST_F(FsckTest, OperationalErrorsExit8WithOneLine) {
  ::mkdir(p("not-a-vault").c_str(), 0755);
  EXPECT_TRUE(FailedWith(kmsfs({"fsck", "not-a-vault"}), kOperational, {"fsck: ", "not a kmsfs vault"}));
  EXPECT_TRUE(FailedWith(kmsfs({"fsck", "not-a-vault", "--repair"}), kOperational, {"not a kmsfs vault"}));
  EXPECT_FALSE(std::filesystem::exists(p("not-a-vault/kmsfs.lock")));
  EXPECT_TRUE(FailedWith(kmsfs({"fsck", "missing"}), kOperational, {"does not exist"}));
  // A sealed keyring and the wrong passphrase.
  write_file(p("pw"), "right passphrase\n");
  write_file(p("wrong"), "wrong passphrase\n");
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "create", "sealed", "--passphrase-file", "pw", "--kdf-profile", "interactive",
                               "--key", "main"})));
  ::mkdir(p("sv").c_str(), 0755);
  std::vector<std::string> init{"init", "sv", "--keyring", "sealed", "--key", "main", "--passphrase-file", "pw"};
  for (const auto& arg : matrix_init_args()) init.push_back(arg);
  ASSERT_TRUE(Succeeded(kmsfs(init)));
  EXPECT_TRUE(Succeeded(kmsfs({"fsck", "sv", "--passphrase-file", "pw"})));
  EXPECT_TRUE(FailedWith(kmsfs({"fsck", "sv", "--passphrase-file", "wrong"}), kOperational, {"wrong passphrase"}));
}

}  // namespace
}  // namespace kmsfs::testing
