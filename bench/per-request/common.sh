# Shared by cachegrind.sh and paired.sh: a Rampart config like
# bench/candidate.sh's, on ports of its own (below 32768, the ephemeral
# range, where Odoo-side connections' source ports would collide).
set -euo pipefail
BENCH_STATE=${BENCH_STATE:-/tmp/bench-state}
BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../shared/bench" 2>/dev/null && pwd || true)}
WORK=${PER_REQUEST_STATE:-/tmp/rampart-per-request}
[[ -s $BENCH_STATE/tls/odoo.test.crt ]] || { echo "no $BENCH_STATE/tls: run ../shared/bench/setup.sh first" >&2; exit 1; }
mkdir -p "$WORK"

# config NAME HTTPS_PORT ADMIN_PORT -> path of a rampart.toml
config() {
  local name=$1 port=$2 admin=$3
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name.toml" <<TOML
state_dir = "$WORK/$name"
[listen]
http = "127.0.0.1:$((port - 1))"
https = "127.0.0.1:$port"
admin = "127.0.0.1:$admin"
[log]
access = "$WORK/$name-access.log"
[guard]
rate = { per_second = 1000000, burst = 1000000 }
[[site]]
hosts = ["odoo.test"]
tls = { cert = "$BENCH_STATE/tls/odoo.test.crt", key = "$BENCH_STATE/tls/odoo.test.key" }
odoo = ["127.0.0.1:18069"]
websocket = ["127.0.0.1:18072"]
addons_path = ["$BENCH_STATE/addons"]
[site.headers]
content_security_policy = "default-src 'self'"
[site.health_check]
path = "/web/login"
TOML
  echo "$WORK/$name.toml"
}

# The fake Odoo of the shared bench must be up.
upstream() {
  curl -s -o /dev/null --max-time 2 http://127.0.0.1:18069/web/login && return
  [[ -n $BENCH_DIR ]] || { echo "start the shared bench's upstream (start-peers.sh upstream)" >&2; exit 1; }
  "$BENCH_DIR/start-peers.sh" upstream >/dev/null
}

# wait_up PORT: until Rampart answers (at most 30 s; valgrind is slow).
wait_up() {
  local i
  for i in $(seq 1 100); do
    curl -sk -o /dev/null --max-time 2 --resolve "odoo.test:$1:127.0.0.1" "https://odoo.test:$1/web/login" && return
    sleep 0.3
  done
  echo "Rampart did not answer on $1" >&2; exit 1
}
