"""A gRPC server with the standard health service (grpcio-health-checking's HealthServicer),
for testing the proxy's grpc_health_check against the real protocol implementation.

Usage: grpc_health_server.py
Prints "listening on PORT" (127.0.0.1, HTTP/2 cleartext), then "check SERVICE" for every
Check call it answers. Reads commands on stdin, one per line: "SERVICE STATUS" sets the
status of SERVICE ("-" for the server as a whole, "") to STATUS (SERVING, NOT_SERVING),
and answers "set SERVICE STATUS". Runs until stdin closes.
"""
import sys
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

PRINT = threading.Lock()


class CountingHealth(health.HealthServicer):
    def Check(self, request, context):
        with PRINT:
            print(f"check {request.service or '-'}", flush=True)
        return super().Check(request, context)


def main():
    servicer = CountingHealth()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with PRINT:
        print(f"listening on {port}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) != 2:
            continue
        service = "" if words[0] == "-" else words[0]
        status = health_pb2.HealthCheckResponse.ServingStatus.Value(words[1])
        servicer.set(service, status)
        with PRINT:
            print(f"set {words[0]} {words[1]}", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
