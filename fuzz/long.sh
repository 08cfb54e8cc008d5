#!/usr/bin/env bash
# The long fuzz runs of docs/FUZZING.md: every target toward RUNS executions (default
# 10,000,000), all targets at once, each under `nice -n 19` (other people's builds on a
# shared machine come first), in chunks of at most CHUNK seconds (default 600) so that the
# counts are recorded as they grow and the runs can stop at STOP_AT (epoch seconds, 0 =
# never). A chunk continues from the corpus the previous ones left. A crash stops that
# target (its input is in artifacts/TARGET/). Progress: logs/progress.txt, one line per
# chunk (executions, exec/s, corpus, peak RSS); totals: logs/TARGET.total.
#
#   cd fuzz && cargo +nightly fuzz build && python3 seeds.py && ./long.sh
set -euo pipefail
cd "$(dirname "$0")"
T=${T:-target/x86_64-unknown-linux-gnu/release}
RUNS=${RUNS:-10000000}
CHUNK=${CHUNK:-600}
STOP_AT=${STOP_AT:-0}
TARGETS=${TARGETS:-frame_decode session_ops ws_frames}
mkdir -p logs

stat() { grep -o "stat::$1: *[0-9]*" "$2" | grep -o '[0-9]*$' | tail -1; }

run_target() {
  local t=$1 total=0 chunks=0 secs left n
  mkdir -p "artifacts/$t" "corpus/$t"
  while ((total < RUNS)); do
    secs=$CHUNK
    if ((STOP_AT)); then
      left=$((STOP_AT - $(date +%s)))
      ((left < 30)) && break
      ((left < secs)) && secs=$left
    fi
    if ! nice -n 19 "$T/$t" -runs=$((RUNS - total)) -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
      "corpus/$t" >"logs/$t.log" 2>&1; then
      echo "$(date -u +%T) $t CRASH after $total executions: $(ls "artifacts/$t")" >>logs/progress.txt
      return
    fi
    n=$(stat number_of_executed_units "logs/$t.log")
    total=$((total + n))
    chunks=$((chunks + 1))
    echo "$(date -u +%T) $t chunk $chunks: $n executions, $(stat average_exec_per_sec "logs/$t.log") exec/s," \
      "total $total, corpus $(find "corpus/$t" -type f | wc -l), peak RSS $(stat peak_rss_mb "logs/$t.log") MB" \
      >>logs/progress.txt
    echo "$total" >"logs/$t.total"
  done
}

for t in $TARGETS; do
  run_target "$t" &
done
wait
