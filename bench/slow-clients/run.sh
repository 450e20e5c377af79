#!/usr/bin/env bash
# Issue 10's slow-clients benchmark: another client's /web/login latency
# through each front, with and without 3 slow uploads and 2 clients that
# never read, in front of a 2-worker Odoo (a real one: ../shared/odoo-real,
# or any Odoo-like upstream at ODOO). Loopback only, bounded in time.
#
#   RAMPART=target/release/rampart ODOO=127.0.0.1:8069 bench/slow-clients/run.sh
set -euo pipefail
cd "$(dirname "$0")"
ODOO=${ODOO:-127.0.0.1:8069}
ODOO_WS=${ODOO_WS:-127.0.0.1:8072}
RAMPART=${RAMPART:-../../target/release/rampart}
STATE=${STATE:-/tmp/rampart-slow-clients}
FRONTS=${FRONTS:-"direct nginx rampart"}
# Odoo's data_dir, for the X-Accel-Redirect answers of an Odoo with x_sendfile.
DATA_DIR=${DATA_DIR:-/opt/odoo-real/data}
rm -rf "$STATE" && mkdir -p "$STATE"
big=$(curl -s "http://$ODOO/web/login" | grep -o '/web/assets/[^"]*\.js' | tail -1)
[ -n "$big" ] || { echo "no asset bundle found on http://$ODOO/web/login" >&2; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$STATE/key.pem" -out "$STATE/cert.pem" 2>/dev/null
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
for front in $FRONTS; do
  case $front in
    direct) url="http://$ODOO" ;;
    nginx)
      sed -e "s#@STATE@#$STATE#g" -e "s#@ODOO@#$ODOO#" -e "s#@ODOO_WS@#$ODOO_WS#" -e "s#@PORT@#48443#" -e "s#@DATA_DIR@#$DATA_DIR#" \
        nginx-odoo.conf >"$STATE/nginx.conf"
      nginx -c "$STATE/nginx.conf" & pids+=($!)
      wait_port 48443; url=https://127.0.0.1:48443 ;;
    rampart)
      cat >"$STATE/rampart.toml" <<TOML
state_dir = "$STATE/rampart"
[listen]
http = "127.0.0.1:47080"
https = "127.0.0.1:47443"
admin = "127.0.0.1:47180"
[log]
access = "off"
[[site]]
hosts = ["localhost"]
tls = { cert = "$STATE/cert.pem", key = "$STATE/key.pem" }
odoo = ["$ODOO"]
websocket = ["$ODOO_WS"]
workers = 2
TOML
      [ -d "$DATA_DIR" ] && echo "data_dir = \"$DATA_DIR\"" >>"$STATE/rampart.toml"
      "$RAMPART" serve --config "$STATE/rampart.toml" 2>"$STATE/rampart.log" & pids+=($!)
      wait_port 47443; url=https://127.0.0.1:47443 ;;
  esac
  python3 slow_clients.py "$url" --big "$big" --label "$front" ${SAMPLES:+--samples $SAMPLES}
  kill "${pids[@]}" 2>/dev/null || true; pids=()
  sleep 20   # the attack's connections to Odoo end before the next front
done
