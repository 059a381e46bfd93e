#!/usr/bin/env python3
"""A real WebSocket server (PyPI `websockets`) for weir's integration tests.

Usage: server.py PORT_FILE SEEN_FILE
Binds 127.0.0.1:0, writes the bound port to PORT_FILE (atomically) and serves until killed.
For every handshake it appends one JSON line to SEEN_FILE with the request's path and the
header fields it saw (lower-cased names). Each connection is greeted with `hello PATH`
(sent at once, so it can arrive with the 101), then every message is echoed back.
"""

import asyncio
import json
import os
import sys

try:
    import websockets
except ImportError:
    sys.stderr.write("python3 cannot import websockets: run scripts/test, which installs it\n")
    sys.exit(3)


def handshake(ws):
    """(path, headers) of the opening handshake, in both the new and the legacy API."""
    request = getattr(ws, "request", None)
    if request is not None:
        return request.path, request.headers
    return ws.path, ws.request_headers


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: server.py PORT_FILE SEEN_FILE\n")
        sys.exit(2)
    port_file, seen_file = sys.argv[1], sys.argv[2]

    async def handler(ws, *_legacy_path):
        path, headers = handshake(ws)
        fields = {}
        for name, value in headers.raw_items():
            fields.setdefault(name.lower(), []).append(value)
        with open(seen_file, "a") as seen:
            seen.write(json.dumps({"path": path, "headers": fields}) + "\n")
        await ws.send("hello " + path)
        async for message in ws:
            await ws.send(message)

    async def serve():
        async with websockets.serve(handler, "127.0.0.1", 0, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            tmp = port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(port))
            os.rename(tmp, port_file)
            await asyncio.Future()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
