#!/usr/bin/env bash
# The soak of docs/PERFORMANCE.md ("Soak"): a release server under DURATION seconds
# (default 1800) of mixed chat traffic in rounds of ROUND seconds (default 60). Every
# round, in parallel, all under `nice -n 10` (the machine is shared):
#   - `roomcast-load mixed` over TCP: CLIENTS clients (200) at RATE requests/s each (5)
#     moving between 20 fresh rooms (join:send:history:leave 10:70:10:10);
#   - the same over WebSocket with WS_CLIENTS clients (50);
#   - every 2nd round a slow consumer (slow_consumer.py: cut off with slow_consumer);
#   - every 3rd round a connect storm of STORM connections (2,000, 200 at a time).
# Each round's clients are new connections (churn: every client disconnects and
# reconnects once a round); user ids come from a pool of 5 prefixes, so users return.
# A sampler writes the server's RSS, open descriptors and threads every SAMPLE seconds
# (30) to $OUT/samples.csv; each load run writes its JSON report to $OUT.
# `soak.sh summary` prints the samples and the per-round latencies and errors.
#
#   cargo build --release -p roomcast --bin roomcast -p roomcast-load --bin roomcast-load
#   loadtest/scripts/soak.sh            # then: loadtest/scripts/soak.sh summary
set -euo pipefail
BIN=${BIN:-./target/release}
OUT=${OUT:-/tmp/rc-soak}
DATA=${DATA:-/tmp/rc-soak-data}
DURATION=${DURATION:-1800}
ROUND=${ROUND:-60}
SAMPLE=${SAMPLE:-30}
CLIENTS=${CLIENTS:-200}
WS_CLIENTS=${WS_CLIENTS:-50}
RATE=${RATE:-5}
STORM=${STORM:-2000}
# Ports away from the defaults, so a soak does not meet other servers on the machine.
TCP=${TCP:-17400}
QUIC=${QUIC:-17401}
HTTP=${HTTP:-17480}
export ROOMCAST_JWT_SECRET=${ROOMCAST_JWT_SECRET:-soak-secret-soak-secret-soak-se}
HERE=$(cd "$(dirname "$0")" && pwd)
ulimit -n 65536 2>/dev/null || true

summary() {
  echo "## samples (s, rss_kib, fds, threads)"
  column -t -s, "$OUT/samples.csv"
  echo "## rounds: errors and latencies (ms) per load run"
  python3 - "$OUT" <<'EOF'
import glob, json, os, re, sys
out = sys.argv[1]
def key(p):
    m = re.search(r'-(\d+)\.json$', p)
    return (int(m.group(1)) if m else 0, p)
for p in sorted(glob.glob(f'{out}/*.json'), key=key):
    r = json.load(open(p))
    lat = r.get('latency', {})
    parts = []
    for k in sorted(lat):
        v = lat[k]
        if isinstance(v, dict) and 'p50_ms' in v:
            parts.append(f"{k} n={v['count']} p50 {v['p50_ms']:.2f} p99 {v['p99_ms']:.2f} max {v['max_ms']:.1f}")
    errs = {k: v for k, v in (r.get('errors') or {}).items() if v}
    print(os.path.basename(p), 'errors', errs or 0, '|', '; '.join(parts))
EOF
  echo "## slow consumers"
  cat "$OUT"/slow-*.txt 2>/dev/null || true
}
if [[ ${1:-} == summary ]]; then summary; exit 0; fi

rm -rf "$OUT" "$DATA"
mkdir -p "$OUT"
"$BIN/roomcast" serve --no-rate-limits --data-dir "$DATA" \
  --tcp "127.0.0.1:$TCP" --quic "127.0.0.1:$QUIC" --http "127.0.0.1:$HTTP" \
  ${SERVER_ARGS:-} >"$OUT/server.out" 2>"$OUT/server.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$TCP") 2>/dev/null && break; sleep 0.05; done
echo "server pid $pid; $(uname -srm); $(nproc) cores; $(date -u +%FT%TZ)" | tee "$OUT/machine.txt"

start=$(date +%s)
echo "s,rss_kib,fds,threads" >"$OUT/samples.csv"
(
  while kill -0 "$pid" 2>/dev/null; do
    t=$(($(date +%s) - start))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    thr=$(awk '/^Threads/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    echo "$t,$rss,$fds,$thr" >>"$OUT/samples.csv"
    sleep "$SAMPLE"
  done
) &
sampler=$!

load() { nice -n 10 "$BIN/roomcast-load" --quiet "$@"; }
i=0
while (($(date +%s) - start < DURATION)); do
  i=$((i + 1))
  users=soak$((i % 5))
  load --addr "127.0.0.1:$TCP" --user-prefix "$users" --json "$OUT/mixed-tcp-$i.json" \
    mixed --clients "$CLIENTS" --rooms 20 --rate "$RATE" --duration "${ROUND}s" \
    >"$OUT/mixed-tcp-$i.txt" 2>&1 &
  a=$!
  load --transport ws --addr "127.0.0.1:$HTTP" --user-prefix "ws$users" --json "$OUT/mixed-ws-$i.json" \
    mixed --clients "$WS_CLIENTS" --rooms 5 --rate "$RATE" --duration "${ROUND}s" \
    >"$OUT/mixed-ws-$i.txt" 2>&1 &
  b=$!
  others=()
  if ((i % 2 == 0)); then
    nice -n 10 python3 "$HERE/slow_consumer.py" "$TCP" "$ROOMCAST_JWT_SECRET" "$i" >"$OUT/slow-$i.txt" 2>&1 &
    others+=($!)
  fi
  if ((i % 3 == 0)); then
    load --addr "127.0.0.1:$TCP" --user-prefix "storm$users" --json "$OUT/storm-$i.json" \
      connect-storm --connections "$STORM" --concurrency 200 >"$OUT/storm-$i.txt" 2>&1 &
    others+=($!)
  fi
  wait "$a" "$b" "${others[@]}" || echo "round $i: a load run failed (see $OUT/*-$i.txt)"
done
sleep "$SAMPLE" # one more sample after the load
kill -TERM "$pid"
wait "$pid" || true
kill "$sampler" 2>/dev/null || true
trap - EXIT
summary
