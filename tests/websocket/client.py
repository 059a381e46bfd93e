#!/usr/bin/env python3
"""A real WebSocket client (PyPI `websockets`) for weir's integration tests.

Usage: client.py URL
Opens URL, reads the server's greeting, sends three text messages and one 1 MiB binary
message, reads each echo, closes cleanly, and prints one JSON line:
{"greeting": ..., "echoes": [...], "binary_echoed": true|false, "close_code": N}.
Every step has a 10 s deadline; a failed handshake prints {"error": ...} and exits 1.
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


async def run(url):
    step = 10
    ws = await asyncio.wait_for(websockets.connect(url, max_size=None), step)
    try:
        greeting = await asyncio.wait_for(ws.recv(), step)
        echoes = []
        for text in ["one", "two", "three"]:
            await ws.send(text)
            echoes.append(await asyncio.wait_for(ws.recv(), step))
        blob = os.urandom(1024 * 1024)
        await ws.send(blob)
        binary_echoed = (await asyncio.wait_for(ws.recv(), step)) == blob
    finally:
        await asyncio.wait_for(ws.close(), step)
    code = getattr(ws, "close_code", None)
    return {"greeting": greeting, "echoes": echoes, "binary_echoed": binary_echoed,
            "close_code": code}


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: client.py URL\n")
        sys.exit(2)
    try:
        result = asyncio.run(run(sys.argv[1]))
    except Exception as e:  # the test reads what went wrong
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
