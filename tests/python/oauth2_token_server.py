"""An OAuth 2.0 token endpoint for the client credentials grant (RFC 6749 section 4.4), for
testing the collector's `oauth2client` extension: POST /token with grant_type=client_credentials.

Usage: oauth2_token_server.py CLIENT_ID CLIENT_SECRET EXPIRES_IN [body-only]
Client credentials are taken as HTTP Basic (RFC 6749 2.3.1: each part form-encoded) or, with
`body-only`, only as client_id/client_secret form fields (Basic is answered 401 invalid_client,
as servers that do not take it answer). Issues "tok-1", "tok-2", ... valid EXPIRES_IN seconds,
token_type "bearer" (lower case, as several servers write it).
Prints "listening on PORT", then "issued TOKEN scope=SCOPE audience=AUDIENCE" per token.
Runs until killed.
"""
import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus

CLIENT_ID, CLIENT_SECRET, EXPIRES_IN = sys.argv[1], sys.argv[2], int(sys.argv[3])
BODY_ONLY = len(sys.argv) > 4 and sys.argv[4] == "body-only"
LOCK = threading.Lock()
ISSUED = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
        field = lambda k: form.get(k, [None])[0]
        if self.path != "/token" or field("grant_type") != "client_credentials":
            return self.answer(400, {"error": "unsupported_grant_type"})
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            if BODY_ONLY:
                return self.answer(401, {"error": "invalid_client"})
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            given = (unquote_plus(user), unquote_plus(password))
        else:
            given = (field("client_id"), field("client_secret"))
        if given != (CLIENT_ID, CLIENT_SECRET):
            return self.answer(401, {"error": "invalid_client"})
        with LOCK:
            ISSUED[0] += 1
            token = f"tok-{ISSUED[0]}"
            print(f"issued {token} scope={field('scope')} audience={field('audience')}", flush=True)
        self.answer(200, {"access_token": token, "token_type": "bearer", "expires_in": EXPIRES_IN})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()
