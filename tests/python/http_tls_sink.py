"""An HTTPS trace backend (Python's http.server + ssl), for testing HTTP exporters' TLS: takes
OTLP/HTTP protobuf at /v1/traces (gzip or not) and Zipkin v2 JSON at /api/v2/spans on 127.0.0.1
with the given certificate, optionally requiring a client certificate signed by CLIENT_CA.

Usage: http_tls_sink.py CERT KEY [CLIENT_CA]
Environment, to narrow what the server accepts: SINK_TLS_MAX=1.2 (no TLS 1.3), SINK_TLS_CIPHERS
(an OpenSSL cipher list for TLS 1.2), SINK_TLS_CURVE (the one key-exchange curve, OpenSSL's name).
Prints "listening on PORT", then for every request "spans N trace_ids ID,ID,...".
Runs until killed.
"""
import gzip
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PRINT = threading.Lock()  # requests arrive on several threads; one line each, whole


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
            ids = sorted({s.trace_id.hex() for s in spans})
            status, answer, kind = 200, b"", "application/x-protobuf"
        elif self.path == "/api/v2/spans":
            spans = json.loads(body)
            ids = sorted({s["traceId"] for s in spans})
            status, answer, kind = 202, b"", "text/plain"
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with PRINT:
            print(f"spans {len(spans)} trace_ids {','.join(ids)}", flush=True)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    if len(sys.argv) > 3:
        context.load_verify_locations(sys.argv[3])
        context.verify_mode = ssl.CERT_REQUIRED
    if os.environ.get("SINK_TLS_MAX") == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if "SINK_TLS_CIPHERS" in os.environ:
        context.set_ciphers(os.environ["SINK_TLS_CIPHERS"])
    if "SINK_TLS_CURVE" in os.environ:
        context.set_ecdh_curve(os.environ["SINK_TLS_CURVE"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
