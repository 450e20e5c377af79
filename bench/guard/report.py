"""Tables for bench/login-burst.sh: what reached Odoo per address.

Reads the work dir the script filled: <label>-<addr>.codes (one HTTP status
a line), <label>.times (burst start and end, unix seconds), rampart.bans
(`rampart bans list --json`), f2b/bans.txt ("<unix time> <ip>" per ban),
and the two Odoo logs (one "Login failed ... from ADDR" line per attempt
that reached the password check).
"""

import collections
import datetime
import json
import os
import re
import sys

work, max_, burst, rampart_log, f2b_log = sys.argv[1:6]
addrs = sys.argv[6:]
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* Login failed for db:\S+ login:\S+ from (\S+)\s*$")


def failures(path):
    """addr -> list of unix times of the failed logins Odoo logged."""
    out = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                out[m.group(2)].append(t.replace(tzinfo=datetime.timezone.utc).timestamp())
    return out


def codes(label, addr):
    with open(os.path.join(work, f"{label}-{addr}.codes")) as f:
        c = collections.Counter(line.strip() for line in f if line.strip())
    return ", ".join(f"{n}x{code}" for code, n in sorted(c.items()))


def times(label):
    with open(os.path.join(work, f"{label}.times")) as f:
        return [float(x) for x in f.read().split()]


rampart_seen = failures(rampart_log)
with open(os.path.join(work, "rampart.bans")) as f:
    banned = {b["addr"] for b in json.load(f)}
t0, t1 = times("rampart")
print(f"\nBurst: {burst} concurrent failed POST /web/login per address, max = {max_}\n")
print(f"Rampart (guard in the request path), burst took {t1 - t0:.2f} s")
print("| address | answers | reached Odoo | banned |")
print("|---|---|---|---|")
for a in addrs:
    print(f"| {a} | {codes('rampart', a)} | {len(rampart_seen.get(a, []))} | {'yes' if a in banned else 'no'} |")

f2b_seen = failures(f2b_log)
bans = {}
path = os.path.join(work, "f2b", "bans.txt")
if os.path.exists(path):
    with open(path) as f:
        for line in f:
            t, ip = line.split()
            bans.setdefault(ip, float(t))
t0, t1 = times("f2b")
print(f"\nfail2ban on Odoo's log (record-only action), burst took {t1 - t0:.2f} s")
print("| address | answers | reached Odoo | logged before the ban | ban after burst start |")
print("|---|---|---|---|---|")
for a in addrs:
    seen = f2b_seen.get(a, [])
    ban = bans.get(a)
    if ban is None:
        before, delay = len(seen), "no ban"
    else:
        # Odoo's log has millisecond stamps; the ban time is the action's clock.
        before, delay = sum(1 for t in seen if t <= ban), f"{ban - t0:.2f} s"
    print(f"| {a} | {codes('f2b', a)} | {len(seen)} | {before} | {delay} |")
