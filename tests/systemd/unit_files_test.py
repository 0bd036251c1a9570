#!/usr/bin/env python3
"""The shipped systemd units as systemd itself reads them (label `systemd`).

Takes the directory of the configured units (build/systemd/test: the template with the
build tree's binary, so systemd-analyze finds ExecStart='s executable). Checks:
  - `systemd-analyze verify --man=no` accepts kmsfs@.service (as an instance) and the
    example .mount/.automount pair, without a warning;
  - `systemd-analyze security --offline=true` rates kmsfs@.service at 5.0 or lower;
  - no setting that gives the unit a mount namespace of its own (the FUSE mount would be
    invisible outside it), and the settings the daemon relies on are there.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

UNITS = sys.argv.pop(1) if len(sys.argv) > 1 else None

# exec_needs_mount_namespace() in systemd 252's src/core/execute.c: any of these gives the
# service a mount namespace.
NAMESPACING = ["ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
               "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
               "ProtectControlGroups", "ProtectProc", "ProcSubset", "ReadOnlyPaths", "ReadWritePaths",
               "InaccessiblePaths", "ExecPaths", "NoExecPaths", "BindPaths", "BindReadOnlyPaths",
               "TemporaryFileSystem", "RootDirectory", "RootImage", "MountAPIVFS", "MountImages",
               "ExtensionImages", "LogNamespace", "MountFlags", "PrivateUsers"]


def settings(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


class UnitFiles(unittest.TestCase):
    def setUp(self):
        if shutil.which("systemd-analyze") is None:
            if os.environ.get("CI") == "true":
                self.fail("systemd-analyze is missing (apt-get install systemd)")
            self.skipTest("SKIPPED LOUDLY: systemd-analyze is missing (apt-get install systemd)")
        self.tmp = tempfile.TemporaryDirectory()
        # verify wants the instance name; the template is copied as one instance of it.
        self.service = os.path.join(self.tmp.name, "kmsfs@vault.service")
        shutil.copy(os.path.join(UNITS, "kmsfs@.service"), os.path.join(self.tmp.name, "kmsfs@.service"))
        shutil.copy(os.path.join(UNITS, "kmsfs@.service"), self.service)

    def tearDown(self):
        self.tmp.cleanup()

    def analyze(self, *args):
        env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
        return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, env=env, timeout=120)

    def test_verify_accepts_the_service_and_the_mount_pair(self):
        units = [self.service, os.path.join(UNITS, "examples", "mnt-plain.mount"),
                 os.path.join(UNITS, "examples", "mnt-plain.automount")]
        r = self.analyze("verify", "--man=no", *units)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Unknown or misspelt settings are only warnings: none is allowed either.
        self.assertEqual(r.stdout + r.stderr, "", "systemd-analyze verify complained")

    def test_security_exposure_at_most_5(self):
        r = self.analyze("security", "--offline=true", "--no-pager", self.service)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertLessEqual(float(m.group(1)), 5.0, r.stdout)
        # The same through --threshold (exposure x 10), which CI scripts use.
        r = self.analyze("security", "--offline=true", "--no-pager", "--threshold=50", self.service)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_the_mount_reaches_the_host_namespace(self):
        s = settings(self.service)
        for key in NAMESPACING:
            self.assertNotIn(key, s, f"{key}= gives the unit its own mount namespace")

    def test_settings_the_daemon_relies_on(self):
        s = settings(self.service)
        self.assertEqual(s["Type"], ["notify"])
        self.assertEqual(s["NotifyAccess"], ["main"])
        self.assertIn("network-online.target", " ".join(s["After"]))
        self.assertIn("network-online.target", " ".join(s["Wants"]))
        self.assertEqual(s["LimitMEMLOCK"], ["infinity"])
        self.assertEqual(s["LimitCORE"], ["0"])
        self.assertTrue(any(v.startswith("passphrase:") for v in s["LoadCredential"]))
        exec_start = s["ExecStart"][0]
        self.assertIn("--foreground", exec_start)
        # Keyring and KMS vaults alike: neither option is forced on every instance.
        self.assertNotIn("--keyring", exec_start)
        self.assertNotIn("--passphrase-file", exec_start)
        self.assertNotIn("/usr/local/bin", exec_start)
        binary = exec_start.split()[0]
        self.assertTrue(os.access(binary, os.X_OK), binary)
        docs = " ".join(s["Documentation"]).split()
        self.assertIn("man:kmsfs(1)", docs)  # packaging/man
        files = [d for d in docs if d.startswith("file://")]
        self.assertTrue(files, docs)
        for doc in files:
            self.assertTrue(os.path.exists(doc[len("file://"):]), doc)


if __name__ == "__main__":
    unittest.main(verbosity=2)
