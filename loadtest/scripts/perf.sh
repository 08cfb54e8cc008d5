#!/usr/bin/env bash
# Reproduces the end-to-end figures of docs/PERFORMANCE.md: for each scenario, RUNS times,
# a fresh server pinned to core 0 (durable acks: default --fsync always) and roomcast-load
# pinned to core 1, each run under `flock /tmp/roomcast-bench.lock` so runs by other people
# on the same machine do not overlap. Reports go to $OUT/<scenario>-<n>.{json,txt};
# `perf.sh summary` prints the median (min-max) table.
#
# TRANSPORT=tcp|tls|quic|ws picks the load tool's transport (default tcp; results of the
# others are named <scenario>-<transport>-<n>); the server always listens on all four
# (--tcp 7400, --quic 7401, --tls-tcp 7403, --http 7480) and the tool pins the certificate
# fingerprint the server prints. `perf.sh transports` runs fanout, bigroom, latency and idle
# over each of tcp, tls, quic and ws.
#
#   cargo build --release -p roomcast -p roomcast-load --example relay
#   loadtest/scripts/perf.sh [all|fanout|bigroom|latency|idle|storm|reconnect|smallrooms|direct|overload|relay|relay-small|capacity|wsdeflate|idle100k|transports|smoke|summary]
set -euo pipefail
BIN=${BIN:-./target/release}
# The server binary (A/B of two builds in one sitting: SERVER_BIN=/tmp/roomcast-before).
SERVER_BIN=${SERVER_BIN:-$BIN/roomcast}
OUT=${OUT:-/tmp/rc-perf-results}
RUNS=${RUNS:-3}
DATA=${DATA:-/tmp/rc-perf}
LOCK=/tmp/roomcast-bench.lock
TRANSPORT=${TRANSPORT:-tcp}
export TRANSPORT
# Suffix of result names: none for tcp (the historical names), -<transport> otherwise.
sfx() { [[ $TRANSPORT == tcp ]] && echo "" || echo "-$TRANSPORT"; }
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

# The server's certificate fingerprint, from the `sha256=...` on its stdout line.
wait_pin() {
  for _ in $(seq 200); do
    local pin
    pin=$(grep -o 'sha256=[0-9a-f]\{64\}' "$1" 2>/dev/null | head -1 | cut -d= -f2)
    [[ -n $pin ]] && { echo "$pin"; return 0; }
    sleep 0.05
  done
  echo "no sha256= line in $1" >&2
  return 1
}

start_server() { # NAME: starts roomcast pinned to core 0; sets $pid and $pin
  rm -rf "$DATA"
  # shellcheck disable=SC2086 # SERVER_ARGS: extra flags, word-split on purpose
  taskset -c 0 "$SERVER_BIN" serve --no-rate-limits --data-dir "$DATA" \
    --tcp 127.0.0.1:7400 --quic 127.0.0.1:7401 --tls-tcp 127.0.0.1:7403 --http 127.0.0.1:7480 \
    ${SERVER_ARGS:-} >"$OUT/$1.server.out" 2>"$OUT/$1.server.log" &
  pid=$!
  pin=$(wait_pin "$OUT/$1.server.out")
  wait_port 7400
}

# one NAME SERVER-KIND LOAD-ARGS...: one locked run (called through flock).
one() {
  local name=$1 kind=$2
  shift 2
  local pid pin="" addr
  local -a tool=(--transport "$TRANSPORT")
  if [[ $kind == relay ]]; then
    taskset -c 0 "$BIN/examples/relay" 127.0.0.1:7500 2>"$OUT/$name.server.log" &
    pid=$!
    wait_port 7500
    tool=(--addr 127.0.0.1:7500)
  else
    start_server "$name"
    case $TRANSPORT in
      tcp) addr=127.0.0.1:7400 ;;
      tls) addr=127.0.0.1:7403 ;;
      quic) addr=127.0.0.1:7401 ;;
      ws) addr=127.0.0.1:7480 ;;
      *) echo "TRANSPORT must be tcp, tls, quic or ws" >&2; return 2 ;;
    esac
    tool+=(--addr "$addr")
    [[ $TRANSPORT == tls || $TRANSPORT == quic ]] && tool+=(--pin "$pin")
  fi
  cat /proc/loadavg >"$OUT/$name.loadavg"
  taskset -c 1 "$BIN/roomcast-load" "${tool[@]}" --server-pid $pid --quiet \
    --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" || true
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  cat "$OUT/$name.txt"
}

# reconnect NAME: one locked reconnect storm; the tool restarts the server gracefully
# (SIGTERM, wait for exit, start again on the same data dir, so the same certificate).
reconnect_one() {
  local name=$1 pid pin addr
  shift
  start_server "$name"
  echo $pid >"$OUT/$name.pid"
  case $TRANSPORT in
    tcp) addr=127.0.0.1:7400 ;; tls) addr=127.0.0.1:7403 ;;
    quic) addr=127.0.0.1:7401 ;; ws) addr=127.0.0.1:7480 ;;
  esac
  local restart="p=\$(cat $OUT/$name.pid); kill -TERM \$p; while kill -0 \$p 2>/dev/null; do sleep 0.02; done;
    taskset -c 0 $BIN/roomcast serve --no-rate-limits --data-dir $DATA --tcp 127.0.0.1:7400 \
      --quic 127.0.0.1:7401 --tls-tcp 127.0.0.1:7403 --http 127.0.0.1:7480 \
      >>$OUT/$name.server.out 2>>$OUT/$name.server.log </dev/null & echo \$! >$OUT/$name.pid"
  taskset -c 1 "$BIN/roomcast-load" --transport "$TRANSPORT" --addr "$addr" --pin "$pin" --quiet \
    --json "$OUT/$name.json" reconnect-storm --restart-cmd "$restart" "$@" >"$OUT/$name.txt" || true
  pid=$(cat "$OUT/$name.pid")
  kill $pid 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
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
base = ["fanout", "bigroom", "latency", "idle", "storm", "reconnect", "smallrooms", "direct", "overload"]
names = ["relay-fanout", "relay-bigroom", "relay-smallrooms", "relay-direct", "relay-overload"] + base + [f"{b}-{t}" for t in ["tls", "quic", "ws"] for b in base]
for name in names:
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
    for q in ["p50_ms", "p99_ms", "max_ms"]:
        print(f"ack {q:<10} {cell([r['latency'].get('ack', {}).get(q) for r in rs], MS)}")
    print(f"rss peak MiB   {cell([(r.get('server') or {}).get('rss_peak_kib') for r in rs], lambda v: f'{v/1024:.0f}')}")
    print(f"tool cpu       {cell([r.get('tool_cpu_percent') for r in rs], P)}")
    print(f"server cpu     {cell([(r.get('server') or {}).get('cpu_percent') for r in rs], P)}")
    print(f"rss/conn KiB   {cell([(r.get('server') or {}).get('rss_per_connection_kib') for r in rs], lambda v: f'{v:.2f}')}")
    print(f"handshakes/s   {cell([r['extra'].get('handshakes_per_second') for r in rs], K)}")
    if name.startswith("reconnect"):
        print(f"all back s     {cell([r['extra'].get('time_to_all_reconnected_s') for r in rs], MS)}")
        print(f"outage s       {cell([r['extra'].get('outage_s') for r in rs], MS)}")
    print(f"connections    {[r['connections'] for r in rs]} failed {[r['connections_failed'] for r in rs]}")
    print()
PY
}

case "${1:-all}" in
  one) shift; one "$@" ;;
  reconnect_one) shift; reconnect_one "$@" ;;
  fanout) series "fanout$(sfx)" roomcast fanout --rooms 10 --members 100 --publishers 1 --inflight 64 --duration 5s ;;
  bigroom) series "bigroom$(sfx)" roomcast bigroom --rooms 1 --members 2000 --publishers 1 --inflight 64 --duration 5s ;;
  latency) series "latency$(sfx)" roomcast latency --rooms 10 --members 100 --rate 1000 --duration 10s ;;
  idle) series "idle$(sfx)" roomcast idle --rooms 95 --members 200 --duration 5s ;;
  storm) series "storm$(sfx)" roomcast connect-storm --connections 20000 --concurrency 128 ;;
  reconnect)
    for i in $(seq "$RUNS"); do
      flock "$LOCK" "$0" reconnect_one "reconnect$(sfx)-$i" --connections 5000
    done ;;
  transports)
    for t in tcp tls quic ws; do
      for s in fanout bigroom latency idle; do TRANSPORT=$t "$0" "$s"; done
    done
    "$0" summary ;;
  smoke) # one short run per transport, to check the setup (not a measurement)
    for t in tcp tls quic ws; do
      TRANSPORT=$t flock "$LOCK" "$0" one "smoke-$t" roomcast fanout --rooms 10 --members 100 --duration 2s
    done ;;
  smallrooms) series "smallrooms$(sfx)" roomcast smallrooms --inflight 64 --duration 5s ;;
  direct) series "direct$(sfx)" roomcast direct --inflight 64 --duration 5s ;;
  overload) series "overload$(sfx)" roomcast overload --duration 20s --drain 30s ;;
  relay-small) # the bare relay under the small-rooms loads
    series relay-smallrooms relay smallrooms --inflight 64 --duration 5s
    series relay-direct relay direct --inflight 64 --duration 5s ;;
  relay)
    series relay-fanout relay fanout --rooms 10 --members 100 --publishers 1 --inflight 64 --duration 5s
    series relay-bigroom relay bigroom --rooms 1 --members 2000 --publishers 1 --inflight 64 --duration 5s ;;
  capacity) # the load tool's own limits: small deliveries from the relay in big batches
    series relay-capacity relay bigroom --rooms 1 --members 2000 --publishers 4 --inflight 256 --body-bytes 16 --duration 5s
    # the same load against roomcast: its big-room figure without the tool's limit
    series bigroom-small roomcast bigroom --rooms 1 --members 2000 --publishers 4 --inflight 256 --body-bytes 16 --duration 5s ;;
  wsdeflate) # WebSocket compression's cost: the same fixed rate of 400-byte messages,
    # plain and with permessage-deflate agreed (level 1, no context takeover)
    TRANSPORT=ws SERVER_ARGS="--ws-compression true" \
      series latency-ws-plain roomcast latency --rooms 10 --members 100 --rate 1000 --body-bytes 400 --duration 10s
    TRANSPORT=ws SERVER_ARGS="--ws-compression true" \
      series latency-ws-deflate roomcast --ws-compression latency --rooms 10 --members 100 --rate 1000 --body-bytes 400 --duration 10s ;;
  idle100k) # 100,000 held connections: QUIC (one UDP socket each side), because the
    # open-files hard limit here (20,000, no CAP_SYS_RESOURCE) rules out a descriptor per
    # connection; rooms of 10, a 60 s heartbeat, a server cap above 100k
    TRANSPORT=quic SERVER_ARGS="--max-connections 120000 --heartbeat-ms 60000" \
      series idle100k-quic roomcast --setup-timeout 120s idle --rooms 10000 --members 10 --duration 10s ;;
  summary) summary ;;
  all) for s in relay fanout bigroom latency idle storm; do "$0" "$s"; done; summary ;;
  *) echo "usage: [TRANSPORT=tcp|tls|quic|ws] $0 [all|fanout|bigroom|latency|idle|storm|reconnect|relay|capacity|wsdeflate|idle100k|transports|smoke|summary]" >&2; exit 2 ;;
esac
