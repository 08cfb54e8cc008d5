#!/usr/bin/env bash
# A local CQL node for the ScyllaDB store's tests: Apache Cassandra 5.0 (it
# speaks the CQL protocol ScyllaDB implements) started from Maven Central jars
# as one node on free loopback ports. No Docker, no ScyllaDB package needed.
#
#   scripts/cql-node.sh install   resolve the jars (Maven) into the cache dir
#   scripts/cql-node.sh start     install if needed, start, wait until CQL answers
#   scripts/cql-node.sh addr      print host:port of the native (CQL) port
#   scripts/cql-node.sh status    "running <addr>" or "stopped" (exit 1)
#   scripts/cql-node.sh stop      stop the node and delete its data
#   scripts/cql-node.sh restart   kill the node with SIGKILL (a crash) and start it
#                                 again on the same ports and data (for tests of a
#                                 store that goes away and comes back)
#
# Environment:
#   ROOMCAST_CQL_CACHE  jars (default ~/.cache/roomcast/cassandra, outside target/)
#   ROOMCAST_CQL_DIR    the running node's config, data, log, pid and addr
#                       (default ${TMPDIR:-/tmp}/roomcast-cql-node)
#   ROOMCAST_CQL_HEAP   JVM heap (default 1G)
#   ROOMCAST_CQL_COMMITLOG_SYNC  periodic (default) or batch (fsync before each
#                       acknowledged write: survives a crash of the node)
#   JAVA17              a Java 17 `java` binary (found under /usr/lib/jvm otherwise)
#
# What it took on a 2-core build machine (2026-12): the first `install`
# resolves cassandra-all 5.0.8 and ~100 jars (~150 MB) in about 10 s from Maven
# Central; `start` takes about 15-25 s until CQL answers; the node uses
# about 1.3 GB of RAM. The traps, all handled below:
#   - exactly Java 17: Cassandra 5.0 refuses 18-23 and cannot run on 24+, so a
#     newer default `java` on PATH is not used;
#   - the JPMS --add-exports/--add-opens flags of Cassandra's
#     conf/jvm17-server.options, and the jamm jar as -javaagent, or the JVM
#     dies at start;
#   - a logback.xml of our own, or logback's default logs every DEBUG line to
#     the console;
#   - the jars alone carry no cassandra.yaml: a small dev config is written
#     here (one token range, no auto snapshots, small caches, periodic commit
#     log sync).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${ROOMCAST_CQL_CACHE:-$HOME/.cache/roomcast/cassandra}"
RUN="${ROOMCAST_CQL_DIR:-${TMPDIR:-/tmp}/roomcast-cql-node}"
HEAP="${ROOMCAST_CQL_HEAP:-1G}"

die() { echo "cql-node: $*" >&2; exit 1; }

find_java17() {
  local c
  for c in "${JAVA17:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" \
           /usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java \
           /usr/lib/jvm/openjdk-17/bin/java /usr/lib/jvm/temurin-17-jdk-amd64/bin/java \
           "$(command -v java || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -version 2>&1 | head -1 | grep -Eq 'version "17[."]'; then
      echo "$c"
      return 0
    fi
  done
  die "Java 17 is required (Cassandra 5.0 runs on exactly 17); set JAVA17=/path/to/java"
}

install() {
  local version
  version="$(sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$HERE/cql-node/pom.xml")"
  if [ -f "$CACHE/.complete-$version" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is required to resolve Cassandra's jars"
  mkdir -p "$CACHE"
  echo "cql-node: resolving org.apache.cassandra:cassandra-all into $CACHE (once)" >&2
  (cd "$HERE/cql-node" && mvn -q -B dependency:copy-dependencies \
      -DoutputDirectory="$CACHE/lib" -DincludeScope=runtime \
      -Dmaven.repo.local="$CACHE/m2") >&2
  touch "$CACHE/.complete-$version"
}

# Prints N free loopback TCP ports.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Whether host:port answers a CQL OPTIONS request with SUPPORTED.
cql_answers() {
  python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
try:
    s = socket.create_connection((host, int(port)), timeout=2)
    s.settimeout(2)
    s.sendall(bytes([0x04, 0, 0, 1, 0x05, 0, 0, 0, 0]))  # v4 OPTIONS
    head = s.recv(9)
    sys.exit(0 if len(head) >= 5 and head[4] == 0x06 else 1)  # SUPPORTED
except OSError:
    sys.exit(1)
PY
}

running_pid() {
  [ -f "$RUN/pid" ] || return 1
  local pid
  pid="$(cat "$RUN/pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

write_config() {
  local native="$1" storage="$2" commitlog
  # periodic (default): fast, but a write is acknowledged before it is on disk,
  # so a crash of this single node loses up to the period's acknowledged
  # writes; batch: fsync before each acknowledgement (what a test that
  # crashes the node needs to check that nothing acknowledged is lost).
  case "${ROOMCAST_CQL_COMMITLOG_SYNC:-periodic}" in
    periodic) commitlog=$'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms' ;;
    batch) commitlog='commitlog_sync: batch' ;;
    *) die "ROOMCAST_CQL_COMMITLOG_SYNC must be periodic or batch" ;;
  esac
  mkdir -p "$RUN/triggers" "$RUN/data" "$RUN/commitlog" "$RUN/saved_caches" "$RUN/hints" "$RUN/cdc" "$RUN/logs"
  cat >"$RUN/cassandra.yaml" <<YAML
cluster_name: roomcast-dev
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage
native_transport_port: $native
start_native_transport: true
data_file_directories: [ "$RUN/data" ]
commitlog_directory: $RUN/commitlog
saved_caches_directory: $RUN/saved_caches
hints_directory: $RUN/hints
cdc_raw_directory: $RUN/cdc
$commitlog
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 2
concurrent_materialized_view_writes: 2
file_cache_size: 64MiB
key_cache_size: 16MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
disk_access_mode: mmap_index_only
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
read_request_timeout: 5000ms
write_request_timeout: 2000ms
request_timeout: 10000ms
YAML
  cat >"$RUN/logback.xml" <<XML
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$RUN/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
XML
}

start() {
  if pid="$(running_pid)"; then
    echo "cql-node: already running (pid $pid) at $(cat "$RUN/addr")" >&2
    return 0
  fi
  install
  local java
  java="$(find_java17)"
  rm -rf "$RUN"
  mkdir -p "$RUN"
  read -r native storage <<<"$(free_ports 2)"
  echo "$native $storage" >"$RUN/ports"
  write_config "$native" "$storage"
  launch "$java" "$native"
}

# Starts the JVM on the config and data in $RUN and waits until CQL answers.
launch() {
  local java="$1" native="$2"
  local jamm
  jamm="$(ls "$CACHE"/lib/jamm-*.jar | head -1)"
  [ -n "$jamm" ] || die "jamm jar missing from $CACHE/lib (delete $CACHE and retry)"
  local opts=(
    -Xms"$HEAP" -Xmx"$HEAP" -Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled
    -XX:MaxDirectMemorySize=512M -XX:+ExitOnOutOfMemoryError
    -javaagent:"$jamm"
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dcassandra-foreground=yes
    -Dcassandra.config="file://$RUN/cassandra.yaml"
    -Dcassandra.logdir="$RUN/logs"
    -Dcassandra.storagedir="$RUN"
    -Dcassandra.triggers_dir="$RUN/triggers"
    -Dlogback.configurationFile="$RUN/logback.xml"
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=1000
    -Dcassandra.superuser_setup_delay_ms=0
    -cp "$CACHE/lib/*"
    org.apache.cassandra.service.CassandraDaemon
  )
  setsid nohup "$java" "${opts[@]}" >"$RUN/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$RUN/pid"
  local addr="127.0.0.1:$native"
  local started=$SECONDS
  until cql_answers "$addr"; do
    if ! running_pid >/dev/null; then
      tail -30 "$RUN/logs/stdout.log" "$RUN/logs/system.log" >&2 2>/dev/null || true
      die "the node exited during start (logs in $RUN/logs)"
    fi
    if [ $((SECONDS - started)) -gt 180 ]; then
      stop
      die "CQL did not answer on $addr within 180 s"
    fi
    sleep 1
  done
  echo "$addr" >"$RUN/addr"
  echo "cql-node: CQL answers at $addr after $((SECONDS - started)) s (pid $(cat "$RUN/pid"), data in $RUN)" >&2
  echo "$addr"
}

restart() {
  local pid java native storage
  pid="$(running_pid)" || die "not running (scripts/cql-node.sh start)"
  read -r native storage <"$RUN/ports"
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  rm -f "$RUN/pid"
  java="$(find_java17)"
  launch "$java" "$native"
}

stop() {
  if pid="$(running_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  addr)
    running_pid >/dev/null && [ -f "$RUN/addr" ] || die "not running (scripts/cql-node.sh start)"
    cat "$RUN/addr"
    ;;
  status)
    if running_pid >/dev/null && [ -f "$RUN/addr" ]; then
      echo "running $(cat "$RUN/addr")"
    else
      echo stopped
      exit 1
    fi
    ;;
  *) die "usage: $0 install|start|stop|restart|addr|status" ;;
esac
