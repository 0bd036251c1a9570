#!/usr/bin/python3
"""What a struggling KMS costs, and costs the KMS (issue 17): kmsfs on AWS KMS in
per-file mode (the default key pool on) against tools/kms-local injecting faults.

  creates     GenerateDataKey requests per create (the mount's own count of every
              attempt, pool fills included, up to 2 s after the last create) when the
              fault starts on a mount in use (one create made, the key pool full) and N
              creates follow 10 ms apart (--creates, default 60): the KMS throttling 0 %,
              10 %, 100 % of requests, the key disabled, the server down; how many of the
              creates failed. And the requests one create sets off on a fresh mount
              (pool fills included, 3 s) at 0 % and 10 % throttling.
  flush       five rounds of `kmsfs flush-keys` + one create: GenerateDataKey requests in
              each round and the pool's target after it.
  down        connection attempts the mount makes in 75 s with the KMS down while an
              application tries a create every 100 ms.
  rotation    `kmsfs rotate --to KEY2 --rate 0 --kms-rate 0` over N files: files/s with
              0 % and 10 % of ReEncrypt requests throttled.

Usage: bench/kms_faults.py [--parts "creates flush down rotation"] [--files N] [--creates N]
                           [--down-seconds S] [--label NAME] [--json FILE]
  KMSFS=/path/to/kmsfs KMS_LOCAL=/path/to/kms-local (default: build/ in the repo)

Needs root (mounts). Every mount is torn down and every server stopped on exit.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KMSFS = os.environ.get("KMSFS", os.path.join(REPO, "build/src/cli/kmsfs"))
KMS_LOCAL = os.environ.get("KMS_LOCAL", os.path.join(REPO, "build/tools/kms-local/kms-local"))
AKID, SECRET = "AKIDBENCH", "bench-secret-0123456789"

mounts = []
servers = []


def cleanup():
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
    mounts.clear()
    for s in servers:
        if s.poll() is None:
            s.send_signal(signal.SIGTERM)
            try:
                s.wait(10)
            except subprocess.TimeoutExpired:
                s.kill()
    servers.clear()


class Server:
    def __init__(self, work):
        self.work = work
        self.creds = os.path.join(work, "creds")
        with open(self.creds, "w") as f:
            f.write(f"[bench]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n")
        self.state = os.path.join(work, "state.json")
        self.port = 0
        self.start()

    def start(self):
        pf = os.path.join(self.work, "port")
        if os.path.exists(pf):
            os.unlink(pf)
        args = [KMS_LOCAL, "--credentials-file", self.creds, "--port", str(self.port), "--port-file", pf,
                "--state-file", self.state, "--quiet"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "kms.log"), "a"))
        servers.append(self.proc)
        for _ in range(200):
            if os.path.exists(pf) and open(pf).read().strip():
                break
            time.sleep(0.05)
        self.port = int(open(pf).read().strip())
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, AWS_ENDPOINT_URL_KMS=self.url, AWS_ENDPOINT_URL_STS=self.url, AWS_REGION="us-east-1",
                        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID=AKID, AWS_SECRET_ACCESS_KEY=SECRET,
                        AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
                        AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        self.kms = boto3.client("kms", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=AKID,
                                aws_secret_access_key=SECRET)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)

    def admin(self, method, path, body=None):
        req = urllib.request.Request(self.url + "/__admin/" + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    def faults(self, f):
        if f:
            self.admin("POST", "faults", f)
        else:
            self.admin("DELETE", "faults")

    def create_key(self):
        return self.kms.create_key(Description="kmsfs-bench")["KeyMetadata"]["Arn"]


class Mount:
    def __init__(self, server, work, name, key, extra=()):
        self.server = server
        self.b, self.m = os.path.join(work, name, "b"), os.path.join(work, name, "m")
        os.makedirs(self.b)
        os.makedirs(self.m)
        self.kmsfs(["init", self.b, "--kms-key", key])
        self.kmsfs(["mount", self.b, self.m, *extra])
        mounts.append(self.m)

    def kmsfs(self, args, check=True):
        return subprocess.run([KMSFS, *args], env=self.server.env, check=check, capture_output=True, text=True)

    def stats(self):
        return json.loads(self.kmsfs(["stats", self.m, "--json"]).stdout)

    def requests(self, op=None, result=None):
        return sum(r["count"] for r in self.stats()["kms"]["requests"]
                   if (op is None or r["operation"] == op) and (result is None or r["result"] == result))

    def create(self, name):
        try:
            with open(os.path.join(self.m, name), "x") as f:
                f.write(name)
            return True
        except OSError:
            return False

    def wait_pool(self, timeout=5):
        end = time.time() + timeout
        while time.time() < end:
            p = self.stats().get("key_pool", {})
            if p and p["size"] >= p["target"]:
                return
            time.sleep(0.05)

    def umount(self):
        subprocess.run(["umount", self.m], check=False)
        mounts.remove(self.m)


def part_creates(work, out, n):
    # Sustained: the mount in use (one create made, the pool full) when the fault starts,
    # then n creates 10 ms apart; every GenerateDataKey attempt from the fault on, up to
    # 2 s after the last create, over n.
    cases = [("0 %", {}), ("10 %", {"throttle_rate": 0.1}), ("100 %", {"throttle_rate": 1}), ("disabled", None),
             ("down", None)]
    for i, (name, f) in enumerate(cases):
        d = os.path.join(work, f"creates{i}")
        os.makedirs(d)
        srv = Server(d)
        key = srv.create_key()
        mnt = Mount(srv, d, "v", key)
        mnt.create("warm")
        mnt.wait_pool()
        before = mnt.requests("GenerateDataKey")
        if name == "disabled":
            srv.kms.disable_key(KeyId=key)
        elif name == "down":
            srv.stop()
        else:
            srv.faults(f)
        t0 = time.time()
        ok = 0
        for k in range(n):
            ok += mnt.create(f"f{k}")
            time.sleep(0.01)
        t1 = time.time()
        time.sleep(2)
        req = mnt.requests("GenerateDataKey") - before
        out["creates"][name] = {"creates": n, "failed": n - ok, "requests": req, "per_create": req / n,
                                "seconds": t1 - t0}
        print(f"creates, {name}: {req} GenerateDataKey requests for {n} creates ({req / n:.1f} each), "
              f"{n - ok} failed, {t1 - t0:.1f} s", file=sys.stderr)
        mnt.umount()
        if name != "down":
            srv.stop()
    # One create on a fresh mount (the fault on from the start): what it sets off.
    for i, (name, f) in enumerate([("0 %", {}), ("10 %", {"throttle_rate": 0.1})]):
        d = os.path.join(work, f"single{i}")
        os.makedirs(d)
        srv = Server(d)
        mnt = Mount(srv, d, "v", srv.create_key())
        srv.faults(f)
        mnt.create("one")
        time.sleep(3)
        req = mnt.requests("GenerateDataKey")
        out["single"][name] = req
        print(f"one create on a fresh mount, {name}: {req} GenerateDataKey requests", file=sys.stderr)
        mnt.umount()
        srv.stop()


def part_flush(work, out):
    d = os.path.join(work, "flush")
    os.makedirs(d)
    srv = Server(d)
    mnt = Mount(srv, d, "v", srv.create_key())
    mnt.create("first")
    mnt.wait_pool()
    rounds = []
    for r in range(5):
        mnt.kmsfs(["flush-keys", mnt.m])
        before = mnt.requests("GenerateDataKey")
        mnt.create(f"r{r}")
        time.sleep(0.3)
        mnt.wait_pool(10)
        req = mnt.requests("GenerateDataKey") - before
        target = mnt.stats()["key_pool"]["target"]
        rounds.append({"requests": req, "target": target})
        print(f"flush round {r + 1}: {req} GenerateDataKey requests, pool target {target}", file=sys.stderr)
    out["flush"] = rounds
    mnt.umount()
    srv.stop()


def part_down(work, out, seconds):
    d = os.path.join(work, "down")
    os.makedirs(d)
    srv = Server(d)
    mnt = Mount(srv, d, "v", srv.create_key())
    mnt.create("warm")
    mnt.wait_pool()
    srv.stop()
    before = mnt.requests(result="ConnectionError")
    end = time.time() + seconds
    k = 0
    while time.time() < end:
        mnt.create(f"c{k}")
        k += 1
        time.sleep(0.1)
    att = mnt.requests(result="ConnectionError") - before
    out["down"] = {"seconds": seconds, "creates": k, "connection_attempts": att}
    print(f"KMS down {seconds} s: {att} connection attempts ({k} creates tried)", file=sys.stderr)
    mnt.umount()


def part_rotation(work, out, files):
    for name, f in [("0 %", {}), ("10 %", {"throttle_rate": 0.1, "operations": ["ReEncrypt"]})]:
        d = os.path.join(work, "rot" + name.split()[0])
        os.makedirs(d)
        srv = Server(d)
        mnt = Mount(srv, d, "v", srv.create_key())
        for k in range(files):
            mnt.create(f"f{k}")
        target = srv.create_key()
        srv.faults(f)
        t0 = time.time()
        r = mnt.kmsfs(["rotate", mnt.m, "--to", target, "--wait", "--json", "--rate", "0", "--kms-rate", "0"], check=False)
        t1 = time.time()
        srv.faults({})
        st = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        rate = files / (t1 - t0)
        out["rotation"][name] = {"files": files, "seconds": t1 - t0, "files_per_second": rate,
                                 "phase": st.get("phase"), "rotated": st.get("rotated"), "failed": st.get("failed")}
        print(f"rotation, {name} ReEncrypt throttled: {files} files in {t1 - t0:.1f} s = {rate:.0f} files/s "
              f"(phase {st.get('phase')}, rotated {st.get('rotated')}, failed {st.get('failed')})", file=sys.stderr)
        mnt.umount()
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="creates flush down rotation")
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--creates", type=int, default=60)
    ap.add_argument("--down-seconds", type=int, default=75)
    ap.add_argument("--label", default=os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(KMSFS)))))
    ap.add_argument("--json")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("error: run as root (mounts)")
    for b in (KMSFS, KMS_LOCAL):
        if not os.access(b, os.X_OK):
            sys.exit(f"error: {b} is not built (ninja -C build kmsfs kms-local)")
    work = tempfile.mkdtemp(prefix="kmsfs-faults.", dir="/var/tmp")
    out = {"label": a.label, "creates": {}, "single": {}, "rotation": {}}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        parts = a.parts.split()
        if "creates" in parts:
            part_creates(work, out, a.creates)
        if "flush" in parts:
            part_flush(work, out)
        if "down" in parts:
            part_down(work, out, a.down_seconds)
        if "rotation" in parts:
            part_rotation(work, out, a.files)
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
