// The trust anchor (docs/THREAT_MODEL.md, "The trust anchor"): whoever writes the backing
// directory chooses no key. A replaced kmsfs.conf, a keyring planted beside it, a header
// naming another key, an old config put back: each is refused, before any key is used,
// by every command that reads a vault. A second host learns a rotation only from a config
// a key it already trusts authenticates.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "cli_fixture.h"
#include "crypto/kdf.h"

namespace kmsfs::testing {
namespace {

using nlohmann::json;

class TrustTest : public CliTest {
 protected:
  void SetUp() override {
    make_plain_keyring("keyring", {"main", "next"});
    init_out_ = make_vault("vault", "keyring");
    // By plaintext path: reading it back by that path opens (and checks) the vault's config.
    write_file(p("f.plain"), "the real content");
    ASSERT_TRUE(Succeeded(kmsfs({"encrypt-file", "vault", "f.plain", "f.txt"})));
    fs_id_ = field(init_out_, "fs id: ");
    ASSERT_EQ(fs_id_.size(), 32u) << init_out_;
  }

  static std::string field(const std::string& text, const std::string& label) {
    size_t at = text.find(label);
    if (at == std::string::npos) return "";
    at += label.size();
    return text.substr(at, text.find('\n', at) - at);
  }

  // A second host: its own trust store, no KMSFS_KEYRING.
  SpawnOptions host_b() const {
    SpawnOptions o;
    o.env.emplace_back("KMSFS_TRUST_DIR", p("host-b-trust"));
    return o;
  }

  json show(SpawnOptions o = {}) {
    auto r = kmsfs({"trust", "show", "vault", "--json"}, o);
    EXPECT_TRUE(Succeeded(r));
    return json::parse(r.out, nullptr, false);
  }

  // What a storage writer can do: make a vault under keys of its own elsewhere (its own
  // trust store) and put that vault's kmsfs.conf in place of the real one.
  void replace_config_with_attackers(const std::string& attacker_keyring, bool keep_fs_id) {
    SpawnOptions evil;
    evil.env.emplace_back("KMSFS_TRUST_DIR", p("attacker-trust"));
    ::mkdir(p("evil").c_str(), 0755);
    ASSERT_TRUE(Succeeded(kmsfs({"init", "evil", "--keyring", attacker_keyring, "--key", "main"}, evil)));
    json conf = json::parse(read_file(p("evil/kmsfs.conf")));
    // The MAC is the attacker's own (under its own key); editing the fs id breaks it,
    // which is no obstacle to someone with their own tool: the refusal must come first.
    if (keep_fs_id) conf["fs_id"] = fs_id_;
    write_file(p("vault/kmsfs.conf"), conf.dump(2));
  }

  std::string init_out_;
  std::string fs_id_;
};

TEST_F(TrustTest, InitWritesAPrivateRecordOutsideTheBackingDirectory) {
  const std::string record = field(init_out_, "trust record: ");
  const std::string trust_dir = ::getenv("KMSFS_TRUST_DIR");
  EXPECT_EQ(record, trust_dir + "/" + fs_id_ + ".json");
  struct stat st {};
  ASSERT_EQ(::stat(record.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(trust_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
  json j = show();
  EXPECT_EQ(j["fs_id"], fs_id_);
  EXPECT_EQ(j["generation"], 1);
  EXPECT_EQ(j["keys"], json::parse(R"([{"provider":"keyring","key_id":"main"}])"));
  EXPECT_EQ(j["keyring"], p("keyring"));
  auto list = kmsfs({"trust", "list"});
  ASSERT_TRUE(Succeeded(list));
  EXPECT_TRUE(contains(list.out, fs_id_)) << list.out;
}

// The attack of issue 16 (2): a config under the attacker's key, its unsealed keyring planted
// inside the backing directory. Refused by the mount and by every offline command, with
// or without --keyring, and with the fs id forged too.
TEST_F(TrustTest, AReplacedConfigIsRefusedByEveryCommand) {
  ASSERT_TRUE(Succeeded(kmsfs({"keyring", "create", "vault/.planted", "--no-passphrase", "--key", "main"})));
  const std::string plain = p("new.txt");
  write_file(plain, "written after the swap");
  auto names = [&] {
    std::set<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(p("vault"))) out.insert(e.path().filename());
    out.erase("kmsfs.lock");  // taken by encrypt-file
    return out;
  };
  const std::set<std::string> before = names();
  for (bool keep_fs_id : {false, true}) {
    SCOPED_TRACE(keep_fs_id ? "fs id forged" : "attacker's own fs id");
    replace_config_with_attackers(p("vault/.planted"), keep_fs_id);
    // Its own fs id: no record here. The real fs id forged: the record's key, named
    // "main" like the attacker's, is the operator's (its keyring from the record or
    // --keyring, never the planted one), and the attacker's wrap does not open under it.
    const int code = keep_fs_id ? kCorrupt : kPermission;
    const auto needle = keep_fs_id ? "does not authenticate under keyring key main" : "is not trusted on this host";
    EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt"}), code, {needle}));
    EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt", "--keyring", "keyring"}), code, {needle}));
    EXPECT_TRUE(FailedWith(kmsfs({"encrypt-file", "--", "vault", plain, "new.txt"}), code, {needle}));
    EXPECT_TRUE(FailedWith(kmsfs({"ls", "vault"}), code, {needle}));
    auto fsck = kmsfs({"fsck", "vault"});
    EXPECT_EQ(fsck.exit_code, 8) << fsck.err << fsck.out;
    ::mkdir(p("mnt").c_str(), 0755);
    auto mount = kmsfs({"mount", "vault", "mnt", "--foreground"});
    EXPECT_EQ(mount.exit_code, code) << mount.err;
    EXPECT_TRUE(contains(mount.err, needle)) << mount.err;
    // Nothing was written under the attacker's key: the vault holds what it held.
    EXPECT_EQ(names(), before);
    std::filesystem::remove_all(p("evil"));
    std::filesystem::remove_all(p("attacker-trust"));
  }
  // A config under a KMS key: this keyring vault's record trusts no KMS key, so nothing is
  // asked of any KMS (the aws-kms variant of the attack worked even with --keyring).
  json conf = json::parse(read_file(p("vault/kmsfs.conf")));
  conf["fs_key"]["provider"] = "aws-kms";
  conf["fs_key"]["key_id"] = "arn:aws:kms:us-east-1:111122223333:key/attacker";
  conf["fs_key"]["version"] = 0;
  conf.erase("trust_keys");
  conf["generation"] = 7;  // "newer" than anything this host has seen
  conf["fs_id"] = fs_id_;
  write_file(p("vault/kmsfs.conf"), conf.dump(2));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt", "--keyring", "keyring"}), kPermission,
                         {"is under key aws-kms:arn:aws:kms:us-east-1:111122223333:key/attacker", "does not trust"}));
}

TEST_F(TrustTest, AKeyringInsideTheBackingDirectoryIsNeverUsed) {
  std::filesystem::copy_file(p("keyring"), p("vault/.keyring"));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt", "--keyring", "vault/.keyring"}), kPermission,
                         {"inside the vault's backing directory"}));
  SpawnOptions env;
  env.env.emplace_back("KMSFS_KEYRING", p("vault/.keyring"));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt"}, env), kPermission, {"inside the vault's backing directory"}));
  // A keyring others may write is refused like an ssh key.
  ASSERT_EQ(::chmod(p("keyring").c_str(), 0666), 0);
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt"}), kPermission, {"writable by group or others"}));
  ASSERT_EQ(::chmod(p("keyring").c_str(), 0600), 0);
  auto cat = kmsfs({"cat", "vault/f.txt"});  // the record's keyring
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "the real content");
}

TEST_F(TrustTest, AnUnsealedKeyringIsRefusedWhenAPassphraseWasGiven) {
  write_file(p("pw"), "correct horse battery staple\n");
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt", "--passphrase-file", "pw"}), kPermission,
                         {"is not sealed, but a passphrase source was given"}));
}

// Issue 16 (1): a slot naming a KMS key makes no request, on a keyring vault, whatever the
// environment says about AWS: a listening socket here sees no connection.
TEST_F(TrustTest, AHeaderNamingAnotherKeyIsEioAndMakesNoRequest) {
  const int lsn = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(lsn, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lsn, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lsn, 16), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(lsn, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));

  auto where = kmsfs({"encrypt-path", "vault", "f.txt"});
  ASSERT_TRUE(Succeeded(where));
  const std::string backing = p(where.out.substr(0, where.out.size() - 1));
  std::string file = read_file(backing);
  for (size_t slot : {1024u, 2560u}) {
    ASSERT_EQ(static_cast<uint8_t>(file[slot + 16]), 0x01);
    ASSERT_EQ(static_cast<uint8_t>(file[slot + 17]), 0x80);
    file[slot + 20] = 2;  // ProviderId::kAwsKms: "aws-kms:main"
    auto sum = sha256({reinterpret_cast<const uint8_t*>(file.data()) + slot, 1536 - 32});
    std::copy(sum.begin(), sum.end(), file.begin() + static_cast<long>(slot + 1536 - 32));
  }
  write_file(backing, file);
  SpawnOptions aws;
  aws.env = {{"AWS_ACCESS_KEY_ID", "AKIDTEST"}, {"AWS_SECRET_ACCESS_KEY", "secret"}, {"AWS_REGION", "eu-west-1"},
             {"AWS_ENDPOINT_URL_KMS", endpoint}, {"AWS_ENDPOINT_URL", endpoint}};
  write_file(p("vault/g.txt"), file);  // also by a backing path
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt"}, aws), kCorrupt,
                         {"aws-kms:main", "trusts no key of it", "no request was made"}));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "--backing-path", "vault/g.txt"}, aws), kCorrupt,
                         {"aws-kms:main", "trusts no key of it", "no request was made"}));
  auto verify = kmsfs({"inspect", "vault/f.txt", "--verify"}, aws);
  EXPECT_EQ(verify.exit_code, kCorrupt) << verify.err;
  auto fsck = kmsfs({"fsck", "vault"}, aws);
  EXPECT_EQ(fsck.exit_code, 4) << fsck.out << fsck.err;  // a damaged file, reported, not "corrected"
  EXPECT_TRUE(contains(fsck.out, "no request was made")) << fsck.out;
  sockaddr_in peer{};
  len = sizeof peer;
  EXPECT_LT(::accept(lsn, reinterpret_cast<sockaddr*>(&peer), &len), 0) << "kmsfs connected to the endpoint";
  EXPECT_EQ(errno, EAGAIN);
  ::close(lsn);
}

// An old kmsfs.conf put back (a rollback to before a rotation, to bring back a retired
// key as the key of new files) is refused; a deliberate restore says so.
TEST_F(TrustTest, AnOlderConfigIsARollbackAndRefused) {
  const std::string before = read_file(p("vault/kmsfs.conf"));
  ASSERT_TRUE(Succeeded(kmsfs({"rotate", "--offline", "vault", "--to", "next"})));
  EXPECT_EQ(show()["generation"], 2);
  write_file(p("vault/kmsfs.conf"), before);
  EXPECT_TRUE(FailedWith(kmsfs({"ls", "vault"}), kPermission, {"generation 1", "older than the 2", "rollback"}));
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt"}), kPermission, {"generation 1", "older than the 2", "rollback"}));
  EXPECT_TRUE(FailedWith(kmsfs({"trust", "accept", "vault", "--fs-id", fs_id_, "--key", "main", "--keyring", "keyring"}),
                         kPermission, {"--allow-older"}));
  ASSERT_TRUE(Succeeded(kmsfs({"trust", "accept", "vault", "--fs-id", fs_id_, "--key", "main", "--keyring", "keyring",
                               "--allow-older"})));
  EXPECT_EQ(show()["generation"], 1);
  auto cat = kmsfs({"cat", "vault/f.txt"});
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "the real content");
}

// A second host: nothing until the operator accepts the vault, naming its fs id and key;
// then it learns another host's rotation from the config, authenticated by the old key's
// endorsement, and reads files under the new key.
TEST_F(TrustTest, ASecondHostAcceptsOnceThenFollowsRotations) {
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "vault/f.txt", "--keyring", "keyring"}, host_b()), kPermission,
                         {"is not trusted on this host", "kmsfs trust accept", fs_id_}));
  std::string wrong = fs_id_;
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  EXPECT_TRUE(FailedWith(kmsfs({"trust", "accept", "vault", "--fs-id", wrong, "--key", "main", "--keyring", "keyring"},
                               host_b()),
                         kPermission, {"not the " + wrong}));
  EXPECT_TRUE(FailedWith(kmsfs({"trust", "accept", "vault", "--fs-id", fs_id_, "--key", "next", "--keyring", "keyring"},
                               host_b()),
                         kPermission, {"keyring:main"}));
  auto accept = kmsfs({"trust", "accept", "vault", "--fs-id", fs_id_, "--key", "main", "--keyring", "keyring"}, host_b());
  ASSERT_TRUE(Succeeded(accept));
  EXPECT_TRUE(contains(accept.out, "kmsfs: trusted")) << accept.out;
  auto cat = kmsfs({"cat", "vault/f.txt"}, host_b());  // the keyring from the record
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "the real content");

  // Host A rotates to "next" and writes a file under it.
  ASSERT_TRUE(Succeeded(kmsfs({"rotate", "--offline", "vault", "--to", "next"})));
  encrypt("vault", "after.txt", "under next");
  cat = kmsfs({"cat", "--backing-path", "vault/after.txt"}, host_b());
  ASSERT_TRUE(Succeeded(cat));
  EXPECT_EQ(cat.out, "under next");
  json b = show(host_b());
  EXPECT_EQ(b["generation"], 2);
  EXPECT_EQ(b["keys"].size(), 2u) << b.dump();

  // Host B withdraws trust from the old key: the config still opens (its own wrap is
  // under next), files still under main fail, and no later config brings main back.
  ASSERT_TRUE(Succeeded(kmsfs({"trust", "distrust", "vault", "main"}, host_b())));
  b = show(host_b());
  EXPECT_EQ(b["distrusted"].size(), 1u) << b.dump();
  ASSERT_TRUE(Succeeded(kmsfs({"cat", "--backing-path", "vault/after.txt"}, host_b())));
  ASSERT_TRUE(Succeeded(kmsfs({"rotate", "--offline", "vault", "--to", "main"})));  // on host A
  encrypt("vault", "back.txt", "under main again");
  EXPECT_TRUE(FailedWith(kmsfs({"cat", "--backing-path", "vault/back.txt"}, host_b()), kCorrupt, {"keyring:main", "does not trust"}));
  b = show(host_b());
  EXPECT_EQ(b["distrusted"], json::parse(R"([{"provider":"keyring","key_id":"main"}])")) << b.dump();
  EXPECT_EQ(b["generation"], 3);
}

}  // namespace
}  // namespace kmsfs::testing
