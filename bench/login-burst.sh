#!/usr/bin/env bash
# A burst of failed logins: how many reach Odoo per client address, with
# Rampart's guard in front, and with fail2ban watching Odoo's log instead.
#
#   bench/login-burst.sh                      # 200 concurrent per address, 4 addresses
#   BURST=500 ADDRS="127.0.0.2 127.0.0.3" bench/login-burst.sh
#
# Both runs use the Odoo-like test upstream (`odoo-fixture`, crates/testkit),
# which writes Odoo's "Login failed for db:X login:Y from ADDR" lines; a line
# in its log is an attempt that reached Odoo's password check.
#
# 1. Rampart (release build) in front of the fixture, [guard] with
#    login_failures.max = MAX and rate limits raised out of the way, so the
#    failure counter alone decides. Each address fires BURST concurrent
#    POST /web/login (wrong password, one connection each) over HTTPS.
# 2. fail2ban 1.x in a private test instance (own config dir, socket,
#    pidfile, in-memory db) watching the fixture's log with the odoo-login
#    filter printed by `rampart fail2ban`, maxretry = MAX, and an action that
#    only appends "<unix time> <ip>" to a file: there is no firewall to change
#    here. The same bursts go straight to the fixture, as they would through
#    a proxy that does not limit, with Odoo logging the client address.
#    "Before the ban" counts the log lines stamped earlier than the moment
#    the action ran; with a real firewall action the later ones would have
#    been cut off too, but the attempts logged before the ban had already
#    been checked by Odoo.
#
# Source addresses are bound with curl --interface (Linux routes all of
# 127.0.0.0/8 to lo). Needs curl, python3, fail2ban (scripts/test.sh
# installs it); builds into CARGO_TARGET_DIR (default /work/target-release).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-/work/target-release}
RAMPART=${RAMPART_BIN:-$target/release/rampart}
FIXTURE=${FIXTURE_BIN:-$target/release/odoo-fixture}
BURST=${BURST:-200}
ADDRS=${ADDRS:-"127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5"}
MAX=${MAX:-10}
HOST=erp.bench.test

for tool in curl python3 fail2ban-client; do
  command -v "$tool" >/dev/null || { echo "login-burst: $tool is needed" >&2; exit 2; }
done
if [ -z "${NO_BUILD:-}" ]; then
  # cargo rebuilds only what is stale.
  (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -q -p rampart --bin rampart \
     && CARGO_TARGET_DIR=$target cargo build --release -q -p rampart-testkit --bin odoo-fixture)
fi

work=$(mktemp -d /tmp/login-burst.XXXXXX)
pids=()
cleanup() {
  [ -S "$work/f2b/fail2ban.sock" ] && fail2ban-client -c "$work/f2b" stop >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "login-burst: nothing listens on port $1" >&2; exit 1
}

# start_fixture NAME -> sets fx_http, fx_log
start_fixture() {
  fx_http=$(free_port); local ws; ws=$(free_port)
  fx_log=$work/$1-odoo.log
  : >"$fx_log"
  "$FIXTURE" --http "127.0.0.1:$fx_http" --ws "127.0.0.1:$ws" --log "$fx_log" >"$work/$1-fixture.out" 2>&1 &
  pids+=($!)
  fx_ws=$ws
  wait_port "$fx_http"
}

# burst LABEL ADDR URL [curl args...]: BURST concurrent POSTs from ADDR; one status code a line
burst() {
  local label=$1 addr=$2 url=$3; shift 3
  curl -s --no-progress-meter -Z --parallel-max "$BURST" --parallel-immediate --http1.1 \
       --interface "$addr" -o /dev/null -w '%{http_code}\n' \
       -H 'Content-Type: application/x-www-form-urlencoded' -d 'login=admin&password=wrong' \
       "$@" "$url?try=[1-$BURST]" >"$work/$label-$addr.codes" || true
}

fire_all() {
  local label=$1; shift
  local t0 t1 bp=()
  t0=$(now)
  for a in $ADDRS; do burst "$label" "$a" "$@" & bp+=($!); done
  wait "${bp[@]}"
  t1=$(now)
  echo "$t0 $t1" >"$work/$label.times"
}

# ---- 1. Rampart ------------------------------------------------------------
start_fixture rampart
https=$(free_port); http=$(free_port); admin=$(free_port)
cat >"$work/rampart.toml" <<TOML
state_dir = "$work/rampart-state"

[listen]
https = "127.0.0.1:$https"
http = "127.0.0.1:$http"
admin = "127.0.0.1:$admin"

[log]
access = "$work/rampart-access.log"

[guard]
# Out of the way: the failure counter alone decides here (the default
# login_rate, 10 a minute, would refuse most of a burst on its own).
rate = { per_second = 100000, burst = 100000 }
login_rate = { per_minute = 1000000, burst = 100000 }
login_failures = { max = $MAX, within = "60s", ban = "15m" }

[[site]]
hosts = ["$HOST"]
tls = "local"
odoo = ["127.0.0.1:$fx_http"]
websocket = ["127.0.0.1:$fx_ws"]
TOML
RAMPART_LOG=warn "$RAMPART" serve --config "$work/rampart.toml" 2>"$work/rampart.err" &
pids+=($!)
wait_port "$https"; wait_port "$admin"
fire_all rampart "https://$HOST:$https/web/login" \
  --cacert "$work/rampart-state/ca/root.pem" --resolve "$HOST:$https:127.0.0.1"
"$RAMPART" bans list --json --config "$work/rampart.toml" >"$work/rampart.bans"
rampart_log=$fx_log

# ---- 2. fail2ban on the fixture's log --------------------------------------
start_fixture f2b
f2b=$work/f2b
mkdir -p "$f2b/filter.d" "$f2b/action.d"
"$RAMPART" fail2ban --config "$work/rampart.toml" --odoo-log "$fx_log" \
  | awk '/^# ---- /{on = ($0 ~ /filter.d\/odoo-login.conf/); next} on' >"$f2b/filter.d/odoo-login.conf"
cat >"$f2b/fail2ban.conf" <<CONF
[Definition]
loglevel = INFO
logtarget = $f2b/fail2ban.log
socket = $f2b/fail2ban.sock
pidfile = $f2b/fail2ban.pid
dbfile = :memory:
CONF
cat >"$f2b/action.d/record.conf" <<'CONF'
[Definition]
actionstart =
actionstop =
actioncheck =
actionban = echo "$(date +%%s.%%N) <ip>" >> <file>
actionunban =
CONF
cat >"$f2b/jail.conf" <<CONF
[DEFAULT]
# The burst comes from loopback addresses; nothing is ignored.
ignoreself = false
ignoreip =
backend = polling

[odoo-login]
enabled = true
filter = odoo-login
logpath = $fx_log
maxretry = $MAX
findtime = 60
bantime = 900
action = record[file="$f2b/bans.txt"]
CONF
fail2ban-client -c "$f2b" -x start >"$f2b/start.out" 2>&1 \
  || { cat "$f2b/start.out" "$f2b/fail2ban.log" >&2; exit 1; }
for _ in $(seq 1 100); do
  fail2ban-client -c "$f2b" status odoo-login >/dev/null 2>&1 && break
  sleep 0.1
done
fire_all f2b "http://127.0.0.1:$fx_http/web/login"
# fail2ban polls the file about once a second; give it time to act on all.
n_addrs=$(wc -w <<<"$ADDRS")
for _ in $(seq 1 150); do
  [ "$(wc -l <"$f2b/bans.txt" 2>/dev/null || echo 0)" -ge "$n_addrs" ] && break
  sleep 0.1
done

python3 "$here/guard/report.py" "$work" "$MAX" "$BURST" "$rampart_log" "$fx_log" $ADDRS
