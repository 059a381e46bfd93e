#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for weir's tracing tests: it stands in for a collector.

Usage: receiver.py [--port N]   (0, the default, binds any free port)

Binds 127.0.0.1 and prints the bound port as its first line on stdout. Endpoints:

  POST   /v1/traces  an OTLP export (`content-type: application/x-protobuf`, optionally
                     gzip-encoded), decoded with the reference definitions of PyPI
                     `opentelemetry-proto`; every span is stored and an empty
                     ExportTraceServiceResponse is the answer. A body that does not decode is
                     answered 400 and counted as refused (so is any other content type: 415).
  GET    /spans      the stored spans, a JSON list (see `span_dict` for their shape)
  DELETE /spans      forgets the stored spans (the counters of /stats keep counting)
  POST   /mode       body `ok` | `fail` (answer exports 500, store nothing) | `hang` (take the
                     export and answer nothing until the mode changes; then it is handled in
                     the new mode, unless its client has gone meanwhile: then it is dropped)
  GET    /stats      {"exports": export requests received, "spans": spans stored,
                      "refused": malformed exports, "failed": exports answered 500 by
                      `fail`, "hanging": exports held by `hang` right now,
                      "abandoned": held exports whose client left before release}

Every connection has a thread of its own, so an export held by `hang` blocks nothing else.
"""

import argparse
import gzip
import json
import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MODES = ("ok", "fail", "hang")

lock = threading.Condition()
spans = []
stats = {"exports": 0, "spans": 0, "refused": 0, "failed": 0, "hanging": 0, "abandoned": 0}
mode = "ok"


def any_value(v):
    """An OTLP AnyValue as a plain JSON value."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def span_dict(span, resource, scope):
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind),
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "events": [
            {"name": e.name, "time": e.time_unix_nano, "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        "status": {"code": Status.StatusCode.Name(span.status.code), "message": span.status.message},
        "trace_state": span.trace_state,
        "resource": attributes(resource.attributes),
        "scope": scope.name,
    }


def decode(body):
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [
        span_dict(span, rs.resource, ss.scope)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]


def client_gone(sock):
    """Whether the peer closed the connection (readable with nothing to read)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json(self, value):
        self.answer(200, json.dumps(value).encode())

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def do_GET(self):
        with lock:
            if self.path == "/spans":
                payload = list(spans)
            elif self.path == "/stats":
                payload = dict(stats)
            else:
                payload = None
        if payload is None:
            self.answer(404)
        else:
            self.json(payload)

    def do_DELETE(self):
        if self.path != "/spans":
            return self.answer(404)
        with lock:
            spans.clear()
        self.answer(204)

    def do_POST(self):
        global mode
        body = self.body()
        if self.path == "/mode":
            wanted = body.decode().strip()
            if wanted not in MODES:
                return self.answer(400, f"mode is one of {MODES}".encode(), "text/plain")
            with lock:
                mode = wanted
                lock.notify_all()
            return self.answer(204)
        if self.path != "/v1/traces":
            return self.answer(404)
        self.export(body)

    def export(self, body):
        with lock:
            stats["exports"] += 1
            if mode == "hang":
                stats["hanging"] += 1
                lock.wait_for(lambda: mode != "hang")
                stats["hanging"] -= 1
                if client_gone(self.connection):
                    stats["abandoned"] += 1
                    self.close_connection = True
                    return
            current = mode
        if current == "fail":
            with lock:
                stats["failed"] += 1
            return self.answer(500, b"failing on purpose", "text/plain")
        if self.headers.get("content-type", "").split(";")[0].strip() != "application/x-protobuf":
            with lock:
                stats["refused"] += 1
            return self.answer(415, b"only application/x-protobuf", "text/plain")
        try:
            if self.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            received = decode(body)
        except (DecodeError, ValueError, OSError, EOFError) as error:
            with lock:
                stats["refused"] += 1
            return self.answer(400, f"not an ExportTraceServiceRequest: {error}".encode(), "text/plain")
        with lock:
            spans.extend(received)
            stats["spans"] += len(received)
        self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def log_message(self, format, *args):
        sys.stderr.write("receiver: " + (format % args) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
