#!/usr/bin/env bash
# Reproduces the end-to-end figures of docs/PERFORMANCE.md: for each scenario, RUNS times,
# a fresh server pinned to core 0 (durable acks: default --fsync always) and roomcast-load
# pinned to core 1, each run under `flock /tmp/roomcast-bench.lock` so runs by other people
# on the same machine do not overlap. Reports go to $OUT/<scenario>-<n>.{json,txt};
# `perf.sh summary` prints the median (min-max) table.
#
#   cargo build --release -p roomcast -p roomcast-load --example relay
#   loadtest/scripts/perf.sh [all|fanout|bigroom|latency|idle|storm|relay|summary]
set -euo pipefail
BIN=${BIN:-./target/release}
OUT=${OUT:-/tmp/rc-perf-results}
RUNS=${RUNS:-3}
DATA=${DATA:-/tmp/rc-perf}
LOCK=/tmp/roomcast-bench.lock
export ROOMCAST_JWT_SECRET=${ROOMCAST_JWT_SECRET:-bench-secret-bench-secret-bench}
# 19,000 idle connections fit under a 20,000 open-files limit; raise it for more.
ulimit -n 200000 2>/dev/null || true
mkdir -p "$OUT"

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2
  return 1
}

# one NAME SERVER-KIND LOAD-ARGS...: one locked run (called through flock).
one() {
  local name=$1 kind=$2
  shift 2
  local pid port
  if [[ $kind == relay ]]; then
    port=7500
    taskset -c 0 "$BIN/examples/relay" 127.0.0.1:$port 2>"$OUT/$name.server.log" &
  else
    port=7400
    rm -rf "$DATA"
    taskset -c 0 "$BIN/roomcast" serve --no-rate-limits --data-dir "$DATA" \
      --tcp 127.0.0.1:$port --http 127.0.0.1:7480 2>"$OUT/$name.server.log" &
  fi
  pid=$!
  wait_port $port
  cat /proc/loadavg >"$OUT/$name.loadavg"
  taskset -c 1 "$BIN/roomcast-load" --addr 127.0.0.1:$port --server-pid $pid --quiet \
    --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" || true
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  cat "$OUT/$name.txt"
}

series() {
  local name=$1
  shift
  for i in $(seq "$RUNS"); do
    flock "$LOCK" "$0" one "$name-$i" "$@"
  done
}

summary() {
  python3 - "$OUT" <<'PY'
import json, glob, os, statistics, sys
out = sys.argv[1]
def load(name):
    return [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{name}-[0-9]*.json"))]
def cell(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals: return "n/a"
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"
M = lambda v: f"{v/1e6:.2f} M"
K = lambda v: f"{v/1e3:.1f} k"
MS = lambda v: f"{v:.2f}"
P = lambda v: f"{v:.0f}%"
for name in ["fanout", "bigroom", "latency", "relay-fanout", "relay-bigroom", "idle", "storm"]:
    rs = load(name)
    if not rs: continue
    lat = lambda r, q: r["latency"].get("delivery", {}).get(q)
    print(f"## {name} ({len(rs)} runs)")
    print(f"deliveries/s   {cell([r['deliveries']['per_second'] for r in rs], M)}")
    print(f"acked pub/s    {cell([r['publishes']['acked_per_second'] for r in rs], K)}")
    print(f"lost/dup/ooo   {[ (r['deliveries'].get('lost'), r['deliveries']['duplicates'], r['deliveries']['out_of_order']) for r in rs]}")
    print(f"errors         {[r['errors'] for r in rs]}")
    for q in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"]:
        print(f"delivery {q:<7} {cell([lat(r, q) for r in rs], MS)}")
    print(f"ack p99 ms     {cell([r['latency'].get('ack', {}).get('p99_ms') for r in rs], MS)}")
    print(f"tool cpu       {cell([r.get('tool_cpu_percent') for r in rs], P)}")
    print(f"server cpu     {cell([(r.get('server') or {}).get('cpu_percent') for r in rs], P)}")
    print(f"rss/conn KiB   {cell([(r.get('server') or {}).get('rss_per_connection_kib') for r in rs], lambda v: f'{v:.2f}')}")
    print(f"handshakes/s   {cell([r['extra'].get('handshakes_per_second') for r in rs], K)}")
    print(f"connections    {[r['connections'] for r in rs]} failed {[r['connections_failed'] for r in rs]}")
    print()
PY
}

case "${1:-all}" in
  one) shift; one "$@" ;;
  fanout) series fanout roomcast fanout --rooms 10 --members 100 --publishers 1 --inflight 64 --duration 5s ;;
  bigroom) series bigroom roomcast bigroom --rooms 1 --members 2000 --publishers 1 --inflight 64 --duration 5s ;;
  latency) series latency roomcast latency --rooms 10 --members 100 --rate 1000 --duration 10s ;;
  idle) series idle roomcast idle --rooms 95 --members 200 --duration 5s ;;
  storm) series storm roomcast connect-storm --connections 20000 --concurrency 128 ;;
  relay)
    series relay-fanout relay fanout --rooms 10 --members 100 --publishers 1 --inflight 64 --duration 5s
    series relay-bigroom relay bigroom --rooms 1 --members 2000 --publishers 1 --inflight 64 --duration 5s ;;
  summary) summary ;;
  all) for s in relay fanout bigroom latency idle storm; do "$0" "$s"; done; summary ;;
  *) echo "usage: $0 [all|fanout|bigroom|latency|idle|storm|relay|summary]" >&2; exit 2 ;;
esac
