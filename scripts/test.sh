#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one:
# installs what the tests need when it is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests use (real parts, never mocks):
# PostgreSQL for audit and backups, Pebble for ACME, sshd for SFTP targets,
# Chromium for the browser tests.
need_pkgs=()
command -v pebble >/dev/null 2>&1 || [ -x /usr/bin/pebble ] || need_pkgs+=(pebble)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
[ -x /usr/bin/ssh ] || need_pkgs+=(openssh-client)  # backup: the SFTP target drives the system ssh
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)  # testkit: CA and leaf for the TLS client tests
command -v fail2ban-regex >/dev/null 2>&1 || need_pkgs+=(fail2ban)  # guard: printed filters checked by fail2ban's own matcher
# browser tests: headless Chromium through chromedriver (found on PATH or in /usr/bin, as the tests look)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
# edge and testkit: paths and cookies are judged against Odoo's werkzeug, run by Debian's python
# (tests/paths_werkzeug.rs, the fixture's wsgi differential test)
/usr/bin/python3 -c 'import werkzeug' >/dev/null 2>&1 || need_pkgs+=(python3 python3-werkzeug)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Python's passlib proves our master-password hashes are what Odoo accepts.
python3 -c 'import passlib' 2>/dev/null || python3 -m pip install -q passlib
# backup: an S3-compatible server on loopback for the S3 target tests.
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]'

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet 2>&1
