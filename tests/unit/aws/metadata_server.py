#!/usr/bin/env python3
"""A scripted stand-in for the link-local credential endpoints (EC2 IMDSv2, ECS/EKS
container credentials) and STS, for the credential-chain tests. Not a KMS.

Prints its port on the first line of stdout, then serves until killed. GET /_log returns
the requests seen so far (method, target, headers) as JSON lines.
"""
import http.server
import json
import sys
import urllib.parse

LOG = []
EXPIRY = "2099-01-01T00:00:00Z"
CREDS = {"AccessKeyId": "ASIAMETA", "SecretAccessKey": "meta-secret", "Token": "meta-token",
         "Expiration": EXPIRY}


def sts_xml(action, key_id):
    return (f"<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
            f"<{action}Result><Credentials><AccessKeyId>{key_id}</AccessKeyId>"
            f"<SecretAccessKey>sts-secret&amp;x</SecretAccessKey><SessionToken>sts-token</SessionToken>"
            f"<Expiration>2099-01-01T00:00:00.123Z</Expiration></Credentials></{action}Result>"
            f"</{action}Response>")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, body=""):
        LOG.append({"method": self.command, "target": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})

    def do_PUT(self):
        self.record()
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, "TOKEN123")
        self.reply(400, "bad token request")

    def do_GET(self):
        if self.path == "/_log":
            return self.reply(200, "\n".join(json.dumps(e) for e in LOG))
        self.record()
        if self.path.startswith("http://"):  # came through us as an HTTP proxy
            return self.reply(200, "via-proxy")
        if self.path.startswith("/latest/meta-data/iam/security-credentials/"):
            if self.headers.get("X-aws-ec2-metadata-token") != "TOKEN123":
                return self.reply(401, "no token")
            role = self.path.rsplit("/", 1)[1]
            if role == "":
                return self.reply(200, "test-role\n")
            if role == "test-role":
                return self.reply(200, json.dumps(dict(CREDS, Code="Success")), "application/json")
            return self.reply(404, "no such role")
        if self.path == "/ecs/creds":
            if self.headers.get("Authorization") != "Bearer-ecs":
                return self.reply(403, "bad authorization")
            return self.reply(200, json.dumps(dict(CREDS, AccessKeyId="ASIAECS")), "application/json")
        self.reply(404, "not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.record(body)
        form = urllib.parse.parse_qs(body)
        action = form.get("Action", [""])[0]
        if action == "AssumeRole":
            if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
                return self.reply(403, "<ErrorResponse><Error><Code>AccessDenied</Code>"
                                       "<Message>unsigned</Message></Error></ErrorResponse>")
            if form.get("RoleArn", [""])[0].endswith("denied"):
                return self.reply(403, "<ErrorResponse><Error><Code>AccessDenied</Code>"
                                       "<Message>not allowed</Message></Error></ErrorResponse>")
            return self.reply(200, sts_xml("AssumeRole", "ASIAROLE"), "text/xml")
        if action == "AssumeRoleWithWebIdentity":
            if form.get("WebIdentityToken", [""])[0] != "jwt-token":
                return self.reply(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code>"
                                       "</Error></ErrorResponse>")
            return self.reply(200, sts_xml("AssumeRoleWithWebIdentity", "ASIAWEB"), "text/xml")
        self.reply(400, "unknown action")


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
