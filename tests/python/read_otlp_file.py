"""Reads a file the collector's `file` exporter wrote with `format: proto`: records of a 4-byte
big-endian length and an OTLP ExportTraceServiceRequest, parsed with the OpenTelemetry
protobuf classes. Prints {"records": N, "spans": [names...], "partial": bool} as JSON
(partial: the file ends inside a record, as while one is being written).

Usage: read_otlp_file.py PATH
"""
import json
import struct
import sys

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

data = open(sys.argv[1], "rb").read()
names, records, at = [], 0, 0
while at + 4 <= len(data):
    (size,) = struct.unpack(">I", data[at : at + 4])
    if at + 4 + size > len(data):
        break  # a record still being written
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(data[at + 4 : at + 4 + size])
    at += 4 + size
    records += 1
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            names.extend(span.name for span in ss.spans)
print(json.dumps({"records": records, "spans": sorted(names), "partial": at != len(data)}))
