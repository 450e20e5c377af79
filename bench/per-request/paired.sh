#!/usr/bin/env bash
# Two Rampart binaries side by side, each loaded by its own client at the
# same time (h2load -c32 -m10, or wrk -c32), ROUNDS rounds with the start
# order alternated; prints each one's requests per CPU-second (from
# /proc/PID/stat) and B/A. Both see the same machine at the same moment,
# so a change of a few percent shows as a ratio that stays on one side of
# 1.0, where two runs minutes apart differ by 20-30% on this box.
#
#   bench/per-request/paired.sh old/rampart new/rampart h2 [SECS=6] [ROUNDS=8]
#
# Loopback only; every run is bounded by SECS; both are stopped each round.
source "$(dirname "$0")/common.sh"
A=${1:?usage: paired.sh BIN_A BIN_B h1|h2 [SECS] [ROUNDS]} B=${2:?} PROTO=${3:?}
SECS=${4:-6} ROUNDS=${5:-8}
upstream
ca=$(config paired-a 21443 21180); cb=$(config paired-b 22443 22180)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # PORT SECS OUT
  local url=https://odoo.test:$1/web/login
  if [[ $PROTO == h2 ]]; then timeout $(($2 + 20)) h2load -t1 -c32 -m10 -D "$2" -H 'Accept-Encoding: gzip' "$url" > "$3" 2>&1
  else timeout $(($2 + 20)) wrk -t1 -c32 -d"${2}s" -H 'Accept-Encoding: gzip' "$url" > "$3" 2>&1; fi
}
served() { if [[ $PROTO == h2 ]]; then grep -oP 'requests: \d+ total, \d+ started, \K\d+' "$1"; else grep -oP '^\s*\K\d+(?= requests in)' "$1"; fi; }
for r in $(seq 1 "$ROUNDS"); do
  if ((r % 2)); then first=$A second=$B fc=$ca sc=$cb; else first=$B second=$A fc=$cb sc=$ca; fi
  "$first" serve --config "$fc" > "$WORK/paired-first.log" 2>&1 & p1=$!
  "$second" serve --config "$sc" > "$WORK/paired-second.log" 2>&1 & p2=$!
  if ((r % 2)); then pa=$p1 pb=$p2; else pa=$p2 pb=$p1; fi
  wait_up 21443; wait_up 22443
  load 21443 2 /dev/null & l1=$!
  load 22443 2 /dev/null & l2=$!
  wait $l1 $l2
  a0=$(cpu $pa) b0=$(cpu $pb)
  load 21443 "$SECS" "$WORK/paired-a.txt" & l1=$!
  load 22443 "$SECS" "$WORK/paired-b.txt" & l2=$!
  wait $l1 $l2
  a1=$(cpu $pa) b1=$(cpu $pb)
  kill $pa $pb; wait $pa $pb 2>/dev/null || true
  ra=$(served "$WORK/paired-a.txt") rb=$(served "$WORK/paired-b.txt")
  python3 -c "
ra, rb, ca, cb = $ra, $rb, $((a1 - a0)) / 100, $((b1 - b0)) / 100
print(f'round $r  A {ra / $SECS:8.0f} req/s {ra / ca:8.0f} req/CPU-s  |  B {rb / $SECS:8.0f} req/s {rb / cb:8.0f} req/CPU-s  |  B/A {(rb / cb) / (ra / ca):.3f}')"
done
