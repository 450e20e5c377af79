#!/usr/bin/env bash
# What one request costs, counted rather than timed: Rampart runs under
# valgrind's cachegrind (instructions, data reads and writes, simulated L1
# and an 8 MB last-level cache) while h2load sends the login page N times;
# the difference between a run of 5,000 and one of 1,000 requests, over
# 4,000, is the cost per request without the start-up. Two runs of the
# same binary agree within 1-2% (how many requests one read carries still
# varies), whatever else the machine does, where timed runs on this 2-core
# box move by 20-30%: run each binary twice, alternated.
#
#   bench/per-request/cachegrind.sh target/release/rampart            # h2, 64 x 10 streams
#   PROTO=h1 CONNS=64 bench/per-request/cachegrind.sh <binary>        # HTTP/1.1
#   STREAMS=1 bench/per-request/cachegrind.sh <binary>                # 64 streams in flight
#
# About a minute; loopback only; Rampart is stopped after each run.
source "$(dirname "$0")/common.sh"
bin=${1:?usage: cachegrind.sh RAMPART_BINARY}
PROTO=${PROTO:-h2} CONNS=${CONNS:-64} STREAMS=${STREAMS:-10}
upstream
conf=$(config cachegrind 23443 23180)
run() { # N -> the summary line's counts
  local n=$1 out=$WORK/cachegrind.$1.out
  valgrind --tool=cachegrind --cache-sim=yes --LL=8388608,16,64 --cachegrind-out-file="$out" \
    "$bin" serve --config "$conf" > "$WORK/cachegrind.log" 2>&1 &
  local vp=$!
  wait_up 23443
  local h1=(); [[ $PROTO == h1 ]] && h1=(--h1)
  timeout 600 h2load "${h1[@]}" -t1 -c"$CONNS" -m"$STREAMS" -n "$n" -H 'Accept-Encoding: gzip' \
    https://odoo.test:23443/web/login > "$WORK/cachegrind.load" 2>&1
  grep -q "$n succeeded" "$WORK/cachegrind.load" || { echo "h2load: not all $n requests succeeded (see $WORK/cachegrind.load)" >&2; kill -INT $vp; exit 1; }
  kill -INT $vp; wait $vp || true
  grep -oP '^summary: \K.*' "$out"
}
a=$(run 1000); b=$(run 5000)
python3 - "$a" "$b" <<'PY'
import sys
names = "instructions I1-misses LL-instr-misses data-reads D1-read-misses LL-read-misses data-writes D1-write-misses LL-write-misses".split()
a, b = ([int(x) for x in s.split()] for s in sys.argv[1:3])
for n, x, y in zip(names, a, b):
    print(f"{n:>16} {(y - x) / 4000:>10,.0f} per request")
PY
echo "(cg_diff $WORK/cachegrind.1000.out $WORK/cachegrind.5000.out | cg_annotate: per function)"
