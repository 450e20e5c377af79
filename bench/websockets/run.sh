#!/usr/bin/env bash
# Issue 11's websocket scenario: N idle websocket tunnels (default 10,000)
# through each front, held HOLD seconds (default 30); the front's memory per
# tunnel (VmRSS and Pss of its process tree, held minus before).
# Uses the shared bench's TLS files and rendered peer configs
# (../shared/bench/setup.sh first), with only the websocket upstream moved to
# our own stand-in (ws_idle.py upstream: answers 101, then stays silent) and
# the connection limits raised to fit N. Loopback only; every front is
# stopped after its run; the whole script ends by itself. A front needs two
# descriptors per tunnel: where the hard RLIMIT_NOFILE cannot be raised
# (a container: 20,000 here), the script names the TUNNELS that fit.
#
#   RAMPART=target/release/rampart bench/websockets/run.sh
#   FRONTS="nginx rampart" TUNNELS=2000 HOLD=10 bench/websockets/run.sh
set -euo pipefail
cd "$(dirname "$0")"
here=$PWD
RAMPART=${RAMPART:-$here/../../target/release/rampart}
BENCH_STATE=${BENCH_STATE:-/tmp/bench-state}
FRONTS=${FRONTS:-"nginx caddy haproxy rampart"}
TUNNELS=${TUNNELS:-10000}
HOLD=${HOLD:-30}
WS_PORT=${WS_PORT:-18172}
WS_STATE=${WS_STATE:-/tmp/rampart-websockets}
conf=$BENCH_STATE/conf
[[ -s $conf/nginx.conf && -s $BENCH_STATE/tls/ca.crt ]] || { echo "no $conf/nginx.conf: run ../shared/bench/setup.sh first" >&2; exit 1; }
# Each tunnel is two descriptors in the front (client side, Odoo side), one
# in the client and one in the upstream stand-in.
need=$((2 * TUNNELS + 96))
hard=$(ulimit -Hn)
[[ $hard == unlimited || $hard -ge $need ]] || ulimit -Hn "$need" 2>/dev/null || {
  echo "RLIMIT_NOFILE: a front needs $need descriptors for $TUNNELS tunnels, the hard limit is $hard" \
       "and cannot be raised here: TUNNELS=$(( (hard - 96) / 2 )) fits" >&2; exit 1; }
ulimit -Sn "$need"   # the hard limit stays: HAProxy raises its own to what its maxconn needs
rm -rf "$WS_STATE" && mkdir -p "$WS_STATE/rampart"
export WS_STATE
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || { echo "port $1 is in use: stop the shared bench's peers first (../shared/bench/stop-peers.sh)" >&2; exit 1; }; }

port_free "$WS_PORT"
python3 ws_idle.py upstream "$WS_PORT" & pids+=($!)
wait_port "$WS_PORT"

for front in $FRONTS; do
  case $front in
    nginx)
      port=18443; port_free $port
      sed -e "s/127.0.0.1:18072/127.0.0.1:$WS_PORT/" -e "s/worker_connections [0-9]*/worker_connections $need/" \
          -e "s/worker_rlimit_nofile [0-9]*/worker_rlimit_nofile $need/" \
          -e "s#pid .*nginx-internal.pid#pid $WS_STATE/nginx.pid#" "$conf/nginx.conf" > "$WS_STATE/nginx.conf"
      nginx -c "$WS_STATE/nginx.conf" >"$WS_STATE/nginx.log" 2>&1 & pid=$! ;;
    caddy)
      port=28443; port_free $port
      sed -e "s/127.0.0.1:18072/127.0.0.1:$WS_PORT/" "$conf/Caddyfile" > "$WS_STATE/Caddyfile"
      GOMAXPROCS=2 XDG_CONFIG_HOME="$BENCH_STATE/caddy-home" XDG_DATA_HOME="$BENCH_STATE/caddy-home" \
        caddy run --adapter caddyfile --config "$WS_STATE/Caddyfile" >"$WS_STATE/caddy.log" 2>&1 & pid=$! ;;
    haproxy)
      port=29443; port_free $port
      sed -e "s/127.0.0.1:18072/127.0.0.1:$WS_PORT/" -e "s/^\(\s*maxconn\) [0-9]*$/\1 $((TUNNELS + 64))/" \
        "$conf/haproxy.cfg" > "$WS_STATE/haproxy.cfg"
      haproxy -db -f "$WS_STATE/haproxy.cfg" >/dev/null 2>"$WS_STATE/haproxy.log" & pid=$! ;;
    rampart)
      port=31443; port_free $port
      cat > "$WS_STATE/rampart.toml" <<TOML
state_dir = "$WS_STATE/rampart"
[listen]
http = "127.0.0.1:31080"
https = "127.0.0.1:$port"
admin = "127.0.0.1:31180"
max_connections = $need
max_connections_per_client = $need
[log]
access = "$WS_STATE/rampart-access.log"
[guard]
rate = { per_second = 1000000, burst = 1000000 }
[[site]]
hosts = ["odoo.test"]
tls = { cert = "$BENCH_STATE/tls/odoo.test.crt", key = "$BENCH_STATE/tls/odoo.test.key" }
odoo = ["127.0.0.1:18069"]
websocket = ["127.0.0.1:$WS_PORT"]
max_websockets = $TUNNELS
max_websockets_per_client = $TUNNELS
[site.health_check]
path = ""
TOML
      "$RAMPART" serve --config "$WS_STATE/rampart.toml" >"$WS_STATE/rampart.log" 2>&1 & pid=$! ;;
    *) echo "unknown front $front" >&2; exit 1 ;;
  esac
  pids+=("$pid")
  wait_port "$port"
  sleep 2
  python3 ws_idle.py client --port "$port" --pid "$pid" --tunnels "$TUNNELS" --hold "$HOLD" \
    --ca "$BENCH_STATE/tls/ca.crt" --label "$front" --count-file "$WS_STATE/upstream-$WS_PORT.count" \
    | tee -a "$WS_STATE/results.jsonl" || echo "$front: no result (see above)" >&2
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  sleep 3   # the upstream sees the tunnels close before the next front
done
python3 - "$WS_STATE/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| front | tunnels held (failed) | RSS before → held MB | KB per tunnel (RSS) | KB per tunnel (Pss) |")
print("|---|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['front']} | {r['tunnels']:,} ({r['failed']}) | {r['rss_before_kb']/1024:.1f} → {r['rss_held_kb']/1024:.1f} "
          f"| {r['rss_per_tunnel_kb']:.1f} | {r['pss_per_tunnel_kb']:.1f} |")
PY
