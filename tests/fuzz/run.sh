#!/usr/bin/env bash
# run.sh DIR SECONDS MAX_LEN NAME... - runs each libFuzzer target
# DIR/fuzz_<NAME> for SECONDS, starting from its checked-in seeds
# tests/fuzz/corpus/<NAME>/, with inputs of at most MAX_LEN bytes.
#
# New inputs the fuzzer finds go to DIR/corpus/<NAME>/ (kept between runs,
# never into the checked-in seeds); a crashing input goes to
# DIR/artifacts/<NAME>/ and its report to DIR/<NAME>.log. Every target runs;
# the script fails when any of them crashed. Not part of `make test`.
set -euo pipefail
dir=$1
secs=$2
max_len=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
failed=()
for name in "$@"; do
  seeds="$here/corpus/$name"
  work="$dir/corpus/$name"
  art="$dir/artifacts/$name/"
  log="$dir/$name.log"
  mkdir -p "$work" "$art"
  [ -d "$seeds" ] || { echo "run.sh: no seed corpus $seeds" >&2; exit 1; }
  echo "== fuzz: $name (${secs}s)"
  # -timeout: an input running longer than 10 s is a hang, reported as a crash.
  if "$dir/fuzz_$name" -max_total_time="$secs" -max_len="$max_len" -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$art" "$work" "$seeds" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "   ok: ${execs:-?} inputs, ${cov:-cov: ?}, corpus $(ls "$work" | wc -l) files"
  else
    echo "   CRASH (log $log; reproduce: $dir/fuzz_$name <input>):"
    grep -E "ERROR|SUMMARY|invariant failed|runtime error|Test unit written" "$log" \
      | head -20 | sed 's/^/     /'
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "make fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}"
  exit 1
fi
echo "make fuzz: $# target(s), no crash"
