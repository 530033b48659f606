"""An OTLP/gRPC trace backend over TLS (grpcio + the OpenTelemetry proto package), for testing
exporters' TLS: serves TraceService/Export on 127.0.0.1 with the given certificate, optionally
requiring a client certificate signed by CLIENT_CA (mutual TLS).

Usage: grpc_tls_sink.py CERT KEY [CLIENT_CA]
Prints "listening on PORT", then for every request "spans N trace_ids ID,ID,...".
Runs until killed.
"""
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


PRINT = threading.Lock()  # requests arrive on several threads; one line each, whole


def export(request, context):
    ids = sorted(
        {
            span.trace_id.hex()
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        }
    )
    count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    with PRINT:
        print(f"spans {count} trace_ids {','.join(ids)}", flush=True)
    return trace_service_pb2.ExportTraceServiceResponse()


def main():
    cert = open(sys.argv[1], "rb").read()
    key = open(sys.argv[2], "rb").read()
    client_ca = open(sys.argv[3], "rb").read() if len(sys.argv) > 3 else None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(f"listening on {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
