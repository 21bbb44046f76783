#!/usr/bin/env bash
# make bench: intake throughput and latency on the embedded and on the production backends.
# Starts each cluster shape from the release binary, drives it with `minyi bench intake`, and
# writes the results between the markers in BENCHMARKS.md (and to target/bench/*.json).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MINYI_BIN:-target/release/minyi}
OUT=target/bench
DURATION=${BENCH_DURATION:-15}
mkdir -p "$OUT"
PG_ADMIN="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

run_bench() { # label grpc_port token extra-args...
  local label=$1 port=$2 token=$3; shift 3
  "$BIN" bench intake --endpoint "http://127.0.0.1:$port" --token "$token" \
    --duration "$DURATION" --label "$label" "$@"
}

KEY=$(head -c 32 /dev/urandom | base64)
JWT=$(head -c 32 /dev/urandom | base64)
token() { MINYI_JWT_SECRET=$JWT "$BIN" token --role agent --sub bench; }

results=()

# --- embedded ---------------------------------------------------------------------------
DATA=$(mktemp -d)
MINYI_DATA_DIR=$DATA MINYI_GRPC_ADDR=127.0.0.1:50151 MINYI_HTTP_ADDR=127.0.0.1:50181 \
  MINYI_JWT_SECRET=$JWT MINYI_ENCRYPTION_KEY=$KEY RUST_LOG=warn "$BIN" dev >"$OUT/embedded.log" 2>&1 &
PID=$!
wait_port 50151
T=$(token)
results+=("$(run_bench embedded-closed-32 50151 "$T" --clients 32)")
results+=("$(run_bench embedded-open-1000 50151 "$T" --clients 32 --rate 1000)")
kill -TERM $PID; wait $PID || true
rm -rf "$DATA"

# --- production (PostgreSQL + RabbitMQ + Redis) -----------------------------------------
DB=minyi_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB"
export MINYI_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
export MINYI_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" MINYI_AMQP_PREFIX="bench$$" MINYI_AMQP_QUEUE_EXPIRES_SECS=600
export MINYI_REDIS_URL="redis://127.0.0.1:6379/" MINYI_REDIS_PREFIX="bench$$"
export MINYI_JWT_SECRET=$JWT MINYI_ENCRYPTION_KEY=$KEY MINYI_DATABASE_MAX_CONNECTIONS=32
MINYI_GRPC_ADDR=127.0.0.1:50152 MINYI_HTTP_ADDR=127.0.0.1:50182 RUST_LOG=warn \
  "$BIN" serve intake >"$OUT/production.log" 2>&1 &
PID=$!
wait_port 50152
T=$(token)
results+=("$(run_bench production-closed-32 50152 "$T" --clients 32)")
results+=("$(run_bench production-closed-64 50152 "$T" --clients 64)")
results+=("$(run_bench production-open-1000 50152 "$T" --clients 32 --rate 1000)")
results+=("$(run_bench production-open-2000 50152 "$T" --clients 64 --rate 2000)")
kill -TERM $PID; wait $PID || true
psql "$PG_ADMIN" -qc "DROP DATABASE $DB" || true

# --- pipeline: submit → dispatched, embedded and on 1 and 2 replicas of every service ------
PRATE=${PIPELINE_RATE:-100}
PDUR=${PIPELINE_DURATION:-10}
dtoken() { MINYI_JWT_SECRET=$JWT "$BIN" token --role dispatcher --sub bench; }
run_pipe() { # label intake_port dispatch_port extra-args...
  local label=$1 ip=$2 dp=$3; shift 3
  "$BIN" bench pipeline --endpoint "http://127.0.0.1:$ip" --token "$(token)" \
    --dispatcher-token "$(dtoken)" --dispatch-endpoint "http://127.0.0.1:$dp" \
    --rate "$PRATE" --duration "$PDUR" --label "$label" "$@"
}
pipes=()

DATA=$(mktemp -d)
MINYI_DATA_DIR=$DATA MINYI_GRPC_ADDR=127.0.0.1:50153 MINYI_HTTP_ADDR=127.0.0.1:50183 \
  MINYI_JWT_SECRET=$JWT MINYI_ENCRYPTION_KEY=$KEY RUST_LOG=warn "$BIN" dev >"$OUT/pipeline-embedded.log" 2>&1 &
PID=$!
wait_port 50153
pipes+=("$(run_pipe embedded 50153 50153)")
kill -TERM $PID; wait $PID || true
rm -rf "$DATA"

# Production: every service its own process; the catalog and the trained model are made once
# (by the first classification process) in a data directory all processes share.
SHARED=$(mktemp -d)
cluster_pids=()
start_svc() { # service grpc_port
  MINYI_DATA_DIR=$SHARED MINYI_GRPC_ADDR=127.0.0.1:$2 MINYI_HTTP_ADDR=127.0.0.1:$(( $2 + 1000 )) \
    RUST_LOG=warn "$BIN" serve "$1" >>"$OUT/pipeline-$1.log" 2>&1 &
  cluster_pids+=($!)
  wait_port "$2"
}
run_cluster() { # replicas
  local n=$1 db=minyi_bench_r$1_$$ base=$(( 50300 + $1 * 20 ))
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  export MINYI_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
  export MINYI_AMQP_PREFIX="bench$$r$n" MINYI_REDIS_PREFIX="bench$$r$n"
  cluster_pids=()
  local port=$base svc r intake=() dispatch=()
  for svc in classification intake dispatch deadline dashboard; do
    for r in $(seq 1 "$n"); do
      start_svc "$svc" "$port"
      [ "$svc" = intake ] && intake+=("$port")
      [ "$svc" = dispatch ] && dispatch+=("$port")
      port=$(( port + 1 ))
    done
  done
  local also=()
  for p in "${intake[@]:1}"; do also+=(--also-endpoint "http://127.0.0.1:$p"); done
  pipes+=("$(run_pipe "production-${n}x" "${intake[0]}" "${dispatch[0]}" "${also[@]}")")
  kill -TERM "${cluster_pids[@]}"; wait "${cluster_pids[@]}" || true
  psql "$PG_ADMIN" -qc "DROP DATABASE $db" || true
}
run_cluster 1
run_cluster 2
rm -rf "$SHARED"
printf '%s\n' "${pipes[@]}" > "$OUT/pipeline.jsonl"

# --- SLA timers: a million pending in Redis (the timer store; no PostgreSQL effects) --------
timers=()
timers+=("$("$BIN" bench timers --count "${TIMER_COUNT:-1000000}" --delay 60 --spread 120 --workers 2 --label steady-1M)")
timers+=("$("$BIN" bench timers --count "${TIMER_BURST:-200000}" --delay 20 --spread 0 --workers 2 --label burst-200k-at-once)")
printf '%s\n' "${timers[@]}" > "$OUT/timers.jsonl"

printf '%s\n' "${results[@]}" > "$OUT/intake.jsonl"
python3 - "$OUT/intake.jsonl" <<'PY'
import json, sys, datetime, platform, os, subprocess
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
lines = [
  f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), "
  f"release build, client and server on the same machine; `make bench` (deploy/bench.sh), "
  f"{rows[0]['duration_s']:.0f} s per run after 2 s warm-up.", "",
  "| run | clients | offered/s | submits/s | p50 ms | p99 ms | max ms | errors |",
  "|---|---|---|---|---|---|---|---|"]
for r in rows:
  lines.append(f"| {r['label']} | {r['clients']} | {r['offered_per_s'] or 'closed loop'} | {r['submits_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} |")
block = "\n".join(lines)
path = "BENCHMARKS.md"
text = open(path).read()
start, end = "<!-- bench:intake:start -->", "<!-- bench:intake:end -->"
a, b = text.index(start) + len(start), text.index(end)
open(path, "w").write(text[:a] + "\n" + block + "\n" + text[b:])
print(block)
PY

python3 - "$OUT/pipeline.jsonl" <<'PY'
import json, sys, datetime, os, subprocess
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
lines = [
  f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), "
  f"release build, load generator and every process on the same machine; `make bench` (deploy/bench.sh), "
  f"{rows[0]['duration_s']:.0f} s of submits at {rows[0]['offered_per_s']}/s per run.", "",
  "| run | submitted | auto-dispatched | to dispatcher | duplicates | undecided | decided/s | decide p50 / p99 / max ms | dispatch p50 / p99 / max ms |",
  "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
  lines.append(f"| {r['label']} | {r['submitted']} | {r['dispatched']} | {r['to_dispatcher']} | {r['duplicates']} | {r['undecided']} | {r['decided_per_s']:.0f} | "
               f"{r['decide_p50_ms']:.1f} / {r['decide_p99_ms']:.1f} / {r['decide_max_ms']:.0f} | {r['dispatch_p50_ms']:.1f} / {r['dispatch_p99_ms']:.1f} / {r['dispatch_max_ms']:.0f} |")
block = "\n".join(lines)
path = "BENCHMARKS.md"
text = open(path).read()
start, end = "<!-- bench:pipeline:start -->", "<!-- bench:pipeline:end -->"
a, b = text.index(start) + len(start), text.index(end)
open(path, "w").write(text[:a] + "\n" + block + "\n" + text[b:])
print(block)
PY

python3 - "$OUT/timers.jsonl" <<'PY'
import json, sys, datetime, os, subprocess
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
lines = [
  f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), "
  f"release build, Redis {subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split()[2][2:]} on the same machine; "
  "`make bench` (deploy/bench.sh).", "",
  "| run | timers | workers | scheduled/s | peak pending | fired | fired twice | lost | fired/s | lateness p50 / p99 / max ms |",
  "|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
  lines.append(f"| {r['label']} | {r['count']} | {r['workers']} | {r['scheduled_per_s']:.0f} | {r['peak_pending']} | {r['fired']} | {r['fired_twice']} | {r['lost']} | "
               f"{r['fired_per_s']:.0f} | {r['late_p50_ms']:.0f} / {r['late_p99_ms']:.0f} / {r['late_max_ms']:.0f} |")
block = "\n".join(lines)
path = "BENCHMARKS.md"
text = open(path).read()
start, end = "<!-- bench:timers:start -->", "<!-- bench:timers:end -->"
a, b = text.index(start) + len(start), text.index(end)
open(path, "w").write(text[:a] + "\n" + block + "\n" + text[b:])
print(block)
PY
