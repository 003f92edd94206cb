#!/usr/bin/env python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Hostile and busy scrapers for the agent's /metrics endpoint (loopback only).

  http_flood.py hold PORT N READY_FILE   open N connections, half of them send half a
                                         request, the rest nothing; touch READY_FILE and
                                         keep them until killed
  http_flood.py burst PORT N             N concurrent GET /metrics; prints
                                         "answered A refused R hung H" (hung: neither an
                                         HTTP answer nor a close within 15 s)
"""
import selectors
import socket
import sys
import time

ADDR = "127.0.0.1"


def hold(port, n, ready):
    socks = []
    for i in range(n):
        s = socket.create_connection((ADDR, port), timeout=5)
        if i % 2:
            s.sendall(b"GET /metr")
        socks.append(s)
    open(ready, "w").close()
    while True:
        time.sleep(3600)


def burst(port, n):
    sel = selectors.DefaultSelector()
    state = {}
    refused = 0
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((ADDR, port))
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
            s.close()
            continue
        state[s] = b""
        sel.register(s, selectors.EVENT_WRITE)
    answered = 0
    deadline = time.monotonic() + 15
    while state and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                if ev & selectors.EVENT_WRITE:
                    s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
            except OSError:
                chunk = None
            if chunk:
                state[s] += chunk
                continue
            # Closed (or reset): an HTTP status line means answered.
            if state[s].startswith(b"HTTP/1.1 ") or state[s].startswith(b"HTTP/1.0 "):
                answered += 1
            else:
                refused += 1
            sel.unregister(s)
            s.close()
            del state[s]
    print(f"answered {answered} refused {refused} hung {len(state)}")


if __name__ == "__main__":
    mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == "hold":
        hold(port, n, sys.argv[4])
    else:
        burst(port, n)
