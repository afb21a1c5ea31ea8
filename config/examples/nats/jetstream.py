#!/usr/bin/env python3
"""The example's JetStream stream over a plain NATS connection, for machines without the `nats`
command-line tool: the standard library only, the JetStream API's requests by hand.

    python3 config/examples/nats/jetstream.py create   # PASSERELLE_EXAMPLE, on passerelle.records.>
    python3 config/examples/nats/jetstream.py info     # how many messages it holds
    python3 config/examples/nats/jetstream.py get 1    # message 1: subject, headers, body
    python3 config/examples/nats/jetstream.py delete

NATS_ADDR=host:port names another server than 127.0.0.1:4222 (plain TCP, no credentials).
"""

import base64
import json
import os
import socket
import sys

STREAM = "PASSERELLE_EXAMPLE"
SUBJECTS = ["passerelle.records.>"]
# Repeats of a message id within this window are dropped: it must outlast the gateway's lease
# and first retries.
DUPLICATE_WINDOW_NS = 120 * 10**9


def request(subject, body):
    """Sends one JetStream API request and returns its JSON answer."""
    address = os.environ.get("NATS_ADDR", "127.0.0.1:4222")
    host, port = address.rsplit(":", 1)
    try:
        connection = socket.create_connection((host, int(port)), timeout=5)
    except OSError as error:
        sys.exit(f"cannot reach the NATS server at {address}: {error}")
    with connection:
        stream = connection.makefile("rb")
        stream.readline()  # the server's INFO
        payload = json.dumps(body).encode()
        connection.sendall(
            b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n'
            b"SUB _INBOX.example 1\r\n"
            + f"PUB {subject} _INBOX.example {len(payload)}\r\n".encode()
            + payload
            + b"\r\n"
        )
        while True:
            line = stream.readline()
            if not line:
                sys.exit("the server closed the connection")
            if line.startswith(b"-ERR"):
                sys.exit(line.decode().strip())
            if line.startswith(b"PING"):
                connection.sendall(b"PONG\r\n")
            elif line.startswith(b"HMSG"):
                # A status without a body: 503, no JetStream on this server.
                stream.read(int(line.split()[-1]) + 2)
                sys.exit("no JetStream answers on this server: start nats-server with -js")
            elif line.startswith(b"MSG"):
                size = int(line.split()[-1])
                return json.loads(stream.read(size + 2)[:size])


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else "info"
    if command == "create":
        config = {"name": STREAM, "subjects": SUBJECTS, "storage": "file", "duplicate_window": DUPLICATE_WINDOW_NS}
        answer = request(f"$JS.API.STREAM.CREATE.{STREAM}", config)
    elif command == "info":
        answer = request(f"$JS.API.STREAM.INFO.{STREAM}", {})
        if "error" not in answer:
            print(f"{STREAM}: {answer['state']['messages']} messages on {', '.join(answer['config']['subjects'])}")
            return
    elif command == "get":
        answer = request(f"$JS.API.STREAM.MSG.GET.{STREAM}", {"seq": int(sys.argv[2])})
        if "error" not in answer:
            message = answer["message"]
            print(f"subject {message['subject']}, sequence {message['seq']}, stored {message['time']}")
            print(base64.b64decode(message.get("hdrs", "")).decode().strip())
            print(base64.b64decode(message.get("data", "")).decode())
            return
    elif command == "delete":
        answer = request(f"$JS.API.STREAM.DELETE.{STREAM}", {})
    else:
        sys.exit(__doc__)
    if "error" in answer:
        sys.exit(f"JetStream: {answer['error'].get('description')} ({answer['error'].get('err_code')})")
    print(json.dumps(answer, indent=2))


if __name__ == "__main__":
    main()
