// Real applications on a kmsfs mount: sqlite3 (WAL, concurrent readers), git (commit,
// fsck, gc, clone), tar (extract + --compare, times/modes/xattrs), rsync (-aHX, temp
// files, delta transfer, nothing left to transfer afterwards). Each result is compared
// with the same work on a plain directory where that is meaningful, and re-verified after
// an unmount and a fresh mount.
//
// The programs come from Debian packages (scripts/install-deps.sh); a missing one skips
// its test with the reason.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "mounted_vault.h"

namespace kmsfs::testing {
namespace {

bool have(const std::string& prog) { return run({"/bin/sh", "-c", "command -v " + prog}).exit_code == 0; }

std::string tail_of(const std::string& s, size_t n = 3000) { return s.size() > n ? "..." + s.substr(s.size() - n) : s; }

// Shared fixture tree: the awkward cases real trees have. $1 = directory to create.
// Content is deterministic; times are fixed; special files need root (tests run as root).
const char* const kFixtureScript = R"SH(
set -e
d=$1
mkdir -p "$d/sub/deeper/deepest" "$d/setgid-dir" "$d/sticky" "$d/private" "$d/empty-dir"
printf 'hello\n' > "$d/plain.txt"
: > "$d/empty"
python3 - "$d" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(42)
with open(os.path.join(d, 'random.bin'), 'wb') as f: f.write(r.randbytes(3 * 1024 * 1024 + 17))
with open(os.path.join(d, 'sub/odd-size.bin'), 'wb') as f: f.write(r.randbytes(4097))
with open(os.path.join(d, 'sub/deeper/deepest/block.bin'), 'wb') as f: f.write(r.randbytes(4096))
for i in range(40):
    with open(os.path.join(d, 'sub/small-%02d' % i), 'wb') as f: f.write(r.randbytes(r.randrange(0, 9000)))
with open(os.path.join(d, 'sparse.bin'), 'wb') as f:
    f.truncate(6 * 1024 * 1024)
    f.seek(2 * 1024 * 1024 + 5); f.write(b'island')
with open(os.path.join(d, 'n' * 255), 'w') as f: f.write('longest name\n')
with open(os.path.join(d, 'ünïcødé-名前.txt'), 'w') as f: f.write('unicode\n')
with open(os.path.join(d, 'with space & $ymbols'), 'w') as f: f.write('spaces\n')
os.setxattr(os.path.join(d, 'plain.txt'), 'user.kmsfs.test', b'value-1')
os.setxattr(os.path.join(d, 'sub'), 'user.dir.attr', b'\x00\x01binary')
PY
ln "$d/plain.txt" "$d/hardlink.txt"
ln "$d/plain.txt" "$d/sub/hardlink-in-sub.txt"
ln -s plain.txt "$d/symlink"
ln -s /nonexistent/target "$d/dangling"
ln -s ../sub "$d/sub/deeper/up"
mkfifo "$d/fifo"
mknod "$d/chardev" c 1 3
printf '#!/bin/sh\necho hi\n' > "$d/setuid"
chmod 4755 "$d/setuid"
chmod 2755 "$d/setgid-dir"
chmod 1777 "$d/sticky"
printf 'secret\n' > "$d/private/key"
chmod 0600 "$d/private/key"
chmod 0700 "$d/private"
printf 'none\n' > "$d/noperm"
chmod 0000 "$d/noperm"
printf 'exec\n' > "$d/exec"
chmod 0751 "$d/exec"
printf 'old\n' > "$d/old"
touch -d '1971-02-03 04:05:06.123456789' "$d/old"
printf 'future\n' > "$d/future"
touch -d '2100-01-01 00:00:00.5' "$d/future"
touch -h -d '2001-01-01 12:00:00' "$d/symlink"
# Directory times last, deepest first, once their contents exist.
find "$d" -depth -type d -exec touch -d '2020-05-06 07:08:09.987654321' {} +
)SH";

// `diff -r` of two trees, symlinks compared as links; fifos and device nodes (which diff
// only reports as "is a fifo while ... is a fifo"; tar -d and rsync check their type and
// numbers) are not differences. Prints the differences and fails.
const std::string kDiffTrees =
    "difftrees() { out=$(diff -r --no-dereference \"$1\" \"$2\" 2>&1 | grep -v '^File .* is a \\(fifo\\|character special file\\) while file .* is a "
    "\\(fifo\\|character special file\\)$' || true); if [ -n \"$out\" ]; then echo \"$out\" >&2; return 1; fi; }; difftrees";

class AppsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::umask(022);
    env_ = {"M=" + v_.mnt(), "P=" + plain_.path(), "T=" + work_.path(), "HOME=" + work_.path(), "LC_ALL=C",
            "TZ=UTC", "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=kmsfs", "GIT_AUTHOR_EMAIL=kmsfs@example.com",
            "GIT_COMMITTER_NAME=kmsfs", "GIT_COMMITTER_EMAIL=kmsfs@example.com",
            "GIT_AUTHOR_DATE=2024-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2024-01-02T03:04:05Z"};
  }

  // Runs a bash script with $M (mount), $P (plain dir), $T (scratch) set; throws (failing
  // the test with the output) unless it exits 0.
  std::string ok(const std::string& script, std::chrono::seconds timeout = std::chrono::seconds(300)) {
    ProcessOptions o;
    o.env = env_;
    o.timeout = timeout;
    o.cwd = work_.path();
    auto t0 = std::chrono::steady_clock::now();
    ProcessResult r = sh("set -e\n" + script, o);
    if (getenv("TMP_TIMING")) std::cout << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s: " << script.substr(0, 100) << "\n";
    if (r.exit_code != 0 || r.timed_out) {
      throw std::runtime_error("script failed (exit " + std::to_string(r.exit_code) +
                               (r.timed_out ? ", timed out" : "") + "):\n" + script + "\n--- stdout:\n" +
                               tail_of(r.out) + "\n--- stderr:\n" + tail_of(r.err) + "\n--- daemon log:\n" +
                               tail_of(v_.log()));
    }
    return r.out;
  }

  void remount() {
    int rc = v_.unmount();
    ASSERT_EQ(rc, 0) << "daemon exit code at unmount\n" << v_.log();
    v_.mount();
  }

  void timed(const char* what, const std::chrono::steady_clock::time_point& t0) {
    std::cout << what << ": " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
              << " s\n";
  }

  MountedVault v_;
  TempDir plain_{"kmsfs-apps-plain"};
  TempDir work_{"kmsfs-apps-work"};
  std::vector<std::string> env_;
};

// ---------------------------------------------------------------- sqlite3

// Deterministic SQL: a schema, then `txns` transactions that move money between accounts
// (the total never changes, which the concurrent readers check), append rows with blobs of
// varying size, and now and then delete and update rows so pages are freed and reused.
std::pair<std::string, std::string> sqlite_scripts(int txns, uint64_t seed) {
  std::mt19937_64 r(seed);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(r); };
  std::ostringstream schema, body;
  schema << ".bail on\nPRAGMA journal_mode=WAL;\n"
         << "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL);\n"
         << "CREATE TABLE log(id INTEGER PRIMARY KEY, acct INTEGER, amount INTEGER, note TEXT, data BLOB);\n"
         << "CREATE INDEX log_acct ON log(acct);\nBEGIN;\n";
  for (int i = 0; i < 100; ++i) schema << "INSERT INTO acct VALUES(" << i << ",1000);\n";
  schema << "COMMIT;\n";
  body << ".bail on\n.timeout 20000\n";
  static const char* hex = "0123456789abcdef";
  for (int t = 0; t < txns; ++t) {
    int a = uni(0, 99), b = uni(0, 99), x = uni(1, 50);
    int len = uni(10, t % 50 == 0 ? 30000 : 2000);
    std::string blob;
    blob.reserve(2 * static_cast<size_t>(len));
    for (int i = 0; i < len; ++i) {
      int c = uni(0, 255);
      blob += hex[c >> 4];
      blob += hex[c & 15];
    }
    body << "BEGIN;\nUPDATE acct SET bal=bal-" << x << " WHERE id=" << a << ";\nUPDATE acct SET bal=bal+" << x
         << " WHERE id=" << b << ";\nINSERT INTO log(acct,amount,note,data) VALUES(" << a << "," << x << ",'t" << t
         << "',X'" << blob << "');\n";
    if (t % 10 == 3) body << "DELETE FROM log WHERE acct=" << uni(0, 99) << " AND id%3=0;\n";
    if (t % 15 == 7) body << "UPDATE log SET note=note||'-u" << t << "' WHERE acct=" << uni(0, 99) << ";\n";
    body << "COMMIT;\n";
    if (t % 700 == 699) body << "PRAGMA wal_checkpoint(TRUNCATE);\n";
  }
  return {schema.str(), body.str()};
}

TEST_F(AppsTest, Sqlite3WalWithConcurrentReaders) {
  if (!have("sqlite3")) GTEST_SKIP() << "sqlite3 not installed (Debian package sqlite3)";
  constexpr int kTxns = 3000;
  auto t0 = std::chrono::steady_clock::now();
  auto [schema, body] = sqlite_scripts(kTxns, 2024);
  write_file(work_ / "schema.sql", schema);
  write_file(work_ / "body.sql", body);

  // Reference on the plain directory.
  ok("sqlite3 \"$P/db\" < schema.sql >/dev/null && sqlite3 \"$P/db\" < body.sql >/dev/null");
  const std::string want = ok("sqlite3 \"$P/db\" .dump | sha256sum");
  timed("sqlite3 on the plain directory", t0);

  // On the mount, with two readers running: one long-lived connection issuing a query every
  // few ms (and a quick_check now and then), and a loop of short-lived processes (each maps
  // the -shm file afresh). Every answer must show the invariant total.
  t0 = std::chrono::steady_clock::now();
  ok("sqlite3 \"$M/db\" < schema.sql");
  const std::string reader = R"SH(
set -o pipefail
M=$1; T=$2
( n=0
  while [ ! -e "$T/stop" ]; do
    echo "SELECT 'sum', sum(bal), count(*) FROM acct;"
    n=$((n+1)); [ $((n % 50)) = 0 ] && echo "PRAGMA quick_check;"
    sleep 0.003
  done | sqlite3 -bail -cmd ".timeout 20000" "$M/db" > "$T/reader1.out" 2>&1; echo "reader1 exit $?" >> "$T/reader1.out" ) &
( while [ ! -e "$T/stop" ]; do
    sqlite3 -bail -cmd ".timeout 20000" "$M/db" "SELECT 'cnt', count(*) >= 0, (SELECT sum(bal) FROM acct) FROM log;" || echo "reader2 failed $?"
    sleep 0.02
  done > "$T/reader2.out" 2>&1 ) &
wait
)SH";
  write_file(work_ / "reader.sh", reader);
  Background readers({"/bin/bash", work_ / "reader.sh", v_.mnt(), work_.path()}, work_ / "readers.log");
  std::string werr;
  try {
    ok("sqlite3 \"$M/db\" < body.sql >/dev/null");
  } catch (const std::exception& e) {
    werr = e.what();
  }
  write_file(work_ / "stop", "");
  int rrc = readers.wait(std::chrono::seconds(60));
  ASSERT_TRUE(werr.empty()) << werr;
  ASSERT_EQ(rrc, 0) << read_file(work_ / "readers.log");
  timed("sqlite3 on the mount (with readers)", t0);

  // Reader answers: every line is the invariant, quick_check says ok, nothing else.
  size_t answers = 0;
  for (const char* f : {"reader1.out", "reader2.out"}) {
    std::istringstream in(read_file(work_ / f));
    std::string line;
    while (std::getline(in, line)) {
      if (line == "sum|100000|100" || line == "cnt|1|100000" || line == "ok" || line == "reader1 exit 0") {
        ++answers;
        continue;
      }
      ADD_FAILURE() << f << ": unexpected reader output: " << line;
    }
  }
  EXPECT_GT(answers, 50u) << "the readers hardly ran";
  std::cout << "reader answers: " << answers << "\n";

  auto verify = [&](const char* when) {
    EXPECT_EQ(ok("sqlite3 \"$M/db\" 'PRAGMA integrity_check;'"), "ok\n") << when;
    EXPECT_EQ(ok("sqlite3 \"$M/db\" 'SELECT sum(bal), count(*) FROM acct;'"), "100000|100\n") << when;
    EXPECT_EQ(ok("sqlite3 \"$M/db\" .dump | sha256sum"), want) << when << ": .dump differs from the plain directory's";
  };
  verify("after the workload");
  ASSERT_NO_FATAL_FAILURE(remount());
  verify("after remount");
  // Still writable after the remount, and still equal to the reference doing the same.
  const std::string more = ".bail on\nBEGIN;\nUPDATE acct SET bal=bal+1 WHERE id<50;\nUPDATE acct SET bal=bal-1 WHERE id>=50;\n"
                           "DELETE FROM log WHERE id%5=0;\nCOMMIT;\nVACUUM;\n";
  write_file(work_ / "more.sql", more);
  ok("sqlite3 \"$P/db\" < more.sql; sqlite3 \"$M/db\" < more.sql");
  EXPECT_EQ(ok("sqlite3 \"$M/db\" 'PRAGMA integrity_check;'"), "ok\n");
  EXPECT_EQ(ok("sqlite3 \"$M/db\" .dump | sha256sum"), ok("sqlite3 \"$P/db\" .dump | sha256sum"));
  EXPECT_EQ(v_.unmount(), 0) << v_.log();
}

// ---------------------------------------------------------------- git

TEST_F(AppsTest, GitCommitFsckGcClone) {
  if (!have("git")) GTEST_SKIP() << "git not installed (Debian package git)";
  auto t0 = std::chrono::steady_clock::now();
  // The same three commits on the mount and on the plain directory: fixed dates and
  // identities make the commit ids equal if and only if every byte and mode went in equal.
  const std::string build = R"SH(
r=$1
git init -q -b main "$r"
cp -a /usr/include/linux "$r/linux"
cd "$r"
git add -A && git commit -q -m "import linux headers"
for f in $(ls linux/*.h | head -60); do printf '/* edited */\n' >> "$f"; done
rm -f $(ls linux/*.h | tail -15)
mkdir -p extra && for i in $(seq 1 30); do seq 1 $((i * 50)) > extra/f$i; done
chmod 0755 extra/f1 extra/f2
git add -A && git commit -q -m "edit, delete, add"
git mv linux/netfilter linux/netfilter-moved
git commit -q -m "move a directory"
git rev-parse HEAD
)SH";
  write_file(work_ / "build.sh", build);
  const std::string head_plain = ok("bash build.sh \"$P/repo\"");
  const std::string head = ok("bash build.sh \"$M/repo\"");
  EXPECT_EQ(head, head_plain) << "commit ids differ from the same commits on a plain directory";
  timed("git: build repositories", t0);

  t0 = std::chrono::steady_clock::now();
  ok("cd \"$M/repo\" && git fsck --full --strict --no-progress");
  ok("cd \"$M/repo\" && git gc --quiet --prune=now && git fsck --full --strict --no-progress");
  EXPECT_EQ(ok("cd \"$M/repo\" && git count-objects -v | grep '^count:'"), "count: 0\n") << "gc left loose objects";
  // Clones: local (hard links into the mount), no-hardlinks within the mount, and out to the
  // plain directory; then back from the plain directory into the mount.
  ok("git clone -q \"$M/repo\" \"$M/clone-local\"");
  ok("git clone -q --no-hardlinks \"$M/repo\" \"$M/clone-copy\"");
  ok("git clone -q \"$M/repo\" \"$P/clone-out\"");
  ok("git clone -q --no-local \"$P/repo\" \"$M/clone-in\"");
  timed("git: fsck, gc, clones", t0);

  auto verify = [&](const char* when) {
    SCOPED_TRACE(when);
    for (const char* c : {"repo", "clone-local", "clone-copy", "clone-in"}) {
      std::string dir = std::string("\"$M/") + c + "\"";
      EXPECT_EQ(ok("cd " + dir + " && git rev-parse HEAD"), head) << c;
      ok("cd " + dir + " && git fsck --full --strict --no-progress");
      EXPECT_EQ(ok("cd " + dir + " && git status --porcelain"), "") << c << ": work tree not clean";
      ok("diff -r --no-dereference -x .git " + dir + " \"$P/clone-out\"");
    }
    ok("diff -r --no-dereference -x .git \"$M/repo\" \"$P/repo\"");
  };
  t0 = std::chrono::steady_clock::now();
  verify("after the clones");
  ASSERT_NO_FATAL_FAILURE(remount());
  verify("after remount");
  // And the repository still takes commits and repacks after the remount.
  ok("cd \"$M/repo\" && echo more >> extra/f3 && git commit -q -am more && git gc --quiet --aggressive --prune=now && "
     "git fsck --full --strict --no-progress");
  ok("cd \"$M/clone-local\" && git pull -q --ff-only && git fsck --full --no-progress && git status --porcelain | "
     "(! grep .)");
  timed("git: verify, remount, verify", t0);
  EXPECT_EQ(v_.unmount(), 0) << v_.log();
}

// ---------------------------------------------------------------- tar

TEST_F(AppsTest, TarExtractCompare) {
  if (!have("tar")) GTEST_SKIP() << "tar not installed";
  auto t0 = std::chrono::steady_clock::now();
  // A tarball of the first 4500 entries of /usr/include (the names sort the same on every
  // machine; the exact set does not matter, its size does) plus the fixture tree, POSIX
  // format so times keep their nanoseconds, with xattrs and sparse files.
  write_file(work_ / "fixture.sh", kFixtureScript);
  ok("bash fixture.sh \"$T/fixture\"");
  const std::string n = ok(R"SH(
cd / && find usr/include | LC_ALL=C sort | sed -n 1,4500p > "$T/list"
tar --format=posix --no-recursion -cf "$T/inc.tar" -T "$T/list"
tar --format=posix --xattrs --xattrs-include='user.*' -S -C "$T" -cf "$T/fixture.tar" fixture
tar -tf "$T/inc.tar" | wc -l
)SH");
  ASSERT_GE(std::stoi(n), 3000) << "tarball too small";
  // tar --compare needs the original owners' names; we are root, so -p and --same-owner hold.
  auto extract_and_compare = [&](const std::string& dest) {
    ok("mkdir -p " + dest + " && tar -C " + dest + " -xpf \"$T/inc.tar\"");
    ok("tar -C " + dest + " --xattrs --xattrs-include='user.*' -xpSf \"$T/fixture.tar\"");
  };
  extract_and_compare("\"$P/x\"");
  t0 = std::chrono::steady_clock::now();
  extract_and_compare("\"$M/x\"");
  timed("tar: extract into the mount", t0);

  auto verify = [&](const char* when) {
    SCOPED_TRACE(when);
    // --compare checks size, content, mode, owner, mtime, link targets, device numbers.
    EXPECT_EQ(ok("tar -C \"$M/x\" -df \"$T/inc.tar\""), "");
    EXPECT_EQ(ok("tar -C \"$M/x\" --xattrs --xattrs-include='user.*' -dSf \"$T/fixture.tar\""), "");
    ok(kDiffTrees + " \"$P/x\" \"$M/x\"");
    // Hard links in the fixture share an inode on the mount too.
    EXPECT_EQ(ok("stat -c %i \"$M/x/fixture/plain.txt\" \"$M/x/fixture/hardlink.txt\" \"$M/x/fixture/sub/hardlink-in-sub.txt\" "
                 "| sort -u | wc -l"),
              "1\n");
    const std::string st = "stat -c '%n %F %a %h %s %t:%T %.9Y' setuid plain.txt old future sparse.bin chardev fifo symlink";
    EXPECT_EQ(ok("cd \"$M/x/fixture\" && " + st), ok("cd \"$P/x/fixture\" && " + st));
  };
  t0 = std::chrono::steady_clock::now();
  verify("after extraction");
  ASSERT_NO_FATAL_FAILURE(remount());
  verify("after remount");
  // A second extraction over the existing tree (tar unlinks and replaces) still compares.
  ok("tar -C \"$M/x\" -xpf \"$T/inc.tar\" && tar -C \"$M/x\" -df \"$T/inc.tar\"");
  timed("tar: compare, remount, compare", t0);
  EXPECT_EQ(v_.unmount(), 0) << v_.log();
}

// ---------------------------------------------------------------- rsync

TEST_F(AppsTest, RsyncArchiveIntoMount) {
  if (!have("rsync")) GTEST_SKIP() << "rsync not installed (Debian package rsync)";
  auto t0 = std::chrono::steady_clock::now();
  write_file(work_ / "fixture.sh", kFixtureScript);
  ok("bash fixture.sh \"$P/src\" && cp -a /usr/include/linux \"$P/src/linux\" && touch -d '2020-05-06' \"$P/src\"");
  // -a (times, modes, owners, symlinks, devices, specials) -H (hard links) -X (xattrs).
  // Default mode: rsync writes each file to a temp name in the destination and renames it.
  const std::string flags = "-aHX --numeric-ids";
  ok("rsync " + flags + " \"$P/src/\" \"$M/dst/\"");
  timed("rsync: initial copy", t0);

  auto verify = [&](const char* when) {
    SCOPED_TRACE(when);
    ok(kDiffTrees + " \"$P/src\" \"$M/dst\"");
    EXPECT_EQ(ok("rsync " + flags + " --itemize-changes --dry-run \"$P/src/\" \"$M/dst/\""), "")
        << "rsync still sees differences (times, modes, links or xattrs did not survive)";
    EXPECT_EQ(ok("rsync " + flags + " --checksum --itemize-changes --dry-run \"$P/src/\" \"$M/dst/\""), "")
        << "rsync --checksum sees content differences";
    EXPECT_EQ(ok("cd \"$M/dst\" && find . -name '.*.[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]' | head"), "") << "rsync temp files left behind";
  };
  t0 = std::chrono::steady_clock::now();
  verify("after the first copy");

  // Change the source: appends, in-place edits, mode and time changes, deletions, new
  // files; then a delta transfer (--no-whole-file: rsync reads the old file on the mount as
  // the basis and writes the new one to a temp file there) with --delete.
  ok(R"SH(
cd "$P/src"
for f in $(ls linux/*.h | head -40); do printf '/* appended */\n' >> "$f"; done
python3 - <<'PY'
import os
with open('random.bin', 'r+b') as f:
    for off in (0, 4095, 1000000, 3145000):
        f.seek(off); f.write(b'EDITED-IN-PLACE')
PY
# rsync's quick check compares whole seconds: give every edited file a distinct time.
touch -d '2012-12-12 12:12:12' random.bin
chmod 0640 linux/kernel.h
touch -d '2011-11-11 11:11:11.111' linux/types.h
rm -f $(ls linux/*.h | tail -20)
rm -rf sub/deeper/deepest
mkdir -p new/dir && seq 1 100000 > new/dir/numbers && ln new/dir/numbers new/link-to-numbers
)SH");
  ok("rsync " + flags + " --delete --no-whole-file \"$P/src/\" \"$M/dst/\"");
  // Also once in place (no temp files), which rewrites blocks of existing files.
  ok("cd \"$P/src\" && printf 'x' | dd of=random.bin bs=1 seek=2000000 conv=notrunc status=none && "
     "touch -d '2013-01-01 00:00:00' random.bin");
  ok("rsync " + flags + " --inplace --no-whole-file \"$P/src/\" \"$M/dst/\"");
  verify("after the delta transfers");
  ASSERT_NO_FATAL_FAILURE(remount());
  verify("after remount");
  timed("rsync: changes, verify, remount, verify", t0);
  EXPECT_EQ(v_.unmount(), 0) << v_.log();
}

}  // namespace
}  // namespace kmsfs::testing
