#!/usr/bin/env bash
# Instructions per publish (docs/PERFORMANCE.md, "Where a publish goes"): the release
# server under `valgrind --tool=callgrind`, small rooms (1,000 rooms x 4 members, one
# publisher per room) with a fixed number of sends per publisher. Counters are zeroed
# after the setup (connect, hello, join) and dumped after the last delivery, so the
# profile holds the publishing phase only; divide by the publishes acknowledged.
# Instruction counts are repeatable on a noisy shared machine (no hardware counters
# needed); they count user-space instructions only (no kernel time, no fdatasync wait).
#
#   cargo build --release -p roomcast -p roomcast-load --bins
#   loadtest/scripts/profile.sh [NAME]     # -> $OUT/NAME.callgrind, NAME.load.txt, NAME.top.txt
set -euo pipefail
NAME=${1:-smallrooms}
BIN=${BIN:-./target/release}
OUT=${OUT:-/tmp/rc-profile}
PORT=${PORT:-27400}
ROOMS=${ROOMS:-1000}
MEMBERS=${MEMBERS:-4}
MESSAGES=${MESSAGES:-20}
FSYNC=${FSYNC:-always}
export ROOMCAST_JWT_SECRET=${ROOMCAST_JWT_SECRET:-bench-secret-bench-secret-bench}
mkdir -p "$OUT"
DATA=$(mktemp -d /tmp/rc-profile-data.XXXXXX)
trap 'rm -rf "$DATA"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$OUT/$NAME.callgrind" \
  "$BIN/roomcast" serve --no-rate-limits --shards 1 --fsync "$FSYNC" --data-dir "$DATA" \
  --tcp 127.0.0.1:$PORT --quic 127.0.0.1:$((PORT + 1)) --http 127.0.0.1:$((PORT + 80)) \
  >"$OUT/$NAME.server.out" 2>"$OUT/$NAME.server.log" &
pid=$!
for _ in $(seq 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
# The tool runs --on-run once every member has joined, right before publishing:
# the counters are zeroed there, so the setup is not in the profile.
"$BIN/roomcast-load" --addr 127.0.0.1:$PORT --setup-timeout 300s --quiet \
  --json "$OUT/$NAME.load.json" --server-pid $pid --on-run "callgrind_control -z $pid" \
  fanout --rooms "$ROOMS" --members "$MEMBERS" --publishers 1 --inflight 64 \
  --messages "$MESSAGES" --duration 600s --drain 60s | tee "$OUT/$NAME.load.txt"
callgrind_control -d "$NAME" $pid >/dev/null
sleep 2
kill -INT $pid
wait $pid || true
# The dump taken above is NAME.callgrind.1 (NAME.callgrind is the shutdown's remainder).
f="$OUT/$NAME.callgrind.1"
acked=$(grep -o '"acked": [0-9]*' "$OUT/$NAME.load.json" | head -1 | grep -o '[0-9]*$')
total=$(callgrind_annotate "$f" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')
echo "profile $f: $total instructions, $acked publishes -> $((total / acked)) per publish" | tee "$OUT/$NAME.top.txt"
callgrind_annotate --inclusive=yes "$f" 2>/dev/null | head -80 >>"$OUT/$NAME.top.txt"
