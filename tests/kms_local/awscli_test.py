#!/usr/bin/env python3
"""kms-local checked by Debian's AWS CLI (`aws kms ... --endpoint-url`): its own SigV4
signer and JSON client, unchanged. Each `aws` run costs about a second of Python start-up,
so the calls are few and run as independent chains side by side."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kms_local_server import REGION, KmsLocal, clean_aws_env  # noqa: E402

AWS = os.environ.get("KMS_LOCAL_AWS_CLI", "/usr/bin/aws")
ARN_PREFIX = f"arn:aws:kms:{REGION}:111122223333:"


def aws(server, *args, expect_error=None, **env):
    """Runs `aws kms ARGS` against `server`; JSON output, or the error's stderr."""
    argv = [AWS, "kms", *args, "--endpoint-url", server.endpoint, "--output", "json"]
    if server.tls:
        argv += ["--ca-bundle", server.ca_file]
    r = subprocess.run(argv, env=clean_aws_env(**env), capture_output=True, text=True, timeout=60)
    if expect_error:
        assert r.returncode != 0, f"{args} succeeded: {r.stdout}"
        assert f"({expect_error})" in r.stderr, f"{args}: {r.stderr}"
        return r.stderr
    assert r.returncode == 0, f"{args} failed ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


class AwsCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(AWS, os.X_OK):
            raise unittest.SkipTest(f"{AWS} missing: apt-get install awscli")

    def test_kms_through_the_aws_cli(self):
        with KmsLocal("--quiet") as server, KmsLocal("--quiet", tls=True) as tls_server, \
                tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
            plain_file = os.path.join(tmp, "plain")
            with open(plain_file, "wb") as f:
                f.write(b"kmsfs test plaintext")

            def key_with_alias_chain():
                meta = aws(server, "create-key", "--description", "awscli")["KeyMetadata"]
                key, arn = meta["KeyId"], meta["Arn"]
                assert arn == ARN_PREFIX + "key/" + key, arn
                aws(server, "create-alias", "--alias-name", "alias/awscli", "--target-key-id", key)
                blob = aws(server, "encrypt", "--key-id", "alias/awscli", "--plaintext",
                           "fileb://" + plain_file, "--encryption-context", "purpose=test")
                assert blob["KeyId"] == arn, blob
                blob_file = os.path.join(tmp, "blob")
                with open(blob_file, "wb") as f:
                    f.write(base64.b64decode(blob["CiphertextBlob"]))
                out = aws(server, "decrypt", "--ciphertext-blob", "fileb://" + blob_file,
                          "--encryption-context", "purpose=test")
                assert base64.b64decode(out["Plaintext"]) == b"kmsfs test plaintext", out
                assert out["KeyId"] == arn, out
                dk = aws(server, "generate-data-key", "--key-id", arn, "--key-spec", "AES_256",
                         "--encryption-context", "kmsfs:fs-id=abc")
                assert len(base64.b64decode(dk["Plaintext"])) == 32, dk
                dk_file = os.path.join(tmp, "dk")
                with open(dk_file, "wb") as f:
                    f.write(base64.b64decode(dk["CiphertextBlob"]))
                moved = aws(server, "re-encrypt", "--ciphertext-blob", "fileb://" + dk_file,
                            "--source-encryption-context", "kmsfs:fs-id=abc",
                            "--destination-key-id", "alias/awscli",
                            "--destination-encryption-context", "kmsfs:fs-id=xyz")
                assert moved["SourceKeyId"] == arn and moved["KeyId"] == arn, moved
                described = aws(server, "describe-key", "--key-id", ARN_PREFIX + "alias/awscli")
                assert described["KeyMetadata"]["KeyState"] == "Enabled", described
                # The wrong context does not decrypt.
                aws(server, "decrypt", "--ciphertext-blob", "fileb://" + blob_file,
                    "--encryption-context", "purpose=Test", expect_error="InvalidCiphertextException")

            def disable_and_delete_chain():
                key = aws(server, "create-key")["KeyMetadata"]["KeyId"]
                blob = aws(server, "encrypt", "--key-id", key, "--plaintext", "fileb://" + plain_file)
                blob_file = os.path.join(tmp, "blob2")
                with open(blob_file, "wb") as f:
                    f.write(base64.b64decode(blob["CiphertextBlob"]))
                aws(server, "disable-key", "--key-id", key)
                aws(server, "encrypt", "--key-id", key, "--plaintext", "fileb://" + plain_file,
                    expect_error="DisabledException")
                out = aws(server, "schedule-key-deletion", "--key-id", key,
                          "--pending-window-in-days", "7")
                assert out["KeyState"] == "PendingDeletion", out
                aws(server, "decrypt", "--ciphertext-blob", "fileb://" + blob_file,
                    expect_error="KMSInvalidStateException")

            def wrong_secret():
                err = aws(server, "list-keys", expect_error="InvalidSignatureException",
                          AWS_SECRET_ACCESS_KEY="not-the-secret")
                assert "The request signature we calculated does not match" in err, err

            def over_tls():
                key = aws(tls_server, "create-key")["KeyMetadata"]["KeyId"]
                assert aws(tls_server, "list-keys")["Keys"][0]["KeyId"] == key

            for future in [pool.submit(f) for f in (key_with_alias_chain, disable_and_delete_chain,
                                                    wrong_secret, over_tls)]:
                future.result()

            stats = server.stats()
            self.assertEqual(stats["CreateKey"]["ok"], 2)
            self.assertEqual(stats["ListKeys"]["InvalidSignatureException"], 1)
            self.assertEqual(stats["Decrypt"]["KMSInvalidStateException"], 1)
            self.assertEqual(tls_server.stats()["ListKeys"]["ok"], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
