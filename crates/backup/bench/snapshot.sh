#!/usr/bin/env bash
# Backup benchmark (not a test): a full snapshot of an Odoo-shaped database
# plus a 1 GiB filestore to a local target, then a snapshot after 1 % of the
# filestore changed (1 % of files removed, as many new ones added) with the
# hash cache, the same with --rehash (every file read: what an incremental
# run cost before the cache), then a restore. Prints wall time and bytes
# stored for each step.
#
#   crates/backup/bench/snapshot.sh [FILESTORE_MIB]   (default 1024)
#
# Needs: a release build of rampart (built if missing), PostgreSQL
# (initdb under /usr/lib/postgresql/*/bin), age-keygen (Debian: age),
# python3. Runs PostgreSQL as the unprivileged user rampart-test.
set -euo pipefail
cd "$(dirname "$0")/../../.."
MIB=${1:-1024}
FILE_KIB=512                          # 2048 files for 1 GiB
FILES=$(( MIB * 1024 / FILE_KIB ))
CHANGED=$(( FILES / 100 ))
BIN=target/release/rampart
[ -x "$BIN" ] || cargo build --release -p rampart
command -v age-keygen >/dev/null || { echo "age-keygen missing (apt-get install age)"; exit 2; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
id rampart-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh rampart-test

W=$(mktemp -d /tmp/rampart-bench.XXXXXX)
chown rampart-test "$W"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  runuser -u rampart-test -- "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
runuser -u rampart-test -- "$PGBIN/initdb" -U postgres --auth=trust -E UTF8 --no-locale -D "$W/pg" >/dev/null
runuser -u rampart-test -- "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pg.log" -w \
  -o "-p $PORT -k $W -c listen_addresses=127.0.0.1" start >/dev/null
PSQL="$PGBIN/psql -X -q -v ON_ERROR_STOP=1 postgresql://postgres@127.0.0.1:$PORT"
$PSQL/postgres -c 'CREATE DATABASE erp'
$PSQL/erp <<'SQL'
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar UNIQUE, state varchar, latest_version varchar);
INSERT INTO ir_module_module (name, state, latest_version)
  SELECT 'module_' || i, 'installed', '18.0.1.0' FROM generate_series(1, 120) i;
INSERT INTO ir_module_module (name, state, latest_version) VALUES ('base', 'installed', '18.0.1.3');
CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar UNIQUE, value text);
INSERT INTO ir_config_parameter (key, value) VALUES ('database.uuid', 'u'), ('database.secret', 's');
CREATE TABLE res_users (id serial PRIMARY KEY, login varchar);
INSERT INTO res_users (login) SELECT 'user' || i FROM generate_series(1, 50) i;
CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, email varchar, street varchar, comment text);
INSERT INTO res_partner (name, email, street, comment)
  SELECT 'Partner ' || i, 'p' || i || '@example.com', i || ' Main Street', md5(i::text) || repeat(' lorem ipsum', 20)
  FROM generate_series(1, 200000) i;
CREATE TABLE ir_attachment (id serial PRIMARY KEY, name varchar, store_fname varchar);
SQL

echo "making a ${MIB} MiB filestore ($FILES files of ${FILE_KIB} KiB)..."
python3 - "$W/data/filestore/erp" "$FILES" "$FILE_KIB" <<'PY'
import hashlib, os, sys
root, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    data = os.urandom(kib * 1024)   # like PDFs and images: incompressible
    h = hashlib.sha1(data).hexdigest()
    os.makedirs(os.path.join(root, h[:2]), exist_ok=True)
    with open(os.path.join(root, h[:2], h), "wb") as f:
        f.write(data)
PY
age-keygen -o "$W/key.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$W/key.txt")
mkdir -p "$W/store"
cat > "$W/rampart.toml" <<TOML
state_dir = "$W/state"
[backup]
databases = ["erp"]
data_dir = "$W/data"
pg = "postgresql://postgres@127.0.0.1:$PORT/postgres"
recipients = ["$RECIPIENT"]
[[backup.target]]
name = "local"
url = "file://$W/store"
TOML
# Files changed in the last 3 s are never trusted by the hash cache.
sync; sleep 4
stored() { du -sb "$W/store" | cut -f1; }
now() { date +%s.%N; }
mib() { python3 -c "print(f'{$1/1048576:.1f} MiB')"; }

echo "== full snapshot"
t0=$(now); "$BIN" -c "$W/rampart.toml" backup; t1=$(now)
s1=$(stored)
echo "full: $(python3 -c "print(f'{$t1-$t0:.1f}')") s, stored $(mib "$s1")"

change() {
python3 - "$W/data/filestore/erp" "$CHANGED" "$FILE_KIB" <<'PY'
import glob, hashlib, os, sys
root, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for p in sorted(glob.glob(os.path.join(root, "*", "*")))[:n]:
    os.remove(p)
for i in range(n):
    data = os.urandom(kib * 1024)
    h = hashlib.sha1(data).hexdigest()
    os.makedirs(os.path.join(root, h[:2]), exist_ok=True)
    open(os.path.join(root, h[:2], h), "wb").write(data)
PY
$PSQL/erp -c "UPDATE res_partner SET comment = comment || '!' WHERE id % 100 = 0"
sync; sleep 4
}
echo "== 1 % changed: $CHANGED files removed, $CHANGED new; hash cache"
change
t0=$(now); "$BIN" -c "$W/rampart.toml" backup; t1=$(now)
s2=$(stored)
echo "incremental: $(python3 -c "print(f'{$t1-$t0:.1f}')") s, new bytes stored $(mib $((s2 - s1)))"
echo "== 1 % changed again; --rehash (every file read)"
change
t0=$(now); "$BIN" -c "$W/rampart.toml" backup --rehash; t1=$(now)
s3=$(stored)
echo "incremental --rehash: $(python3 -c "print(f'{$t1-$t0:.1f}')") s, new bytes stored $(mib $((s3 - s2)))"

echo "== restore of the latest snapshot"
t0=$(now); "$BIN" -c "$W/rampart.toml" restore latest --as erp_restored --identity "$W/key.txt"; t1=$(now)
echo "restore: $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
"$BIN" -c "$W/rampart.toml" backups list
diff <(cd "$W/data/filestore/erp" && find . -type f -exec sha1sum {} + | sort) \
     <(cd "$W/data/filestore/erp_restored" && find . -type f -exec sha1sum {} + | sort) >/dev/null \
  && echo "restored filestore identical"
# Standard formats: any blob opens with the age and zstd command-line tools.
b=$(find "$W/store/blobs" -type f -printf '%f\n' -quit)
age -d -i "$W/key.txt" "$W/store/blobs/$b" | zstd -dcq | sha1sum | grep -q "^$b " \
  && echo "blob $b opens with the age and zstd CLIs and matches its name"
