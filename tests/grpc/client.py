#!/usr/bin/env python3
"""A real gRPC client for weir's integration tests; pairs with server.py.

Usage: client.py TARGET   (host:port)
Makes every call once and prints one JSON line:

  {"unary": str, "big_len": int, "trailer": str|null, "streamed": int, "stream_last": str,
   "bidi": [str], "error_code": str, "error_details": str}

Exits 1 (with the reason on stderr) when a call fails in a way the server never answers
(anything but the expected NOT_FOUND), 3 when grpcio is not importable.
"""

import json
import sys

try:
    import grpc
except ImportError:
    sys.stderr.write("python3 cannot import grpc (grpcio): run scripts/test, which installs it\n")
    sys.exit(3)

DEADLINE = 15  # seconds, per call
STREAMED = 100
BIDI = ["one", "two", "three", "four", "five"]
BIG = 1 << 20  # a unary message bigger than the default HTTP/2 windows


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: client.py TARGET\n")
        sys.exit(2)
    options = [
        ("grpc.enable_http_proxy", 0),  # talk to TARGET itself, whatever the environment says
        ("grpc.max_receive_message_length", 16 << 20),
        ("grpc.max_send_message_length", 16 << 20),
    ]
    channel = grpc.insecure_channel(sys.argv[1], options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=DEADLINE)
    except grpc.FutureTimeoutError:
        sys.stderr.write(f"could not connect to {sys.argv[1]} within {DEADLINE}s\n")
        sys.exit(1)
    out = {}
    try:
        say = channel.unary_unary("/demo.Echo/Say", request_serializer=None, response_deserializer=None)
        reply, call = say.with_call(b"hello through weir", timeout=DEADLINE)
        out["unary"] = reply.decode()
        out["trailer"] = dict(call.trailing_metadata() or ()).get("x-echo-trailer")

        big, _ = say.with_call(b"z" * BIG, timeout=DEADLINE)
        out["big_len"] = len(big) if big == b"z" * BIG else -1

        count = channel.unary_stream("/demo.Echo/Count", request_serializer=None, response_deserializer=None)
        messages = [m.decode() for m in count(str(STREAMED).encode(), timeout=DEADLINE)]
        out["streamed"] = len(messages)
        out["stream_last"] = messages[-1] if messages else ""

        chat = channel.stream_stream("/demo.Echo/Chat", request_serializer=None, response_deserializer=None)
        out["bidi"] = [m.decode() for m in chat(iter([m.encode() for m in BIDI]), timeout=DEADLINE)]
    except grpc.RpcError as e:
        sys.stderr.write(f"unexpected RPC failure: {e.code().name}: {e.details()}\n")
        print(json.dumps(out), flush=True)
        sys.exit(1)

    missing = channel.unary_unary("/demo.Echo/Missing", request_serializer=None, response_deserializer=None)
    try:
        missing(b"?", timeout=DEADLINE)
        sys.stderr.write("/demo.Echo/Missing succeeded; it must fail with NOT_FOUND\n")
        print(json.dumps(out), flush=True)
        sys.exit(1)
    except grpc.RpcError as e:
        out["error_code"] = e.code().name
        out["error_details"] = e.details()
    channel.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
