"""A real WebSocket peer (the `websockets` library) for the proxy's upgrade tests.

server: an app on 127.0.0.1 (a free port); prints `meshtrace: ws listening on ADDR`, the line the
    Rust test harness waits for. On /echo its first message is the JSON of the handshake headers
    it received (so the test can check the trace headers the proxies wrote), then it echoes every
    message; it also pushes one message of its own ("tick") before echoing, so data flows
    server → client unprompted. /reject answers the handshake with 403.
client URL HOLD_SECONDS: connects, reads the headers message and the tick, sends text and binary
    messages (up to 1 MiB) and checks each echo, keeps the connection open HOLD_SECONDS, closes
    normally; prints a JSON summary (headers seen by the app, messages and bytes echoed).
reject URL: connects to a path the app refuses; prints the HTTP status the handshake got.
"""

import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response
from websockets.datastructures import Headers


async def handler(ws):
    headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
    await ws.send(json.dumps({"path": ws.request.path, "headers": headers}))
    await ws.send("tick")
    async for message in ws:
        await ws.send(message)


def refuse(connection, request):
    if request.path.endswith("/reject"):
        return Response(403, "Forbidden", Headers([("Content-Length", "3")]), b"no\n")
    return None


async def run_server():
    async with serve(handler, "127.0.0.1", 0, max_size=None, process_request=refuse) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"meshtrace: ws listening on {host}:{port} (websockets app)", flush=True)
        await asyncio.Future()


async def run_client(url, hold):
    async with connect(url, max_size=None, open_timeout=10) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        tick = await asyncio.wait_for(ws.recv(), 10)
        assert tick == "tick", tick
        messages = ["hello", "ü" * 1000, os.urandom(70_000), os.urandom(1 << 20)]
        sent = 0
        for m in messages:
            await ws.send(m)
            back = await asyncio.wait_for(ws.recv(), 10)
            assert back == m, f"echo of a {type(m).__name__} of {len(m)} differs"
            sent += len(m.encode() if isinstance(m, str) else m)
        await asyncio.sleep(hold)
    print(json.dumps({"app_saw": first, "echoed": len(messages), "payload_bytes": sent}))


async def run_reject(url):
    try:
        async with connect(url, open_timeout=10):
            print(json.dumps({"status": 101}))
    except InvalidStatus as e:
        print(json.dumps({"status": e.response.status_code}))


def main():
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(run_server())
    elif mode == "client":
        asyncio.run(run_client(sys.argv[2], float(sys.argv[3])))
    elif mode == "reject":
        asyncio.run(run_reject(sys.argv[2]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
