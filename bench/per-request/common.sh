# Shared by cachegrind.sh and paired.sh: bench/candidate.sh's config on
# ports of their own (below 32768, the ephemeral range, where Odoo-side
# connections' source ports would collide), the fake Odoo, a readiness wait.
set -euo pipefail
BENCH_STATE=${BENCH_STATE:-/tmp/bench-state}
BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../shared/bench" 2>/dev/null && pwd || true)}
WORK=${PER_REQUEST_STATE:-/tmp/rampart-per-request}
[[ -s $BENCH_STATE/tls/odoo.test.crt ]] || { echo "no $BENCH_STATE/tls: run ../shared/bench/setup.sh first" >&2; exit 1; }
mkdir -p "$WORK"

# config NAME HTTPS_PORT ADMIN_PORT -> path of a rampart.toml: the shared
# bench's candidate config (bench/candidate.sh), on these ports and with
# its own state, so two can run at once.
config() {
  local name=$1 port=$2 admin=$3
  BENCH_CONFIG_ONLY=1 BENCH_STATE="$BENCH_STATE" BENCH_CONF="$WORK/$name.toml" \
    BENCH_RAMPART_STATE="$WORK/$name" BENCH_ACCESS_LOG="$WORK/$name-access.log" \
    BENCH_HTTP_ADDR="127.0.0.1:$((port - 1))" BENCH_HTTPS_ADDR="127.0.0.1:$port" \
    BENCH_ADMIN_ADDR="127.0.0.1:$admin" "$(dirname "${BASH_SOURCE[0]}")/../candidate.sh"
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
