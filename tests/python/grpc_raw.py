"""Sends raw bytes as an OTLP gRPC Export request and prints the status code name and details.

Usage: grpc_raw.py HOST:PORT HEX_BYTES
Used to check how meshtrace answers malformed protobuf over gRPC (the real grpcio client).
"""
import sys

import grpc


def main():
    target, payload = sys.argv[1], bytes.fromhex(sys.argv[2])
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=None,
        response_deserializer=None,
    )
    try:
        call(payload, timeout=10)
        print("OK")
    except grpc.RpcError as e:
        print(f"{e.code().name} {e.details()}")


if __name__ == "__main__":
    main()
