"""Sends one realistic trace to meshtrace through a real OpenTelemetry Python SDK exporter.

Usage: send_trace.py EXPORTER ENDPOINT SERVICE [--gzip] [--ca CA.pem [--cert C.pem --key K.pem]]
  EXPORTER: otlp-grpc | otlp-http | zipkin-json | zipkin-proto
  --ca: speak TLS, trusting this CA (https:// endpoints for the HTTP exporters); --cert/--key:
  present this client certificate (mutual TLS).

The trace: SERVER "GET /checkout" (root) -> INTERNAL "load cart" -> CLIENT "SELECT carts" (error),
plus a SERVER span in a second service ("<SERVICE>-db"), with attributes of every OTLP type and
an event. Prints one JSON line: trace id, span ids, service names and exporter result, so the
Rust test can check what the query API answers against what the SDK really sent.
"""
import json
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


class Recording:
    """Wraps an exporter to record whether each export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def option(name):
    args = sys.argv[4:]
    return args[args.index(name) + 1] if name in args else None


def headers():
    """`--header name=value` (repeatable): sent with every export (gRPC metadata, HTTP headers)."""
    args, found = sys.argv[4:], {}
    for i, a in enumerate(args[:-1]):
        if a == "--header":
            name, _, value = args[i + 1].partition("=")
            found[name.lower()] = value
    return found or None


def make_exporter(kind, endpoint, gzip):
    ca, cert, key = option("--ca"), option("--cert"), option("--key")
    if ca:
        # requests lets these variables override a session's own CA (its issue #3829).
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(name, None)
    if kind == "otlp-grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

        comp = Compression.Gzip if gzip else Compression.NoCompression
        if ca is None:
            return OTLPSpanExporter(
                endpoint=endpoint, insecure=True, compression=comp, timeout=10, headers=headers()
            )
        read = lambda path: open(path, "rb").read() if path else None
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
        )
        return OTLPSpanExporter(
            endpoint=endpoint, insecure=False, credentials=credentials, compression=comp, timeout=10
        )
    if kind == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http import Compression

        comp = Compression.Gzip if gzip else Compression.NoCompression
        tls = {}
        if ca:
            tls = {"certificate_file": ca, "client_certificate_file": cert, "client_key_file": key}
        return OTLPSpanExporter(endpoint=endpoint, compression=comp, timeout=10, headers=headers(), **tls)
    session = None
    if ca:
        import requests

        session = requests.Session()
        session.verify = ca
        if cert:
            session.cert = (cert, key)
    if kind == "zipkin-json":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        return ZipkinExporter(endpoint=endpoint, timeout=10, session=session)
    if kind == "zipkin-proto":
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter

        return ZipkinExporter(endpoint=endpoint, timeout=10, session=session)
    raise SystemExit(f"unknown exporter {kind!r}")


def provider(service, exporter):
    p = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def main():
    kind, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
    gzip = "--gzip" in sys.argv[4:]
    app = Recording(make_exporter(kind, endpoint, gzip))
    db = Recording(make_exporter(kind, endpoint, gzip))
    app_tracer = provider(service, app).get_tracer("checkout-lib", "1.2.3")
    db_tracer = provider(service + "-db", db).get_tracer("db-lib")

    ids = {}
    with app_tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.method", "GET")
        root.set_attribute("http.status_code", 200)
        root.set_attribute("http.retry", False)
        root.set_attribute("sample.ratio", 0.25)
        root.set_attribute("cart.items", ["apple", "pear"])
        ids["root"] = root.get_span_context().span_id
        with app_tracer.start_as_current_span("load cart") as load:
            ids["load"] = load.get_span_context().span_id
            load.add_event("cache miss", {"cache.key": "cart:42"})
            time.sleep(0.02)
            with app_tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT) as call:
                ids["call"] = call.get_span_context().span_id
                call.set_attribute("db.system", "postgresql")
                call.set_status(Status(StatusCode.ERROR, "connection reset"))
                with db_tracer.start_as_current_span("query carts", kind=SpanKind.SERVER) as server:
                    ids["db"] = server.get_span_context().span_id
                    time.sleep(0.01)
        trace_id = root.get_span_context().trace_id

    print(json.dumps({
        "trace_id": format(trace_id, "032x"),
        "spans": {k: format(v, "016x") for k, v in ids.items()},
        "exports_ok": all(app.results) and all(db.results) and len(app.results) == 3 and len(db.results) == 1,
    }))


if __name__ == "__main__":
    main()
