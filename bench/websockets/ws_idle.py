#!/usr/bin/env python3
"""Idle websocket tunnels through a TLS front, for issue 11.

  ws_idle.py upstream PORT
      A websocket worker stand-in on 127.0.0.1:PORT: answers every upgrade
      with 101 (RFC 6455 accept key) and then holds the connection, silent,
      until the other side closes it. Counts what it holds in PORT.count.
  ws_idle.py client --port P --pid PID --tunnels N --hold S --label L
      Opens N tunnels to https://odoo.test:P/websocket (TLS, HTTP/1.1
      upgrade), holds them S seconds, samples the front's memory (VmRSS and
      Pss of PID and its children) before and while holding, prints one JSON
      line. Bounded: the whole run stops after S + 120 s.

Only the standard library: the point is the front's memory, not the client.
"""
import argparse, asyncio, base64, hashlib, json, os, resource, ssl, sys, time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError) as e:
        sys.exit(f"RLIMIT_NOFILE is {soft}/{hard}; {need} file descriptors needed ({e}): run as root or raise it")


async def upstream(port):
    held = 0
    count_file = f"{os.environ.get('WS_STATE', '/tmp')}/upstream-{port}.count"

    async def serve(reader, writer):
        nonlocal held
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except Exception:
            writer.close()
            return
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if not key:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            writer.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        held += 1
        try:
            while await reader.read(4096):
                pass
        except Exception:
            pass
        held -= 1
        writer.close()

    async def report():
        while True:
            with open(count_file, "w") as f:
                f.write(str(held))
            await asyncio.sleep(0.5)

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    asyncio.get_running_loop().create_task(report())
    async with server:
        await server.serve_forever()


def tree(pid):
    """pid and its descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def memory_kb(pid):
    rss = pss = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


async def client(a):
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    gate = asyncio.Semaphore(a.parallel)
    conns, failures = [], []

    async def one(i):
        async with gate:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", a.port, ssl=ctx, server_hostname=a.host), 30)
                key = base64.b64encode(os.urandom(16)).decode()
                w.write((f"GET /websocket HTTP/1.1\r\nHost: {a.host}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\nOrigin: https://{a.host}\r\n\r\n").encode())
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
                if not head.startswith(b"HTTP/1.1 101"):
                    failures.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                    w.close()
                    return
                conns.append(w)
            except Exception as e:
                failures.append(type(e).__name__)

    before = memory_kb(a.pid)
    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(a.tunnels)))
    opened = time.monotonic() - t0
    peak_rss = peak_pss = 0
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        rss, pss = memory_kb(a.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        await asyncio.sleep(1)
    held_up = None
    if a.count_file and os.path.exists(a.count_file):
        held_up = int(open(a.count_file).read() or 0)
    for w in conns:
        w.close()
    n = max(len(conns), 1)
    print(json.dumps({
        "front": a.label, "tunnels": len(conns), "failed": len(failures),
        "failures": sorted(set(failures))[:5], "held_at_upstream": held_up,
        "open_s": round(opened, 1), "hold_s": a.hold,
        "rss_before_kb": before[0], "rss_held_kb": peak_rss,
        "pss_before_kb": before[1], "pss_held_kb": peak_pss,
        "rss_per_tunnel_kb": round((peak_rss - before[0]) / n, 1),
        "pss_per_tunnel_kb": round((peak_pss - before[1]) / n, 1),
    }), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upstream")
    u.add_argument("port", type=int)
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--pid", type=int, required=True)
    c.add_argument("--tunnels", type=int, default=10000)
    c.add_argument("--hold", type=int, default=30)
    c.add_argument("--parallel", type=int, default=256)
    c.add_argument("--host", default="odoo.test")
    c.add_argument("--ca", required=True)
    c.add_argument("--label", default="front")
    c.add_argument("--count-file")
    a = p.parse_args()
    if a.cmd == "upstream":
        raise_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        asyncio.run(upstream(a.port))
    else:
        raise_nofile(a.tunnels + 1024)
        # Opening is bounded at 10 tunnels a second (a loaded 2-core box
        # does 30-50), holding by --hold.
        bound = a.hold + 120 + a.tunnels // 10
        try:
            asyncio.run(asyncio.wait_for(client(a), bound))
        except asyncio.TimeoutError:
            sys.exit(f"{a.label}: the run did not finish within {bound} s")


if __name__ == "__main__":
    main()
