#!/usr/bin/env bash
# Mutation testing (cargo-mutants) of the code that keeps attackers out and
# data safe. Long, so outside CI: run it after changing one of these files.
#
#   scripts/mutants.sh            every scope below
#   scripts/mutants.sh guard      only scopes whose file matches "guard"
#   scripts/mutants.sh --diff REV [filter]
#                                 only the mutants on lines changed since
#                                 REV (e.g. HEAD~1: the last commit), in
#                                 scopes whose file changed
#
# $MUTANTS_DEADLINE (unix seconds) stops the run there: the scope running
# is interrupted and reported, later ones are listed as not run, and the
# exit status is 3 unless a survivor was found first (then 1).
#
# Each scope mutates one file (or one part of it) and runs only the tests
# that can notice, one mutant at a time (-j 1: the machine is small). Every
# mutant that survives ("missed") or hangs ("timeout") must be listed, with
# the reason it is harmless, in mutants/accepted.txt; anything else fails
# the run. Names are compared without line:column, so the ratchet survives
# edits elsewhere in a file. Output: $MUTANTS_OUT (default /tmp/rampart-mutants).
#
# Builds go to $MUTANTS_TARGET_DIR (default $MUTANTS_OUT/target), never to
# the working tree's target dir: workspace crates get the same artifact
# names wherever the tree is, so a `cargo test` in the working tree during
# a run would replace a mutated test binary with an unmutated one. It is
# kept between scopes (dependencies build once); delete it when done.
set -euo pipefail
cd "$(dirname "$0")/.."
out_root=${MUTANTS_OUT:-/tmp/rampart-mutants}
export CARGO_TARGET_DIR=${MUTANTS_TARGET_DIR:-$out_root/target}
diff_rev=""
if [ "${1:-}" = "--diff" ]; then
  diff_rev=${2:?--diff needs a revision}
  shift 2
fi
filter=${1:-}
deadline=${MUTANTS_DEADLINE:-}
out_of_time=0
mutants_version=27.1.0

# The guard's unit tests minus the three slow ones (a million rotating
# addresses twice, fail2ban-regex) that no mutant of these files needs.
guard_fast="--lib -- --skip memory_stays_bounded --skip key_count_stays_under_the_cap --skip fail2ban::"
# file glob | packages whose tests run (comma-separated) | cargo test
# arguments | mutant regex (empty: all)
# In the regex, @line:TEXT@ becomes the number of the line of the file that
# contains TEXT, so a scope can name one statement of a long function
# without a line number that goes stale.
scopes=(
  "crates/edge/src/stage/route.rs|rampart-edge|--lib|"
  "crates/edge/src/pipeline.rs|rampart|--test edge_routing --test guard_rpc -- database db_service|allowed_db|pipeline\.rs:@line:decision.db_service && !allowed_db@:"
  "crates/edge/src/headers/*.rs|rampart-edge|--lib|"
  "crates/edge/src/stage/normalize.rs|rampart-edge|--lib|"
  "crates/edge/src/framing.rs|rampart-edge|--lib|"
  "crates/edge/src/upstream/mod.rs|rampart-edge|--lib|Upstream::record"
  "crates/edge/src/upstream/health.rs|rampart|--test edge_routing health|check_once|spawn_checks"
  "crates/edge/src/conn_cap.rs|rampart-edge|--lib|"
  "crates/edge/src/stage/compress.rs|rampart-edge|--lib|"
  "crates/edge/src/encoding.rs|rampart-edge|--lib|"
  "crates/edge/src/stage/inspect_budget.rs|rampart-edge|--lib|"
  "crates/edge/src/admin/access.rs|rampart-edge|--lib|"
  "crates/edge/src/admin_token.rs|rampart-edge|--lib|"
  "crates/guard/src/proxy_protocol.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/limits.rs|rampart-guard|--lib|"
  "crates/guard/src/failures.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/bans/mod.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/rpc/*.rs|rampart-guard|--test rpc_differential --test rpc_boundaries --test rpc_memory $guard_fast|"
  "crates/guard/src/rpc/json/*.rs|rampart-guard|--test rpc_differential --test rpc_boundaries --test rpc_memory $guard_fast|"
  "crates/guard/src/rpc/xml/*.rs|rampart-guard|--test rpc_differential --test rpc_boundaries --test rpc_memory $guard_fast|"
  "crates/guard/src/classify.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/outcome/*.rs|rampart-guard|$guard_fast|"
  "crates/guard/src/proven.rs|rampart-guard|$guard_fast|"
  "crates/backup/src/target/*.rs|rampart-backup|--lib --test races|write_if_absent|write_then_link|put_file|Target::put|read_full|tmp_name"
  "crates/backup/src/snapshot/writer.rs|rampart-backup|--lib --test commit --test local --test faults --test races|writer\.rs:(@line:            if !t@|@line:l.outcome.bytes_new +=@|@line:dump_size + sealed_manifest.len()@):|settle"
  "crates/certs/src/store.rs|rampart-certs,rampart|--lib --test local_and_files --test acme_reload|CertStore::swap|CertStore::reload|CertStore::build|refresh_files"
)

strip() { sed -E 's/^([^:]+):[0-9]+:[0-9]+:/\1:/'; }
accepted=$({ grep -v '^#' mutants/accepted.txt || true; } | cut -f1 | sed '/^$/d' | sort -u)
fail=0
for s in "${scopes[@]}"; do
  IFS='|' read -r file pkg args re_rest <<<"$s"
  [[ -z "$filter" || "$file" == *"$filter"* ]] || continue
  diff_arg=()
  if [ -n "$diff_rev" ]; then
    # shellcheck disable=SC2086 # the glob is a git pathspec
    git diff --quiet "$diff_rev" -- $file && continue
    mkdir -p "$out_root"
    git diff "$diff_rev" -- >"$out_root/changes.diff"
    diff_arg=(--in-diff "$out_root/changes.diff")
  fi
  limit=()
  if [ -n "$deadline" ]; then
    left=$((deadline - $(date +%s)))
    if [ "$left" -le 60 ]; then
      echo "== $file: NOT RUN (time budget spent)"
      out_of_time=1
      continue
    fi
    # SIGINT: cargo-mutants stops its build or test and writes its results.
    limit=(timeout -s INT -k 60 "$left")
  fi
  re=$re_rest
  while [[ $re =~ @line:([^@]*)@ ]]; do
    text=${BASH_REMATCH[1]}
    n=$(grep -nF -- "$text" $file | head -n 1 | cut -d: -f1)
    [ -n "$n" ] || { echo "scope $file: no line contains '$text'" >&2; exit 2; }
    re=${re/"@line:$text@"/$n}
  done
  name=$(echo "$file" | tr '/*' '__')
  # Two scopes on one file (different tests) need their own output.
  [ -n "$re" ] && name="${name}_$(echo "$re" | md5sum | cut -c1-6)"
  out="$out_root/$name"
  mkdir -p "$out"
  echo "== $file (tests: $pkg $args${re:+; mutants matching $re})"
  # A crate's unit tests take seconds: a mutant that makes them loop is
  # known after a minute. Integration tests start the binary: five.
  timeout=300
  [ "$args" = "--lib" ] && timeout=60
  re_arg=()
  [ -n "$re" ] && re_arg=(--re "$re")
  # Test targets (--lib, --test NAME) go to every cargo call, so a mutant
  # builds only them, not every test binary of the package; the rest
  # (test name filters) only to the test run.
  targets=()
  plain=()
  rest=()
  read -r -a words <<<"$args"
  for ((i = 0; i < ${#words[@]}; i++)); do
    case ${words[i]} in
      --lib) targets+=(--cargo-arg=--lib); plain+=(--lib) ;;
      --test)
        targets+=(--cargo-arg=--test "--cargo-arg=${words[i + 1]}")
        plain+=(--test "${words[i + 1]}")
        i=$((i + 1))
        ;;
      *) rest+=("${words[i]}") ;;
    esac
  done
  # Installed only when a scope has something to run (a commit that
  # touches none of these files costs nothing).
  # Pinned: mutant names (and so accepted.txt) change between versions.
  if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $mutants_version" ]; then
    cargo install --locked cargo-mutants --version "$mutants_version"
  fi
  # Build the unmutated tests first: the dependencies then build once, not
  # inside the first mutant's build timeout.
  pkg_args=()
  IFS=',' read -r -a pkgs <<<"$pkg"
  for p in "${pkgs[@]}"; do pkg_args+=(-p "$p"); done
  if ! cargo test --no-run "${pkg_args[@]}" "${plain[@]}" >"$out/warmup.log" 2>&1; then
    echo "the unmutated tests do not build: $out/warmup.log"
    fail=1
    continue
  fi
  rc=0
  "${limit[@]}" cargo mutants -j 1 --no-shuffle --baseline skip --timeout "$timeout" --build-timeout 600 \
    -f "$file" "${re_arg[@]}" "${diff_arg[@]}" --test-package "$pkg" -o "$out" "${targets[@]}" -- "${rest[@]}" \
    >"$out/run.log" 2>&1 || rc=$?
  tail -n 1 "$out/run.log"
  if [ -n "$deadline" ] && [ "$(date +%s)" -ge "$deadline" ] && [ "$rc" -ne 0 ]; then
    echo "== $file: INTERRUPTED (time budget spent); what ran is checked below"
    out_of_time=1
  fi
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
[ "$fail" -eq 0 ] && [ "$out_of_time" -eq 1 ] && exit 3
exit $fail
