"""Runs tools/kms-local for a Python test: a fresh directory, a credentials file, port 0
and a port file, optional TLS with a throwaway self-signed certificate, and a stop that
always happens (context manager, atexit, and PR_SET_PDEATHSIG so even a SIGKILLed test
takes the server with it).

    with KmsLocal() as server:
        kms = server.boto3_client("kms")
        server.admin("POST", "/__admin/faults", {"throttle_rate": 1.0})
"""
import atexit
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request

ACCESS_KEY_ID = "AKIDKMSLOCALTEST"
SECRET_ACCESS_KEY = "kms-local/test+secret/0123456789abcdefghij"
REGION = "us-east-1"
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def binary():
    path = os.environ.get("KMS_LOCAL_BIN")
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("set KMS_LOCAL_BIN to the kms-local executable (CTest does)")
    return path


def clean_aws_env(**extra):
    """An environment in which an AWS client sees only what the test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION=REGION,
               AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
               AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    env.update(extra)
    return env


class KmsLocal:
    def __init__(self, *args, tls=False, state_file=None, directory=None):
        self.args = list(args)
        self.tls = tls
        self.state_file = state_file
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="kms-local-test-")
        self.proc = None
        self.port = None
        self.returncode = None

    # --- lifecycle ---
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, *exc):
        status = self.stop()
        log = self.log()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        # Every test also checks the server stopped cleanly (a sanitizer report is a
        # non-zero exit), unless it is already failing for another reason.
        if exc_type is None and status != 0:
            raise RuntimeError(f"kms-local exited with {status}:\n{log}")

    @property
    def credentials_file(self):
        return os.path.join(self.dir, "credentials")

    @property
    def ca_file(self):
        return os.path.join(self.dir, "cert.pem") if self.tls else None

    def start(self):
        creds = self.credentials_file
        if not os.path.exists(creds):
            fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"[tester]\naws_access_key_id = {ACCESS_KEY_ID}\n"
                        f"aws_secret_access_key = {SECRET_ACCESS_KEY}\n")
        argv = [binary(), "--credentials-file", creds, "--region", REGION]
        if self.tls:
            if not os.path.exists(self.ca_file):
                subprocess.run(
                    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                     "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                     "-keyout", os.path.join(self.dir, "key.pem"), "-out", self.ca_file],
                    check=True, capture_output=True)
            argv += ["--tls-cert", self.ca_file, "--tls-key", os.path.join(self.dir, "key.pem")]
        if self.state_file:
            argv += ["--state-file", self.state_file]
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        argv += ["--port", "0", "--port-file", port_file] + self.args
        self.log_path = os.path.join(self.dir, "server.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        atexit.register(self._kill)
        deadline = time.monotonic() + 15
        while not os.path.exists(port_file):
            if self.proc.poll() is not None:
                raise RuntimeError(f"kms-local exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError("kms-local did not write its port file:\n" + self.log())
            time.sleep(0.01)
        with open(port_file) as f:
            self.port = int(f.read())

    def stop(self):
        """SIGTERM, then wait; returns the exit status (0 for a clean stop)."""
        if self.proc is None:
            return self.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.returncode = -signal.SIGKILL
        self._log.close()
        atexit.unregister(self._kill)
        self.proc = None
        return self.returncode

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    # --- clients ---
    @property
    def endpoint(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _ssl_context(self):
        return ssl.create_default_context(cafile=self.ca_file) if self.tls else None

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10, context=self._ssl_context()) as r:
            return json.loads(r.read())

    def stats(self):
        return self.admin("GET", "/__admin/stats")["operations"]

    def boto3_client(self, service, access_key=ACCESS_KEY_ID, secret=SECRET_ACCESS_KEY,
                     token=None, retries=1, verify_system_cas=False, **kwargs):
        """A boto3 client for this server; over TLS it trusts the server's certificate
        (or, with verify_system_cas, only the system's CAs)."""
        import boto3
        from botocore.config import Config
        return boto3.session.Session().client(
            service, region_name=REGION, endpoint_url=self.endpoint,
            aws_access_key_id=access_key, aws_secret_access_key=secret,
            aws_session_token=token,
            verify=self.ca_file if self.tls and not verify_system_cas else True,
            config=Config(retries={"mode": "standard", "total_max_attempts": retries},
                          connect_timeout=5, read_timeout=15), **kwargs)
