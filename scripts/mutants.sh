#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the code that keeps attackers out and
# data safe. Long, so outside CI: run it after changing one of these files.
#
#   scripts/mutants.sh            every scope below
#   scripts/mutants.sh guard      only scopes whose file matches "guard"
#
# Each scope mutates one file (or one part of it) and runs only the tests
# that can notice, one mutant at a time (-j 1: the machine is small). Every
# mutant that survives ("missed") or hangs ("timeout") must be listed, with
# the reason it is harmless, in mutants/accepted.txt; anything else fails
# the run. Names are compared without line:column, so the ratchet survives
# edits elsewhere in a file. Output: $MUTANTS_OUT (default /tmp/rampart-mutants).
set -euo pipefail
cd "$(dirname "$0")/.."
out_root=${MUTANTS_OUT:-/tmp/rampart-mutants}
filter=${1:-}
command -v cargo-mutants >/dev/null 2>&1 || cargo install --locked cargo-mutants

# The guard's unit tests minus the three slow ones (a million rotating
# addresses twice, fail2ban-regex) that no mutant of these files needs.
guard_fast="--lib -- --skip memory_stays_bounded --skip key_count_stays_under_the_cap --skip fail2ban::"
# file glob | package whose tests run | cargo test arguments | mutant regex (empty: all)
scopes=(
  "crates/edge/src/stage/route.rs|rampart-edge|--lib|"
  "crates/edge/src/headers/*.rs|rampart-edge|--lib|"
  "crates/edge/src/stage/normalize.rs|rampart-edge|--lib|"
  "crates/edge/src/stage/framing.rs|rampart-edge|--lib|"
  "crates/edge/src/upstream.rs|rampart|--test edge_routing health|check_once|Upstream::record|spawn_checks"
  "crates/guard/src/limits.rs|rampart-guard|--lib|"
  "crates/guard/src/failures.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/bans.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/rpc/*.rs|rampart-guard|--test rpc_differential $guard_fast|"
  "crates/guard/src/classify.rs|rampart-guard|$guard_fast|"
  "crates/backup/src/target/*.rs|rampart-backup|--lib --test races|write_if_absent|write_then_link|put_file|Target::put|read_full|tmp_name"
  "crates/backup/src/snapshot.rs|rampart-backup|--lib --test local --test faults --test races|snapshot\.rs:4[4-9][0-9]:|settle"
  "crates/certs/src/store.rs|rampart-certs|--lib --test local_and_files|CertStore::swap|CertStore::reload|CertStore::build|refresh_files"
)

strip() { sed -E 's/^([^:]+):[0-9]+:[0-9]+:/\1:/'; }
accepted=$({ grep -v '^#' mutants/accepted.txt || true; } | cut -f1 | sed '/^$/d' | sort -u)
fail=0
for s in "${scopes[@]}"; do
  IFS='|' read -r file pkg args re_rest <<<"$s"
  re=$re_rest
  [[ -z "$filter" || "$file" == *"$filter"* ]] || continue
  name=$(echo "$file" | tr '/*' '__')
  out="$out_root/$name"
  mkdir -p "$out"
  echo "== $file (tests: $pkg $args${re:+; mutants matching $re})"
  re_arg=()
  [ -n "$re" ] && re_arg=(--re "$re")
  # shellcheck disable=SC2086
  cargo mutants -j 1 --no-shuffle --baseline skip --timeout 300 --build-timeout 600 \
    -f "$file" "${re_arg[@]}" --test-package "$pkg" -o "$out" -- $args \
    >"$out/run.log" 2>&1 || true
  tail -n 1 "$out/run.log"
  for kind in missed timeout; do
    f="$out/mutants.out/$kind.txt"
    [ -f "$f" ] || continue
    while IFS= read -r m; do
      if ! grep -qxF "$m" <<<"$accepted"; then
        echo "NOT ACCEPTED ($kind): $m"
        fail=1
      fi
    done < <(strip <"$f")
  done
done
exit $fail
