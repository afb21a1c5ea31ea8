#!/usr/bin/env python3
"""A fast local recipient for the load benchmark's batch leg: answers every batch 200 with one
result (200) per record, naming each record by its idempotency key, and a single POST 200.

    python3 benches/load/batch_recipient.py PORT [PORT...]

nginx cannot answer per record, so this one does, with the standard library only: one thread
per connection (HTTP/1.1 keep-alive), the keys found with a regular expression rather than by
parsing each body (the record bodies are never looked at). It is slower than nginx, so the
batched numbers it gives are a floor.
"""

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = re.compile(rb'"idempotency_key":"([^"]*)"')


class Recipient(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm holds the body
    # for the client's delayed acknowledgement (40 ms per answer).
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Type", "").startswith("application/vnd.passerelle.batch+json"):
            results = [{"idempotency_key": k.decode(), "status": 200} for k in KEY.findall(body)]
            answer = json.dumps({"results": results}).encode()
        else:
            answer = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    servers = [ThreadingHTTPServer(("127.0.0.1", int(port)), Recipient) for port in sys.argv[1:]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
