#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one:
# installs what the tests need when it is missing, then runs every test.
#
# Every test that needs a program finds it the way this script checks for it
# (on PATH, as `command -v` does; sshd and PostgreSQL at Debian's paths) and
# fails, naming it, when it is missing: nothing in the suite is optional or
# skipped, under CI or not.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests use (real parts, never mocks).
need_pkgs=()
need() { # need PROGRAM PACKAGE: PROGRAM must be on PATH
  command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2")
}
need make make                           # build: jemalloc (the binary's allocator) is configured and made
need pebble pebble                       # ACME: Debian's pebble, a real ACME CA ...
need pebble-challtestsrv pebble          # ... and its DNS
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)  # audit and backups
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)  # backup: the SFTP receiver
need ssh openssh-client                  # backup: the SFTP target drives the system ssh
need sftp openssh-client
need ssh-keygen openssh-client
need curl curl                           # edge: multi-gigabyte transfers
need openssl openssl                     # edge, verify, testkit: forced TLS versions, test CAs
need fail2ban-regex fail2ban             # guard: printed filters checked by fail2ban's own matcher
need fail2ban-client fail2ban
need unshare util-linux                  # edge: the default-ports test runs in its own network namespace
need ip iproute2
need nft nftables                        # init: the generated firewall ruleset checked by nft -c
need systemd-analyze systemd             # init, packaging: the unit checked by systemd-analyze verify
need dpkg-deb dpkg                       # packaging: the .deb's contents read back
need runuser util-linux                  # PostgreSQL runs as an unprivileged user
need useradd passwd
need chromium chromium                   # browser tests: headless Chromium through chromedriver
need chromedriver chromium-driver
# edge and testkit: paths and cookies are judged against Odoo's werkzeug, run by Debian's python
# (tests/paths_werkzeug.rs, the fixture's wsgi differential test)
/usr/bin/python3 -c 'import werkzeug' >/dev/null 2>&1 || need_pkgs+=(python3 python3-werkzeug)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  echo "installing: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Python's passlib proves our master-password hashes are what Odoo accepts.
python3 -c 'import passlib' 2>/dev/null || python3 -m pip install -q passlib
# backup: an S3-compatible server on loopback for the S3 target tests.
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]'

# packaging: the .deb test builds the package with cargo-deb, pinned (its
# use of the dev profile is deprecated upstream). Installed unoptimised and
# without default features (the system's xz compresses): ~1.0 CPU-minute
# once, against ~2.4 for a release build of it, and the package builds in
# the same ~4 s either way (measured).
command -v cargo-deb >/dev/null 2>&1 ||
  cargo install --debug --locked --no-default-features --version 3.8.0 cargo-deb

# Checked again after installing: a package that did not provide its program
# stops the run here, with its name, rather than in the middle of the tests.
for p in pebble pebble-challtestsrv ssh sftp ssh-keygen curl openssl fail2ban-regex \
  fail2ban-client unshare ip nft systemd-analyze dpkg-deb runuser useradd chromium chromedriver moto_server cargo-deb python3; do
  command -v "$p" >/dev/null 2>&1 || { echo "missing after install: $p" >&2; exit 1; }
done
[ -x /usr/sbin/sshd ] || { echo "missing after install: /usr/sbin/sshd" >&2; exit 1; }
python3 -c 'import passlib' || { echo "missing after install: passlib" >&2; exit 1; }
/usr/bin/python3 -c 'import werkzeug' || { echo "missing after install: python3-werkzeug" >&2; exit 1; }

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --quiet 2>&1

# Under CI: the mutants on lines the last commit changed in the
# security-critical files (scripts/mutants.sh --diff HEAD~1), within what
# is left of CI's 90 minutes after a 10-minute margin, at most 30 minutes
# (figures in mutants/RESULTS.md, "CI job"). A surviving mutant that is not
# in mutants/accepted.txt fails the run; running out of time is said, not
# failed: the rest is for scripts/mutants.sh by hand.
if [ "${CI:-}" = true ]; then
  if ! git rev-parse -q --verify HEAD~1 >/dev/null; then
    echo "mutants of the last commit: NOT RUN, HEAD has no parent here (a shallow clone?)"
  else
    left=$(( ${RAMPART_CI_MINUTES:-90} * 60 - 600 - SECONDS ))
    cap=$(( ${RAMPART_MUTANTS_MINUTES:-30} * 60 ))
    [ "$left" -lt "$cap" ] && cap=$left
    rc=0
    MUTANTS_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} \
      MUTANTS_DEADLINE=$(( $(date +%s) + cap )) scripts/mutants.sh --diff HEAD~1 || rc=$?
    case $rc in
      0) ;;
      3) echo "mutants of the last commit: stopped at the time budget ($((cap / 60)) min); run scripts/mutants.sh --diff HEAD~1 by hand" ;;
      *) exit "$rc" ;;
    esac
  fi
fi
