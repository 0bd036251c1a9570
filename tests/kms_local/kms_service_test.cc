// The KMS operations through KmsService, without HTTP: shapes, key states, identifiers,
// rotation, paging and the state file.
#include "kms_service.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "base/file_io.h"
#include "base64.h"
#include "state_file.h"
#include "temp_dir.h"

namespace kmsfs::kms_local {
namespace {

using nlohmann::json;
constexpr const char* kRegion = "eu-west-1";
constexpr const char* kAccount = "111122223333";
const std::string kArnPrefix = "arn:aws:kms:eu-west-1:111122223333:";

class KmsServiceTest : public ::testing::Test {
 protected:
  json ok(std::string_view op, const json& body = json::object()) {
    auto r = svc_->call(op, body.dump());
    EXPECT_TRUE(r.ok()) << op << ": " << (r.ok() ? "" : r.error().type + ": " + r.error().message);
    return r.ok() ? r.value() : json();
  }
  ApiError fails(std::string_view op, const json& body) {
    auto r = svc_->call(op, body.dump());
    EXPECT_FALSE(r.ok()) << op << " succeeded: " << (r.ok() ? r.value().dump() : "");
    return r.ok() ? ApiError{} : r.error();
  }
  std::string new_key() { return ok("CreateKey")["KeyMetadata"]["KeyId"]; }
  std::string encrypt(const std::string& key, const json& ctx = json::object()) {
    return ok("Encrypt", {{"KeyId", key}, {"Plaintext", "aGVsbG8="}, {"EncryptionContext", ctx}})
        ["CiphertextBlob"];
  }

  std::unique_ptr<KmsService> svc_ =
      std::make_unique<KmsService>(KeyStore(kRegion, kAccount), "");
};

TEST_F(KmsServiceTest, CreateKeyAnswersKeyMetadataWithTheArn) {
  json m = ok("CreateKey", {{"Description", "d"}})["KeyMetadata"];
  std::string id = m["KeyId"];
  EXPECT_EQ(m["Arn"], kArnPrefix + "key/" + id);
  EXPECT_EQ(m["AWSAccountId"], kAccount);
  EXPECT_EQ(m["KeyState"], "Enabled");
  EXPECT_EQ(m["Enabled"], true);
  EXPECT_EQ(m["Description"], "d");
  EXPECT_EQ(m["KeySpec"], "SYMMETRIC_DEFAULT");
  EXPECT_EQ(m["CurrentKeyMaterialId"].get<std::string>().size(), 64u);
  EXPECT_EQ(fails("CreateKey", {{"KeySpec", "RSA_2048"}}).type, "UnsupportedOperationException");
}

TEST_F(KmsServiceTest, EncryptDecryptWithAndWithoutKeyId) {
  std::string id = new_key();
  std::string blob = encrypt(id, {{"k", "v"}});
  json out = ok("Decrypt", {{"CiphertextBlob", blob}, {"EncryptionContext", {{"k", "v"}}}});
  EXPECT_EQ(out["Plaintext"], "aGVsbG8=");
  EXPECT_EQ(out["KeyId"], kArnPrefix + "key/" + id);
  EXPECT_EQ(out["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
  EXPECT_EQ(out["KeyMaterialId"].get<std::string>().size(), 64u);
  ok("Decrypt", {{"CiphertextBlob", blob}, {"EncryptionContext", {{"k", "v"}}}, {"KeyId", id}});

  std::string other = new_key();
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", blob},
                              {"EncryptionContext", {{"k", "v"}}},
                              {"KeyId", other}})
                .type,
            "IncorrectKeyException");
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", blob}}).type, "InvalidCiphertextException");
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", blob}, {"EncryptionContext", {{"k", "V"}}}}).type,
            "InvalidCiphertextException");
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", "AAAA"}}).type, "InvalidCiphertextException");
}

TEST_F(KmsServiceTest, ContextsThatConcatenateAlikeDoNotOpenEachOther) {
  std::string id = new_key();
  std::string ab_c = encrypt(id, {{"ab", "c"}}), a_bc = encrypt(id, {{"a", "bc"}});
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", ab_c}, {"EncryptionContext", {{"a", "bc"}}}}).type,
            "InvalidCiphertextException");
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", a_bc}, {"EncryptionContext", {{"ab", "c"}}}}).type,
            "InvalidCiphertextException");
  ok("Decrypt", {{"CiphertextBlob", ab_c}, {"EncryptionContext", {{"ab", "c"}}}});
}

TEST_F(KmsServiceTest, KeyIdForms) {
  std::string id = new_key();
  ok("CreateAlias", {{"AliasName", "alias/app"}, {"TargetKeyId", id}});
  for (std::string form : {id, kArnPrefix + "key/" + id, std::string("alias/app"),
                           kArnPrefix + "alias/app"}) {
    EXPECT_EQ(ok("DescribeKey", {{"KeyId", form}})["KeyMetadata"]["KeyId"], id) << form;
    encrypt(form);
  }
  // Lifecycle operations take key ids and key ARNs only.
  EXPECT_EQ(fails("EnableKey", {{"KeyId", "alias/app"}}).type, "NotFoundException");
  EXPECT_EQ(fails("DescribeKey", {{"KeyId", "alias/nope"}}).message,
            "Alias " + kArnPrefix + "alias/nope is not found.");
  EXPECT_EQ(fails("DescribeKey", {{"KeyId", "arn:aws:kms:us-east-1:111122223333:key/" + id}}).message,
            "Invalid arn us-east-1");
  EXPECT_EQ(fails("DescribeKey", {{"KeyId", "0b6d5c3e-1f2a-4b5c-8d9e-0f1a2b3c4d5e"}}).type,
            "NotFoundException");
}

TEST_F(KmsServiceTest, Aliases) {
  std::string a = new_key(), b = new_key();
  ok("CreateAlias", {{"AliasName", "alias/x"}, {"TargetKeyId", a}});
  EXPECT_EQ(fails("CreateAlias", {{"AliasName", "alias/x"}, {"TargetKeyId", b}}).type,
            "AlreadyExistsException");
  EXPECT_EQ(fails("CreateAlias", {{"AliasName", "x"}, {"TargetKeyId", b}}).type,
            "ValidationException");
  EXPECT_EQ(fails("CreateAlias", {{"AliasName", "alias/aws/x"}, {"TargetKeyId", b}}).type,
            "InvalidAliasNameException");
  EXPECT_EQ(fails("CreateAlias", {{"AliasName", "alias/a b"}, {"TargetKeyId", b}}).type,
            "ValidationException");
  ok("UpdateAlias", {{"AliasName", "alias/x"}, {"TargetKeyId", b}});
  EXPECT_EQ(ok("DescribeKey", {{"KeyId", "alias/x"}})["KeyMetadata"]["KeyId"], b);
  json list = ok("ListAliases", {{"KeyId", b}})["Aliases"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["AliasArn"], kArnPrefix + "alias/x");
  EXPECT_EQ(list[0]["TargetKeyId"], b);
  EXPECT_TRUE(ok("ListAliases", {{"KeyId", a}})["Aliases"].empty());
  ok("DeleteAlias", {{"AliasName", "alias/x"}});
  EXPECT_EQ(fails("DeleteAlias", {{"AliasName", "alias/x"}}).type, "NotFoundException");
}

TEST_F(KmsServiceTest, DisabledAndPendingDeletionKeys) {
  std::string id = new_key();
  std::string blob = encrypt(id);
  ok("DisableKey", {{"KeyId", id}});
  EXPECT_EQ(ok("DescribeKey", {{"KeyId", id}})["KeyMetadata"]["KeyState"], "Disabled");
  ApiError e = fails("Encrypt", {{"KeyId", id}, {"Plaintext", "aGk="}});
  EXPECT_EQ(e.type, "DisabledException");
  EXPECT_EQ(e.message, kArnPrefix + "key/" + id + " is disabled.");
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", blob}}).type, "DisabledException");
  ok("EnableKey", {{"KeyId", id}});
  ok("Decrypt", {{"CiphertextBlob", blob}});

  json s = ok("ScheduleKeyDeletion", {{"KeyId", id}, {"PendingWindowInDays", 7}});
  EXPECT_EQ(s["KeyState"], "PendingDeletion");
  EXPECT_EQ(s["PendingWindowInDays"], 7);
  EXPECT_EQ(s["KeyId"], kArnPrefix + "key/" + id);
  for (const char* op : {"Encrypt", "GenerateDataKey"}) {
    EXPECT_EQ(fails(op, {{"KeyId", id}, {"Plaintext", "aGk="}, {"NumberOfBytes", 32}}).type,
              "KMSInvalidStateException")
        << op;
  }
  EXPECT_EQ(fails("Decrypt", {{"CiphertextBlob", blob}}).type, "KMSInvalidStateException");
  EXPECT_EQ(fails("EnableKey", {{"KeyId", id}}).type, "KMSInvalidStateException");
  EXPECT_EQ(fails("ScheduleKeyDeletion", {{"KeyId", id}}).type, "KMSInvalidStateException");
  EXPECT_EQ(fails("ScheduleKeyDeletion", {{"KeyId", new_key()}, {"PendingWindowInDays", 3}}).type,
            "ValidationException");
  json m = ok("DescribeKey", {{"KeyId", id}})["KeyMetadata"];
  EXPECT_EQ(m["KeyState"], "PendingDeletion");
  EXPECT_TRUE(m.contains("DeletionDate"));
  ok("CancelKeyDeletion", {{"KeyId", id}});
  EXPECT_EQ(ok("DescribeKey", {{"KeyId", id}})["KeyMetadata"]["KeyState"], "Disabled");
  EXPECT_EQ(fails("CancelKeyDeletion", {{"KeyId", id}}).type, "KMSInvalidStateException");
}

TEST_F(KmsServiceTest, GenerateDataKeyShapes) {
  std::string id = new_key();
  json k = ok("GenerateDataKey", {{"KeyId", id}, {"KeySpec", "AES_256"}});
  auto plain = base64_decode(k["Plaintext"].get<std::string>());
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->size(), 32u);
  EXPECT_EQ(ok("Decrypt", {{"CiphertextBlob", k["CiphertextBlob"]}})["Plaintext"], k["Plaintext"]);
  EXPECT_EQ(base64_decode(ok("GenerateDataKey", {{"KeyId", id}, {"KeySpec", "AES_128"}})["Plaintext"]
                              .get<std::string>())
                ->size(),
            16u);
  EXPECT_EQ(base64_decode(ok("GenerateDataKey", {{"KeyId", id}, {"NumberOfBytes", 7}})["Plaintext"]
                              .get<std::string>())
                ->size(),
            7u);
  json w = ok("GenerateDataKeyWithoutPlaintext", {{"KeyId", id}, {"KeySpec", "AES_256"}});
  EXPECT_FALSE(w.contains("Plaintext"));
  EXPECT_EQ(base64_decode(ok("Decrypt", {{"CiphertextBlob", w["CiphertextBlob"]}})["Plaintext"]
                              .get<std::string>())
                ->size(),
            32u);
  EXPECT_EQ(fails("GenerateDataKey", {{"KeyId", id}}).type, "ValidationException");
  EXPECT_EQ(fails("GenerateDataKey", {{"KeyId", id}, {"KeySpec", "AES_256"}, {"NumberOfBytes", 32}})
                .type,
            "ValidationException");
  EXPECT_EQ(fails("GenerateDataKey", {{"KeyId", id}, {"NumberOfBytes", 1025}}).type,
            "ValidationException");
  EXPECT_EQ(fails("GenerateDataKey", {{"KeyId", id}, {"KeySpec", "AES_512"}}).type,
            "ValidationException");
}

TEST_F(KmsServiceTest, ReEncryptMovesBetweenKeysAndContexts) {
  std::string a = new_key(), b = new_key();
  std::string blob = encrypt(a, {{"c", "1"}});
  json r = ok("ReEncrypt", {{"CiphertextBlob", blob},
                            {"SourceEncryptionContext", {{"c", "1"}}},
                            {"DestinationKeyId", b},
                            {"DestinationEncryptionContext", {{"c", "2"}}}});
  EXPECT_EQ(r["SourceKeyId"], kArnPrefix + "key/" + a);
  EXPECT_EQ(r["KeyId"], kArnPrefix + "key/" + b);
  json d = ok("Decrypt", {{"CiphertextBlob", r["CiphertextBlob"]}, {"EncryptionContext", {{"c", "2"}}}});
  EXPECT_EQ(d["Plaintext"], "aGVsbG8=");
  EXPECT_EQ(d["KeyId"], kArnPrefix + "key/" + b);
  EXPECT_EQ(fails("ReEncrypt", {{"CiphertextBlob", blob},
                                {"SourceEncryptionContext", {{"c", "1"}}},
                                {"SourceKeyId", b},
                                {"DestinationKeyId", b}})
                .type,
            "IncorrectKeyException");
  EXPECT_EQ(fails("ReEncrypt", {{"CiphertextBlob", blob}, {"DestinationKeyId", b}}).type,
            "InvalidCiphertextException");
}

TEST_F(KmsServiceTest, RotationKeepsOldCiphertextsDecrypting) {
  std::string id = new_key();
  std::string before = encrypt(id);
  std::string first_material = ok("DescribeKey", {{"KeyId", id}})["KeyMetadata"]["CurrentKeyMaterialId"];
  EXPECT_TRUE(ok("ListKeyRotations", {{"KeyId", id}})["Rotations"].empty());
  ok("RotateKeyOnDemand", {{"KeyId", id}});
  ok("RotateKeyOnDemand", {{"KeyId", id}});
  std::string after = encrypt(id);
  json old = ok("Decrypt", {{"CiphertextBlob", before}});
  EXPECT_EQ(old["KeyMaterialId"], first_material);
  json fresh = ok("Decrypt", {{"CiphertextBlob", after}});
  EXPECT_NE(fresh["KeyMaterialId"], first_material);
  EXPECT_EQ(fresh["KeyMaterialId"],
            ok("DescribeKey", {{"KeyId", id}})["KeyMetadata"]["CurrentKeyMaterialId"]);

  json rotations = ok("ListKeyRotations", {{"KeyId", id}})["Rotations"];
  ASSERT_EQ(rotations.size(), 2u);
  EXPECT_EQ(rotations[0]["RotationType"], "ON_DEMAND");
  EXPECT_EQ(rotations[0]["KeyMaterialState"], "NON_CURRENT");
  EXPECT_EQ(rotations[1]["KeyMaterialState"], "CURRENT");
  EXPECT_EQ(rotations[1]["KeyMaterialId"], fresh["KeyMaterialId"]);
  json all = ok("ListKeyRotations", {{"KeyId", id}, {"IncludeKeyMaterial", "ALL_KEY_MATERIAL"}});
  ASSERT_EQ(all["Rotations"].size(), 3u);
  EXPECT_EQ(all["Rotations"][0]["KeyMaterialId"], first_material);
  EXPECT_FALSE(all["Rotations"][0].contains("RotationType"));
  json page = ok("ListKeyRotations", {{"KeyId", id}, {"Limit", 1}});
  EXPECT_EQ(page["Truncated"], true);
  json rest = ok("ListKeyRotations", {{"KeyId", id}, {"Marker", page["NextMarker"]}});
  EXPECT_EQ(rest["Rotations"].size(), 1u);
  EXPECT_EQ(rest["Truncated"], false);

  ok("DisableKey", {{"KeyId", id}});
  EXPECT_EQ(fails("RotateKeyOnDemand", {{"KeyId", id}}).type, "DisabledException");
}

TEST_F(KmsServiceTest, AutomaticRotationSettings) {
  std::string id = new_key();
  EXPECT_EQ(ok("GetKeyRotationStatus", {{"KeyId", id}})["KeyRotationEnabled"], false);
  ok("EnableKeyRotation", {{"KeyId", id}, {"RotationPeriodInDays", 90}});
  json s = ok("GetKeyRotationStatus", {{"KeyId", id}});
  EXPECT_EQ(s["KeyRotationEnabled"], true);
  EXPECT_EQ(s["RotationPeriodInDays"], 90);
  EXPECT_EQ(s["KeyId"], kArnPrefix + "key/" + id);
  EXPECT_EQ(fails("EnableKeyRotation", {{"KeyId", id}, {"RotationPeriodInDays", 30}}).type,
            "ValidationException");
  ok("DisableKeyRotation", {{"KeyId", id}});
  EXPECT_EQ(ok("GetKeyRotationStatus", {{"KeyId", id}})["KeyRotationEnabled"], false);
}

TEST_F(KmsServiceTest, ListKeysPages) {
  std::set<std::string> made;
  for (int i = 0; i < 5; ++i) made.insert(new_key());
  std::set<std::string> seen;
  json req = {{"Limit", 2}};
  for (int pages = 1;; ++pages) {
    json page = ok("ListKeys", req);
    for (const json& k : page["Keys"]) {
      seen.insert(k["KeyId"].get<std::string>());
      EXPECT_EQ(k["KeyArn"], kArnPrefix + "key/" + k["KeyId"].get<std::string>());
    }
    if (!page["Truncated"].get<bool>()) {
      EXPECT_EQ(pages, 3);
      break;
    }
    req["Marker"] = page["NextMarker"];
  }
  EXPECT_EQ(seen, made);
}

TEST_F(KmsServiceTest, MalformedRequests) {
  EXPECT_EQ(fails("Frobnicate", json::object()).type, "UnknownOperationException");
  auto not_json = svc_->call("ListKeys", "{");
  ASSERT_FALSE(not_json.ok());
  EXPECT_EQ(not_json.error().type, "SerializationException");
  EXPECT_EQ(fails("DescribeKey", {{"KeyId", 5}}).type, "SerializationException");
  ApiError missing = fails("DescribeKey", json::object());
  EXPECT_EQ(missing.type, "ValidationException");
  EXPECT_NE(missing.message.find("'keyId'"), std::string::npos) << missing.message;
  std::string id = new_key();
  EXPECT_EQ(fails("Encrypt", {{"KeyId", id}, {"Plaintext", std::string(5464, 'A')}}).type,
            "ValidationException");  // 4098 bytes
  EXPECT_EQ(fails("Encrypt", {{"KeyId", id}, {"Plaintext", "not base64"}}).type,
            "SerializationException");
  EXPECT_EQ(fails("Encrypt", {{"KeyId", id}, {"Plaintext", "aGk="}, {"EncryptionContext", {{"a", 1}}}})
                .type,
            "SerializationException");
  EXPECT_EQ(fails("Encrypt", {{"KeyId", id}, {"Plaintext", "aGk="},
                              {"EncryptionAlgorithm", "RSAES_OAEP_SHA_256"}})
                .type,
            "InvalidKeyUsageException");
}

TEST(KmsStateFile, SurvivesARestartWithMode0600) {
  testing::TempDir dir("kms-local-state");
  const std::string path = dir / "state.json";
  std::string id, blob;
  {
    KmsService svc(KeyStore(kRegion, kAccount), path);
    auto created = svc.call("CreateKey", "{}");
    ASSERT_TRUE(created.ok());
    id = created.value()["KeyMetadata"]["KeyId"];
    ASSERT_TRUE(svc.call("CreateAlias", json{{"AliasName", "alias/k"}, {"TargetKeyId", id}}.dump()).ok());
    auto enc = svc.call("Encrypt", json{{"KeyId", "alias/k"}, {"Plaintext", "aGk="}}.dump());
    ASSERT_TRUE(enc.ok());
    blob = enc.value()["CiphertextBlob"];
    ASSERT_TRUE(svc.call("RotateKeyOnDemand", json{{"KeyId", id}}.dump()).ok());
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto store = load_state(path, kRegion, kAccount);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ(store->find(id)->materials.size(), 2u);
  KmsService again(std::move(store).value(), path);
  auto dec = again.call("Decrypt", json{{"CiphertextBlob", blob}}.dump());
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec.value()["Plaintext"], "aGk=");
  EXPECT_TRUE(again.call("DescribeKey", json{{"KeyId", "alias/k"}}.dump()).ok());

  EXPECT_EQ(load_state(path, "us-east-1", kAccount).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(load_state(dir / "missing.json", kRegion, kAccount).status().code(), Code::kNotFound);
  ASSERT_TRUE(write_file_atomic(dir / "bad.json",
                                as_bytes(R"({"format":"kms-local-state","version":1})"), 0600)
                  .ok());
  EXPECT_EQ(load_state(dir / "bad.json", kRegion, kAccount).status().code(), Code::kCorrupt);
  ASSERT_TRUE(write_file_atomic(dir / "v9.json",
                                as_bytes(R"({"format":"kms-local-state","version":9})"), 0600)
                  .ok());
  EXPECT_EQ(load_state(dir / "v9.json", kRegion, kAccount).status().code(), Code::kUnsupported);
}

}  // namespace
}  // namespace kmsfs::kms_local
