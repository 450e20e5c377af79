#!/usr/bin/env python3
"""Slow clients against a small Odoo worker pool (issue 10's benchmark).

Measures another client's GET /web/login latency through a front (Rampart,
nginx, ...) with no attack, then while 3 clients upload an XML-RPC body at
10 bytes/s and 2 clients request a large answer and never read it (their
receive window fills and stays shut). Against a 2-worker Odoo, a front that
hands Odoo's workers to slow clients makes the login wait or fail.

  slow_clients.py https://127.0.0.1:18443 --big /web/assets/.../web.assets_web.min.js

Loopback only; every phase is bounded in time. Prints one JSON line.
"""
import argparse, json, socket, ssl, statistics, sys, threading, time
from urllib.parse import urlsplit

ap = argparse.ArgumentParser()
ap.add_argument("front", help="https://host:port or http://host:port")
ap.add_argument("--host", default="localhost", help="Host header / SNI")
ap.add_argument("--big", required=True, help="path of a large answer (an asset bundle)")
ap.add_argument("--samples", type=int, default=60)
ap.add_argument("--phase", type=float, default=60, help="seconds a phase may take at most")
ap.add_argument("--label", default="")
a = ap.parse_args()
u = urlsplit(a.front)
assert u.hostname.startswith("127."), "loopback only"
tls = u.scheme == "https"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def conn(rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect((u.hostname, u.port))
    return ctx.wrap_socket(s, server_hostname=a.host) if tls else s


def login_latencies(n):
    out = []
    end = time.monotonic() + a.phase
    for _ in range(n):
        if time.monotonic() > end:
            break
        t = time.monotonic()
        try:
            s = conn()
            s.settimeout(10)
            s.sendall(b"GET /web/login HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % a.host.encode())
            d = s.recv(64)
            ok = d.startswith(b"HTTP/1.") and b" 200 " in d[:16]
            out.append(time.monotonic() - t if ok else float("inf"))
            s.close()
        except Exception:
            out.append(float("inf"))
        time.sleep(0.1)
    return out


stop = threading.Event()


def slow_upload():
    body = b"<?xml version='1.0'?><methodCall><methodName>version</methodName></methodCall>" + b" " * 4000
    try:
        s = conn()
        s.sendall(b"POST /xmlrpc/2/common HTTP/1.1\r\nHost: %s\r\nContent-Type: text/xml\r\n"
                  b"Content-Length: %d\r\n\r\n" % (a.host.encode(), len(body)))
        for i in range(0, len(body), 10):
            if stop.is_set():
                break
            s.sendall(body[i:i + 10])
            time.sleep(1)
    except Exception:
        pass


def never_reads():
    try:
        s = conn(rcvbuf=4096)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (a.big.encode(), a.host.encode()))
        stop.wait(600)
        s.close()
    except Exception:
        pass


def summary(xs):
    ok = sorted(x for x in xs if x != float("inf"))
    p = lambda q: round(ok[min(len(ok) - 1, int(q * len(ok)))] * 1000, 1) if ok else None
    return {"samples": len(xs), "p50_ms": p(0.5), "p99_ms": p(0.99), "max_ms": p(1.0), "failed": len(xs) - len(ok)}


base = login_latencies(a.samples)
attackers = [threading.Thread(target=slow_upload, daemon=True) for _ in range(3)]
attackers += [threading.Thread(target=never_reads, daemon=True) for _ in range(2)]
for t in attackers:
    t.start()
time.sleep(3)
under = login_latencies(a.samples)
stop.set()
b, w = summary(base), summary(under)
ratio = round(w["p99_ms"] / b["p99_ms"], 2) if b["p99_ms"] and w["p99_ms"] else None
print(json.dumps({"front": a.label or a.front, "no_attack": b, "attack": w, "p99_ratio": ratio}))
