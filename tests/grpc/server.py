#!/usr/bin/env python3
"""A real gRPC server for weir's integration tests (no codegen: generic handlers, raw bytes).

Usage: server.py PORT_FILE
Binds 127.0.0.1:0 (insecure), writes the bound port to PORT_FILE (atomically), and serves
until killed:

  /demo.Echo/Say      unary: echoes the request; trailing metadata x-echo-trailer: yes
  /demo.Echo/Count    server streaming: the request is an ASCII number N; N messages "0".."N-1"
  /demo.Echo/Chat     bidi streaming: echoes every message it receives
  /demo.Echo/Missing  unary: aborts with NOT_FOUND, details "no such thing"
"""

import os
import sys
from concurrent import futures

try:
    import grpc
except ImportError:
    sys.stderr.write("python3 cannot import grpc (grpcio): run scripts/test, which installs it\n")
    sys.exit(3)


def ident(b):
    return b


def say(request, context):
    context.set_trailing_metadata((("x-echo-trailer", "yes"),))
    return request


def count(request, context):
    for i in range(int(request.decode())):
        yield str(i).encode()


def chat(requests, context):
    for message in requests:
        yield message


def missing(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: server.py PORT_FILE\n")
        sys.exit(2)
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say, request_deserializer=ident, response_serializer=ident),
        "Count": grpc.unary_stream_rpc_method_handler(count, request_deserializer=ident, response_serializer=ident),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, request_deserializer=ident, response_serializer=ident),
        "Missing": grpc.unary_unary_rpc_method_handler(missing, request_deserializer=ident, response_serializer=ident),
    }
    options = [("grpc.max_receive_message_length", 16 << 20), ("grpc.max_send_message_length", 16 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.stderr.write("could not bind 127.0.0.1:0\n")
        sys.exit(1)
    server.start()
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, sys.argv[1])
    server.wait_for_termination()


if __name__ == "__main__":
    main()
