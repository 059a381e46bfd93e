#!/usr/bin/env python3
"""A real application instrumented with the OpenTelemetry Python SDK, for weir's tracing
tests: the upstream whose spans must join the trace weir propagates to it.

Usage: app.py --otlp URL [--port N] [--propagator w3c|b3multi|b3single|all]

Binds 127.0.0.1 (port 0, the default, is any free port) and prints the bound port as its
first line on stdout. Every GET extracts the trace context from the request's headers with
the SDK's global propagator (W3C TraceContext, B3 multi-header, B3 single header, or all
three), starts a SERVER span `app GET <path>` under it and an INTERNAL span `app work` inside
that, and answers 200 with JSON: the propagation headers it received (null when absent) and
the ids of its SERVER span:

  {"traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled",
   "x-request-id", "app_trace_id", "app_span_id", "app_parent_span_id" ('' for a root)}

Spans go out through a SimpleSpanProcessor, one export per span as it ends, and both spans
end before the answer is written: when a client has its answer, the app's spans have been
exported (or the export gave up, after 1 s: so a test that makes the collector fail or hang
should give the app a collector of its own, or expect answers slowed by that second).
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATORS = {
    "w3c": [TraceContextTextMapPropagator],
    "b3multi": [B3MultiFormat],
    "b3single": [B3SingleFormat],
    "all": [TraceContextTextMapPropagator, B3MultiFormat, B3SingleFormat],
}
ECHOED = ["traceparent", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-request-id"]

tracer = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        carrier = {name.lower(): value for name, value in self.headers.items()}
        parent = propagate.extract(carrier)
        path = urlsplit(self.path).path
        with tracer.start_as_current_span(f"app GET {path}", context=parent, kind=trace.SpanKind.SERVER) as span:
            with tracer.start_as_current_span("app work", kind=trace.SpanKind.INTERNAL):
                answer = {name: carrier.get(name) for name in ECHOED}
            ids = span.get_span_context()
            answer["app_trace_id"] = format(ids.trace_id, "032x")
            answer["app_span_id"] = format(ids.span_id, "016x")
            answer["app_parent_span_id"] = format(span.parent.span_id, "016x") if span.parent else ""
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        sys.stderr.write("app: " + (format % args) + "\n")


def main():
    global tracer
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--otlp", required=True, help="the collector's traces URL, e.g. http://127.0.0.1:4318/v1/traces")
    parser.add_argument("--propagator", choices=sorted(PROPAGATORS), default="all")
    args = parser.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": "app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.otlp, timeout=1)))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(CompositePropagator([p() for p in PROPAGATORS[args.propagator]]))
    tracer = trace.get_tracer("app")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
