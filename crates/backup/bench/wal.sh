#!/usr/bin/env bash
# Point-in-time recovery benchmark (not a test), with the default settings
# (wal_upload_interval = 30s): `rampart wal-stream` on a fresh cluster,
# an order-entry write load for LOAD_S seconds (pgbench at RATE transactions
# a second, each an order with 5 lines of ~120 bytes and a stock update, as
# an Odoo sale confirmation writes), then a crash: the streamer and its
# pg_receivewal SIGKILLed at once, nothing sent afterwards. Then
# `restore --at <crash time>` from the target alone.
# Prints: raw WAL and bytes stored per hour of that load, the data lost
# (crash time minus the last restored commit: the RPO) and the restore time.
#
#   crates/backup/bench/wal.sh [LOAD_S] [RATE]     (default 120 s, 5 tx/s)
#
# Needs: the rampart binary (BIN=…, default target/debug/rampart, built if
# missing), PostgreSQL with pgbench, age-keygen (Debian: age), python3.
set -euo pipefail
cd "$(dirname "$0")/../../.."
LOAD_S=${1:-120}
RATE=${2:-5}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug/rampart}
[ -x "$BIN" ] || cargo build -p rampart
BIN=$(realpath "$BIN")
command -v age-keygen >/dev/null || { echo "age-keygen missing (apt-get install age)"; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
id rampart-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh rampart-test

W=$(mktemp -d /tmp/rampart-walbench.XXXXXX)
chmod 755 "$W"
mkdir "$W/pgroot" "$W/spool" "$W/store" "$W/data"
chown rampart-test "$W/pgroot"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
STREAMER=
# pg_receivewal processes of this run (their command line names $W).
receivers() {
  for d in /proc/[0-9]*; do
    { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -q "pg_receivewal.*$W" && echo "${d#/proc/}"
  done
  true
}
cleanup() {
  [ -n "$STREAMER" ] && kill -9 "$STREAMER" 2>/dev/null || true
  for p in $(receivers); do kill -9 "$p" 2>/dev/null || true; done
  runuser -u rampart-test -- "$PGBIN/pg_ctl" -D "$W/pgroot/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
runuser -u rampart-test -- "$PGBIN/initdb" -U postgres --auth=trust -E UTF8 --no-locale -D "$W/pgroot/pg" >/dev/null
runuser -u rampart-test -- "$PGBIN/pg_ctl" -D "$W/pgroot/pg" -l "$W/pgroot/pg.log" -w \
  -o "-p $PORT -k $W/pgroot -c listen_addresses=127.0.0.1" start >/dev/null
CONN="postgresql://postgres@127.0.0.1:$PORT"
PSQL="$PGBIN/psql -X -q -At -v ON_ERROR_STOP=1"
$PSQL "$CONN/postgres" -c 'CREATE DATABASE erp'
$PSQL "$CONN/erp" <<'SQL'
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar UNIQUE, state varchar, latest_version varchar);
INSERT INTO ir_module_module (name, state, latest_version) VALUES ('base', 'installed', '18.0.1.3');
CREATE TABLE ir_attachment (id serial PRIMARY KEY, name varchar, store_fname varchar);
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar UNIQUE, value text);
CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar, partner_id int, created timestamptz DEFAULT clock_timestamp());
CREATE TABLE sale_order_line (id serial PRIMARY KEY, order_id int REFERENCES sale_order, product_id int,
  name varchar, qty numeric, price numeric);
CREATE TABLE stock_quant (id int PRIMARY KEY, qty numeric);
INSERT INTO stock_quant SELECT i, 1000000 FROM generate_series(1, 1000) i;
SQL
cat > "$W/order.sql" <<'SQL'
\set p random(1, 1000)
BEGIN;
WITH o AS (INSERT INTO sale_order (name, partner_id) VALUES ('SO' || :p, :p) RETURNING id)
INSERT INTO sale_order_line (order_id, product_id, name, qty, price)
  SELECT o.id, (:p + i) % 1000 + 1, repeat('Product description ', 6), i, 9.99 * i FROM o, generate_series(1, 5) i;
UPDATE stock_quant SET qty = qty - 1 WHERE id = :p;
COMMIT;
SQL
age-keygen -o "$W/key" 2>/dev/null
RECIPIENT=$(grep -o 'age1[0-9a-z]*' "$W/key" | head -1)
cat > "$W/rampart.toml" <<EOF
state_dir = "$W/state"
[backup]
data_dir = "$W/data"
pg = "$CONN/postgres"
recipients = ["$RECIPIENT"]
spool_dir = "$W/spool"
wal = true
wal_os_user = "rampart-test"
[[backup.target]]
name = "local"
url = "file://$W/store"
EOF
"$BIN" wal-stream --config "$W/rampart.toml" 2>"$W/stream.log" &
STREAMER=$!
for _ in $(seq 1 240); do ls "$W"/store/wal/base-*.json >/dev/null 2>&1 && break; sleep 0.5; done
ls "$W"/store/wal/base-*.json >/dev/null || { cat "$W/stream.log"; exit 1; }
wal_bytes() { find "$W/store/wal" -type f ! -name 'base-*' -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
STORED0=$(wal_bytes)
LSN0=$($PSQL "$CONN/postgres" -c 'SELECT pg_current_wal_lsn()')
"$PGBIN/pgbench" -n -f "$W/order.sql" -R "$RATE" -T "$LOAD_S" "$CONN/erp" >"$W/pgbench.log" 2>&1 &
LOAD=$!
sleep "$LOAD_S"
# The crash, while the load still runs: nothing is sent after this instant.
CRASH=$(date '+%Y-%m-%d %H:%M:%S')
for p in $(receivers); do kill -9 "$p"; done
kill -9 "$STREAMER"; STREAMER=
wait "$LOAD" || true
RAW=$($PSQL "$CONN/postgres" -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$LSN0')::bigint")
STORED=$(( $(wal_bytes) - STORED0 ))
ORDERS=$($PSQL "$CONN/erp" -c 'SELECT count(*) FROM sale_order')
T0=$(date +%s.%N)
"$BIN" restore --at "$CRASH" --as erp_pitr --identity "$W/key" --config "$W/rampart.toml" >"$W/restore.log" 2>&1 \
  || { cat "$W/restore.log"; exit 1; }
T1=$(date +%s.%N)
LAST=$($PSQL "$CONN/erp_pitr" -c "SELECT extract(epoch FROM '$CRASH'::timestamptz - max(created)) FROM sale_order")
GOT=$($PSQL "$CONN/erp_pitr" -c 'SELECT count(*) FROM sale_order')
python3 - "$LOAD_S" "$RATE" "$RAW" "$STORED" "$ORDERS" "$GOT" "$LAST" "$T0" "$T1" <<'PY'
import sys
load, rate, raw, stored, orders, got, last, t0, t1 = sys.argv[1:]
h = 3600 / float(load)
print(f"load: {rate} orders/s (5 lines + a stock update each) for {load} s; {orders} orders committed")
print(f"WAL written by the server: {int(raw)/2**20:.1f} MiB -> {int(raw)*h/2**20:.0f} MiB per hour")
print(f"stored on the target (sealed segments and pieces): {int(stored)/2**20:.1f} MiB -> {int(stored)*h/2**20:.0f} MiB per hour")
print(f"crash, then restore --at the crash time: {float(t1)-float(t0):.1f} s; {got} of {orders} orders back")
print(f"data lost (crash time minus the last restored commit): {float(last):.1f} s")
PY
