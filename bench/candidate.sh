#!/usr/bin/env bash
# Runs Rampart as the `candidate` of the side-by-side benchmark in
# ../shared/bench (its README explains the BENCH_* variables):
#
#   cargo build --release
#   CANDIDATE_EXE=rampart CANDIDATE_CMD="$PWD/bench/candidate.sh" \
#     MARKDOWN=1 ../shared/bench/compare.sh login-h1 login-h2 static-h1 handshake handshake-resume
#
# The config mirrors the peers': TLS from the bench's files, the fake Odoo
# upstreams, static files from the bench's addons, the bench's CSP.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${RAMPART_BIN:-$here/../target/release/rampart}
state=${BENCH_STATE:-/tmp/bench-state}
# BENCH_CONF, BENCH_RAMPART_STATE and BENCH_ADMIN_ADDR let bench/per-request
# run two of these at once; BENCH_CONFIG_ONLY=1 writes the config, prints
# its path and starts nothing.
conf=${BENCH_CONF:-$state/conf/candidate-rampart.toml}
rampart_state=${BENCH_RAMPART_STATE:-$state/rampart}
mkdir -p "$(dirname "$conf")" "$rampart_state"
cat > "$conf" <<TOML
state_dir = "$rampart_state"

[listen]
http = "${BENCH_HTTP_ADDR:-127.0.0.1:31080}"
https = "${BENCH_HTTPS_ADDR:-127.0.0.1:31443}"
admin = "${BENCH_ADMIN_ADDR:-127.0.0.1:31180}"

[log]
access = "${BENCH_ACCESS_LOG:-$state/logs/candidate-access.log}"

[guard]
# The load comes from one address; the peers have no rate limit either.
# (The limiter stays on the request path: only its quota is raised.)
rate = { per_second = 1000000, burst = 1000000 }

[[site]]
hosts = ["odoo.test"]
tls = { cert = "${BENCH_TLS_CERT:-$state/tls/odoo.test.crt}", key = "${BENCH_TLS_KEY:-$state/tls/odoo.test.key}" }
odoo = ["${BENCH_UPSTREAM:-127.0.0.1:18069}"]
websocket = ["${BENCH_UPSTREAM_WS:-127.0.0.1:18072}"]
addons_path = ["${BENCH_STATIC_ROOT:-$state/addons}"]

[site.headers]
content_security_policy = "${BENCH_CSP:-default-src 'self'}"

[site.health_check]
# The bench upstream is nginx pretending to be Odoo; it has no /web/health.
path = "/web/login"
TOML
if [[ ${BENCH_CONFIG_ONLY:-} == 1 ]]; then
  echo "$conf"
  exit 0
fi
exec "$bin" serve --config "$conf"
