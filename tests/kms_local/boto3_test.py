#!/usr/bin/env python3
"""kms-local checked by an independent client: Debian's boto3/botocore (its own SigV4
signer, JSON protocol and retry code) against the running server.

Debian 12's botocore (1.29) predates RotateKeyOnDemand, ListKeyRotations and the
KeyMaterialId fields, so those are exercised with requests we build ourselves and sign
with botocore's SigV4Auth (raw_kms_call below): still botocore's signer, not ours.
"""
import datetime
import json
import os
import stat
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import warnings
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kms_local_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, KmsLocal  # noqa: E402

import botocore.exceptions  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

ARN_PREFIX = f"arn:aws:kms:{REGION}:111122223333:"


def error_code(exc):
    return exc.response["Error"]["Code"]


def raw_kms_call(server, op, body, access_key=ACCESS_KEY_ID, secret=SECRET_ACCESS_KEY):
    """A KMS request signed by botocore's SigV4Auth, sent with urllib: (status, JSON)."""
    req = AWSRequest(method="POST", url=server.endpoint + "/", data=json.dumps(body).encode(),
                     headers={"Content-Type": "application/x-amz-json-1.1",
                              "X-Amz-Target": "TrentService." + op})
    SigV4Auth(Credentials(access_key, secret), "kms", REGION).add_auth(req)
    p = req.prepare()
    http_req = urllib.request.Request(p.url, data=p.body, headers=dict(p.headers), method="POST")
    try:
        with urllib.request.urlopen(http_req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def setUpModule():
    # boto3 clients are never closed and dropped connections leave sockets to the garbage
    # collector: noise, not findings.
    warnings.simplefilter("ignore", ResourceWarning)


class KmsThroughBoto3(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = KmsLocal("--quiet").__enter__()
        cls.kms = cls.server.boto3_client("kms")

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def setUp(self):
        self.server.admin("DELETE", "/__admin/faults")

    def new_key(self, **kw):
        return self.kms.create_key(**kw)["KeyMetadata"]["KeyId"]

    def test_key_shapes_aliases_and_data_keys(self):
        meta = self.kms.create_key(Description="boto3")["KeyMetadata"]
        key_id, arn = meta["KeyId"], meta["Arn"]
        self.assertEqual(arn, ARN_PREFIX + "key/" + key_id)
        self.assertEqual(meta["KeyState"], "Enabled")
        self.assertIsInstance(meta["CreationDate"], datetime.datetime)
        self.kms.create_alias(AliasName="alias/boto3", TargetKeyId=key_id)
        aliases = self.kms.list_aliases(KeyId=key_id)["Aliases"]
        self.assertEqual([a["AliasArn"] for a in aliases], [ARN_PREFIX + "alias/boto3"])

        for form in (key_id, arn, "alias/boto3", ARN_PREFIX + "alias/boto3"):
            blob = self.kms.encrypt(KeyId=form, Plaintext=b"data")["CiphertextBlob"]
            out = self.kms.decrypt(CiphertextBlob=blob)
            self.assertEqual(out["Plaintext"], b"data")
            self.assertEqual(out["KeyId"], arn)

        dk = self.kms.generate_data_key(KeyId="alias/boto3", KeySpec="AES_256",
                                        EncryptionContext={"kmsfs:fs-id": "abc"})
        self.assertEqual(len(dk["Plaintext"]), 32)
        self.assertEqual(dk["KeyId"], arn)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], KeyId=arn,
                                          EncryptionContext={"kmsfs:fs-id": "abc"})["Plaintext"],
                         dk["Plaintext"])
        self.assertEqual(len(self.kms.generate_data_key(KeyId=key_id, NumberOfBytes=64)
                             ["Plaintext"]), 64)
        wp = self.kms.generate_data_key_without_plaintext(KeyId=key_id, KeySpec="AES_128")
        self.assertNotIn("Plaintext", wp)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=wp["CiphertextBlob"])["Plaintext"]), 16)

        other = self.new_key()
        moved = self.kms.re_encrypt(CiphertextBlob=dk["CiphertextBlob"],
                                    SourceEncryptionContext={"kmsfs:fs-id": "abc"},
                                    DestinationKeyId=other,
                                    DestinationEncryptionContext={"kmsfs:fs-id": "xyz"})
        self.assertEqual(moved["SourceKeyId"], arn)
        self.assertEqual(moved["KeyId"], ARN_PREFIX + "key/" + other)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], KeyId=key_id,
                             EncryptionContext={"kmsfs:fs-id": "xyz"})
        self.assertEqual(error_code(cm.exception), "IncorrectKeyException")

        self.kms.update_alias(AliasName="alias/boto3", TargetKeyId=other)
        self.assertEqual(self.kms.describe_key(KeyId="alias/boto3")["KeyMetadata"]["KeyId"], other)
        self.kms.delete_alias(AliasName="alias/boto3")
        with self.assertRaises(self.kms.exceptions.NotFoundException):
            self.kms.describe_key(KeyId="alias/boto3")

    def test_list_keys_paginates_with_botocores_paginator(self):
        made = {self.new_key() for _ in range(5)}
        pages = list(self.kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
        self.assertGreaterEqual(len(pages), 3)
        seen = {k["KeyId"] for p in pages for k in p["Keys"]}
        self.assertLessEqual(made, seen)

    def test_encryption_context_is_bound_unambiguously(self):
        key = self.new_key()
        ab_c = self.kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"ab": "c"})["CiphertextBlob"]
        a_bc = self.kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"a": "bc"})["CiphertextBlob"]
        for blob, wrong in ((ab_c, {"a": "bc"}), (a_bc, {"ab": "c"}), (ab_c, {}), (ab_c, {"AB": "c"})):
            with self.assertRaises(self.kms.exceptions.InvalidCiphertextException):
                self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=a_bc, EncryptionContext={"a": "bc"})["Plaintext"], b"x")

    def test_disabled_and_pending_deletion(self):
        key = self.new_key()
        blob = self.kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        self.kms.disable_key(KeyId=key)
        with self.assertRaises(self.kms.exceptions.DisabledException):
            self.kms.encrypt(KeyId=key, Plaintext=b"x")
        with self.assertRaises(self.kms.exceptions.DisabledException):
            self.kms.decrypt(CiphertextBlob=blob)
        self.kms.enable_key(KeyId=key)
        self.kms.decrypt(CiphertextBlob=blob)
        out = self.kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        self.assertEqual(out["KeyState"], "PendingDeletion")
        self.assertEqual(out["PendingWindowInDays"], 7)
        for call in (lambda: self.kms.decrypt(CiphertextBlob=blob),
                     lambda: self.kms.generate_data_key(KeyId=key, KeySpec="AES_256"),
                     lambda: self.kms.enable_key(KeyId=key)):
            with self.assertRaises(self.kms.exceptions.KMSInvalidStateException):
                call()
        self.kms.cancel_key_deletion(KeyId=key)
        self.assertEqual(self.kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Disabled")

    def test_bad_credentials_are_refused(self):
        wrong = self.server.boto3_client("kms", secret="not-the-secret")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            wrong.list_keys()
        self.assertEqual(error_code(cm.exception), "InvalidSignatureException")
        self.assertIn("The request signature we calculated does not match",
                      cm.exception.response["Error"]["Message"])
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        unknown = self.server.boto3_client("kms", access_key="AKIDNOBODY")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            unknown.list_keys()
        self.assertEqual(error_code(cm.exception), "UnrecognizedClientException")

    def test_a_signature_ten_minutes_old_has_expired(self):
        real = datetime.datetime

        class TenMinutesAgo(real):
            @classmethod
            def utcnow(cls):
                return real.utcnow() - datetime.timedelta(minutes=10)

        with mock.patch("botocore.auth.datetime.datetime", TenMinutesAgo):
            with self.assertRaises(botocore.exceptions.ClientError) as cm:
                self.kms.list_keys()
        self.assertEqual(error_code(cm.exception), "InvalidSignatureException")
        self.assertIn("Signature expired", cm.exception.response["Error"]["Message"])

    def test_rotation_on_demand_keeps_old_ciphertexts_decrypting(self):
        key = self.new_key()
        before = self.kms.encrypt(KeyId=key, Plaintext=b"old")["CiphertextBlob"]
        status, out = raw_kms_call(self.server, "RotateKeyOnDemand", {"KeyId": key})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["KeyId"], ARN_PREFIX + "key/" + key)
        after = self.kms.encrypt(KeyId=key, Plaintext=b"new")["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=before)["Plaintext"], b"old")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=after)["Plaintext"], b"new")

        status, rotations = raw_kms_call(self.server, "ListKeyRotations",
                                         {"KeyId": key, "IncludeKeyMaterial": "ALL_KEY_MATERIAL"})
        self.assertEqual(status, 200, rotations)
        materials = rotations["Rotations"]
        self.assertEqual([m["KeyMaterialState"] for m in materials], ["NON_CURRENT", "CURRENT"])
        self.assertEqual(materials[1]["RotationType"], "ON_DEMAND")
        import base64
        _, old = raw_kms_call(self.server, "Decrypt",
                              {"CiphertextBlob": base64.b64encode(before).decode()})
        _, new = raw_kms_call(self.server, "Decrypt",
                              {"CiphertextBlob": base64.b64encode(after).decode()})
        self.assertEqual(old["KeyMaterialId"], materials[0]["KeyMaterialId"])
        self.assertEqual(new["KeyMaterialId"], materials[1]["KeyMaterialId"])
        _, described = raw_kms_call(self.server, "DescribeKey", {"KeyId": key})
        self.assertEqual(described["KeyMetadata"]["CurrentKeyMaterialId"], new["KeyMaterialId"])
        # The raw path checks signatures too.
        status, err = raw_kms_call(self.server, "RotateKeyOnDemand", {"KeyId": key}, secret="wrong")
        self.assertEqual((status, err["__type"]), (400, "InvalidSignatureException"))

    def test_faults_are_observable(self):
        key = self.new_key()
        self.server.admin("DELETE", "/__admin/stats")
        self.server.admin("POST", "/__admin/faults", {"throttle_rate": 1.0, "operations": ["Encrypt"]})
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.kms.encrypt(KeyId=key, Plaintext=b"x")
        self.assertEqual(error_code(cm.exception), "ThrottlingException")
        self.kms.describe_key(KeyId=key)  # other operations are untouched

        # botocore's own retries see the throttling too, and give up after 3 attempts.
        patient = self.server.boto3_client("kms", retries=3)
        with self.assertRaises(botocore.exceptions.ClientError):
            patient.encrypt(KeyId=key, Plaintext=b"x")
        stats = self.server.stats()
        self.assertEqual(stats["Encrypt"]["ThrottlingException"], 4)
        self.assertEqual(stats["DescribeKey"]["ok"], 1)

        self.server.admin("POST", "/__admin/faults", {"error_rate": 1.0, "count": 1})
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.kms.encrypt(KeyId=key, Plaintext=b"x")
        self.assertEqual(error_code(cm.exception), "KMSInternalException")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.kms.encrypt(KeyId=key, Plaintext=b"x")  # count spent: cleared

        self.server.admin("POST", "/__admin/faults", {"drop_rate": 1.0, "count": 1})
        with self.assertRaises((botocore.exceptions.ConnectionClosedError,
                                botocore.exceptions.EndpointConnectionError)):
            self.kms.list_keys()
        self.assertEqual(self.server.stats()["ListKeys"]["ConnectionDropped"], 1)

        self.server.admin("POST", "/__admin/faults", {"latency_ms": 300})
        start = time.monotonic()
        self.kms.list_keys()
        self.assertGreaterEqual(time.monotonic() - start, 0.3)

    def test_sts_credentials_work_for_kms(self):
        sts = self.server.boto3_client("sts")
        me = sts.get_caller_identity()
        self.assertEqual(me["Arn"], "arn:aws:iam::111122223333:user/tester")
        creds = sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/kmsfs",
                                RoleSessionName="boto3", DurationSeconds=900)["Credentials"]
        self.assertTrue(creds["AccessKeyId"].startswith("ASIA"))
        self.assertIsInstance(creds["Expiration"], datetime.datetime)
        session_kms = self.server.boto3_client("kms", access_key=creds["AccessKeyId"],
                                               secret=creds["SecretAccessKey"],
                                               token=creds["SessionToken"])
        session_kms.create_key()
        session_sts = self.server.boto3_client("sts", access_key=creds["AccessKeyId"],
                                               secret=creds["SecretAccessKey"],
                                               token=creds["SessionToken"])
        self.assertEqual(session_sts.get_caller_identity()["Arn"],
                         "arn:aws:sts::111122223333:assumed-role/kmsfs/boto3")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.server.boto3_client("sts", secret="wrong").get_caller_identity()
        self.assertEqual(error_code(cm.exception), "SignatureDoesNotMatch")

        # AssumeRoleWithWebIdentity: botocore sends it unsigned.
        import base64
        claims = base64.urlsafe_b64encode(json.dumps(
            {"sub": "ci-runner", "aud": "sts.amazonaws.com", "exp": time.time() + 600}).encode())
        token = "eyJhbGciOiJSUzI1NiJ9." + claims.decode().rstrip("=") + ".c2ln"
        web = sts.assume_role_with_web_identity(RoleArn="arn:aws:iam::111122223333:role/web",
                                                RoleSessionName="ci", WebIdentityToken=token)
        self.assertEqual(web["SubjectFromWebIdentityToken"], "ci-runner")
        self.server.boto3_client("kms", access_key=web["Credentials"]["AccessKeyId"],
                                 secret=web["Credentials"]["SecretAccessKey"],
                                 token=web["Credentials"]["SessionToken"]).list_keys()


class SessionExpiry(unittest.TestCase):
    def test_sessions_expire(self):
        with KmsLocal("--quiet", "--session-lifetime", "1") as server:
            creds = server.boto3_client("sts").assume_role(
                RoleArn="arn:aws:iam::111122223333:role/short", RoleSessionName="short")["Credentials"]
            kms = server.boto3_client("kms", access_key=creds["AccessKeyId"],
                                      secret=creds["SecretAccessKey"], token=creds["SessionToken"])
            kms.list_keys()
            time.sleep(1.1)
            with self.assertRaises(botocore.exceptions.ClientError) as cm:
                kms.list_keys()
            self.assertEqual(error_code(cm.exception), "ExpiredTokenException")


class OverTls(unittest.TestCase):
    def test_tls_with_a_pinned_certificate(self):
        with KmsLocal("--quiet", tls=True) as server:
            kms = server.boto3_client("kms")  # verify= the server's self-signed certificate
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            blob = kms.encrypt(KeyId=key, Plaintext=b"tls")["CiphertextBlob"]
            self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"tls")
            self.assertEqual(server.stats()["Decrypt"]["ok"], 1)
            # A client that trusts only the system CAs refuses the certificate.
            with self.assertRaises(botocore.exceptions.SSLError):
                server.boto3_client("kms", verify_system_cas=True).list_keys()


class Persistence(unittest.TestCase):
    def test_state_survives_a_restart(self):
        with tempfile.TemporaryDirectory(prefix="kms-local-state-") as d:
            state = os.path.join(d, "state.json")
            server = KmsLocal("--quiet", state_file=state, directory=d)
            try:
                server.start()
                kms = server.boto3_client("kms")
                key = kms.create_key()["KeyMetadata"]["KeyId"]
                kms.create_alias(AliasName="alias/kept", TargetKeyId=key)
                blob = kms.encrypt(KeyId="alias/kept", Plaintext=b"kept")["CiphertextBlob"]
                self.assertEqual(server.stop(), 0)  # SIGTERM is a clean exit
                self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o600)
                server.start()
                kms = server.boto3_client("kms")
                self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"kept")
                self.assertEqual(kms.describe_key(KeyId="alias/kept")["KeyMetadata"]["KeyId"], key)
                self.assertEqual(server.stop(), 0)
            finally:
                server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
