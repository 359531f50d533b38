#!/usr/bin/env python3
"""How the server treats a kept-alive HTTP/1.1 connection: for a streamed and a
non-streamed chat request, send it on a raw socket, read the response to its end, then see
whether the server closes the connection (and how long after the response ended) and
whether a second request on the same socket is answered. Standard library only; talks to
127.0.0.1 only; every wait is bounded.

Usage: wire_probe.py PORT
"""
from __future__ import annotations

import json
import socket
import sys
import time

HOST = "127.0.0.1"


def request(stream: bool) -> bytes:
    body = json.dumps({
        "model": "m", "stream": stream, "max_tokens": 4, "ignore_eos": True,
        "messages": [{"role": "user", "content": "Say hello."}],
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def read_response(sock: socket.socket) -> tuple[dict[str, str], bytes] | None:
    """One HTTP/1.1 response (chunked or Content-Length); None if the peer closed first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    headers[":status"] = lines[0]
    body = rest
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while not body.endswith(b"0\r\n\r\n"):  # good enough for a probe: last chunk + no trailers
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed inside a chunked body")
            body += d
    else:
        n = int(headers.get("content-length", "0"))
        while len(body) < n:
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("closed inside a body")
            body += d
    return headers, body


def probe(port: int, stream: bool) -> str:
    s = socket.create_connection((HOST, port), timeout=30)
    s.sendall(request(stream))
    r = read_response(s)
    if r is None:
        return f"{'stream' if stream else 'non-stream'}: no response"
    headers, _ = r
    t_end = time.monotonic()
    s.settimeout(1.0)
    closed = None
    try:
        closed = s.recv(1) == b""  # EOF: the server closed its side
    except socket.timeout:
        closed = False
    except ConnectionResetError:
        closed = True
    after_ms = (time.monotonic() - t_end) * 1e3
    second = "not tried"
    if not closed:
        s.settimeout(30)
        try:
            s.sendall(request(stream))
            r2 = read_response(s)
            second = "answered" if r2 else "connection closed without a response"
        except OSError as e:
            second = f"failed: {e}"
    else:
        try:
            s.sendall(request(stream))  # what a client reusing it would do
            r2 = read_response(s)
            second = "answered (!)" if r2 else "dead socket: write accepted, then EOF, no response"
        except OSError as e:
            second = f"dead socket: {e}"
    s.close()
    return (f"{'streamed' if stream else 'non-streamed'}: {headers[':status']}; "
            f"Connection: {headers.get('connection', '(absent)')}; Keep-Alive: {headers.get('keep-alive', '(absent)')}; "
            f"server closed the connection after the response: {'yes' if closed else 'no'}"
            f"{f' (EOF {after_ms:.1f} ms after the last byte)' if closed else ' (open 1 s later)'}; "
            f"second request on the same socket: {second}")


def main() -> int:
    port = int(sys.argv[1])
    for stream in (True, False):
        print(probe(port, stream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
