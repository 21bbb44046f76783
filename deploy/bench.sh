#!/usr/bin/env bash
# make bench: intake throughput and latency (embedded and production backends), the pipeline
# submit → dispatched (embedded, and one and two replicas of every service), and a million SLA
# timers in Redis. Starts each cluster shape from the release binary, drives it with
# `minyi bench intake|pipeline|timers`, and writes the results to target/bench/*.jsonl and,
# through deploy/bench-report.py, between the markers in BENCHMARKS.md. Ports are below the
# kernel's ephemeral range (32768-60999), where an outgoing connection could already hold one.
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
MINYI_DATA_DIR=$DATA MINYI_GRPC_ADDR=127.0.0.1:21151 MINYI_HTTP_ADDR=127.0.0.1:21181 \
  MINYI_JWT_SECRET=$JWT MINYI_ENCRYPTION_KEY=$KEY RUST_LOG=warn "$BIN" dev >"$OUT/embedded.log" 2>&1 &
PID=$!
wait_port 21151
T=$(token)
results+=("$(run_bench embedded-closed-32 21151 "$T" --clients 32)")
results+=("$(run_bench embedded-open-1000 21151 "$T" --clients 32 --rate 1000)")
kill -TERM $PID; wait $PID || true
rm -rf "$DATA"

# --- production (PostgreSQL + RabbitMQ + Redis) -----------------------------------------
DB=minyi_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB"
export MINYI_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
export MINYI_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" MINYI_AMQP_PREFIX="bench$$" MINYI_AMQP_QUEUE_EXPIRES_SECS=600
export MINYI_REDIS_URL="redis://127.0.0.1:6379/" MINYI_REDIS_PREFIX="bench$$"
export MINYI_JWT_SECRET=$JWT MINYI_ENCRYPTION_KEY=$KEY MINYI_DATABASE_MAX_CONNECTIONS=32
MINYI_GRPC_ADDR=127.0.0.1:21152 MINYI_HTTP_ADDR=127.0.0.1:21182 RUST_LOG=warn \
  "$BIN" serve intake >"$OUT/production.log" 2>&1 &
PID=$!
wait_port 21152
T=$(token)
results+=("$(run_bench production-closed-32 21152 "$T" --clients 32)")
results+=("$(run_bench production-closed-64 21152 "$T" --clients 64)")
results+=("$(run_bench production-open-1000 21152 "$T" --clients 32 --rate 1000)")
results+=("$(run_bench production-open-2000 21152 "$T" --clients 64 --rate 2000)")
kill -TERM $PID; wait $PID || true
psql "$PG_ADMIN" -qc "DROP DATABASE $DB" || true

# --- pipeline: submit → dispatched, embedded and on 1 and 2 replicas of every service ------
# Offered rates, each for PDUR seconds on the same running cluster.
PRATES=${PIPELINE_RATES:-100 400}
PDUR=${PIPELINE_DURATION:-10}
dtoken() { MINYI_JWT_SECRET=$JWT "$BIN" token --role dispatcher --sub bench; }
run_pipe() { # label intake_port dispatch_port extra-args... (one result line per rate)
  local label=$1 ip=$2 dp=$3 rate; shift 3
  for rate in $PRATES; do
    "$BIN" bench pipeline --endpoint "http://127.0.0.1:$ip" --token "$(token)" \
      --dispatcher-token "$(dtoken)" --dispatch-endpoint "http://127.0.0.1:$dp" \
      --rate "$rate" --duration "$PDUR" --label "$label" "$@"
  done
}
pipes=()

DATA=$(mktemp -d)
MINYI_DATA_DIR=$DATA MINYI_GRPC_ADDR=127.0.0.1:21153 MINYI_HTTP_ADDR=127.0.0.1:21183 \
  MINYI_JWT_SECRET=$JWT MINYI_ENCRYPTION_KEY=$KEY RUST_LOG=warn "$BIN" dev >"$OUT/pipeline-embedded.log" 2>&1 &
PID=$!
wait_port 21153
pipes+=("$(run_pipe embedded 21153 21153)")
kill -TERM $PID; wait $PID || true
rm -rf "$DATA"

# Production: every service its own process; the trained model is made once (by the first
# classification process) in a data directory all processes share; the catalog is in the
# database.
SHARED=$(mktemp -d)
cluster_pids=()
start_svc() { # service grpc_port
  MINYI_DATA_DIR=$SHARED MINYI_GRPC_ADDR=127.0.0.1:$2 MINYI_HTTP_ADDR=127.0.0.1:$(( $2 + 1000 )) \
    RUST_LOG=warn "$BIN" serve "$1" >>"$OUT/pipeline-$1.log" 2>&1 &
  cluster_pids+=($!)
  wait_port "$2"
}
run_cluster() { # replicas [label-suffix]
  local n=$1 suffix=${2:-} db=minyi_bench_r$1${2:+a}_$$ base=$(( 21300 + $1 * 20 ))
  [ -n "$suffix" ] && base=$(( base + 100 ))
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db"
  export MINYI_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
  export MINYI_AMQP_PREFIX="bench$$r$n${suffix:+a}" MINYI_REDIS_PREFIX="bench$$r$n${suffix:+a}"
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
  pipes+=("$(run_pipe "production-${n}x$suffix" "${intake[0]}" "${dispatch[0]}" "${also[@]}")")
  kill -TERM "${cluster_pids[@]}"; wait "${cluster_pids[@]}" || true
  psql "$PG_ADMIN" -qc "DROP DATABASE $db" || true
}
run_cluster 1
run_cluster 2
# The demo catalog's synthetic petitions rarely reach the default 0.98 auto-dispatch precision
# (~4 % go out without a person), which leaves the dispatch stage nearly idle. This run lowers
# the target so that ~80 % are dispatched automatically, as issue 3's target coverage would:
# the whole pipeline at work. (The shared model is retrained for it, so it runs last.)
export MINYI_AUTO_DISPATCH_PRECISION=0.5
run_cluster 1 -auto80
unset MINYI_AUTO_DISPATCH_PRECISION
rm -rf "$SHARED"
printf '%s\n' "${pipes[@]}" > "$OUT/pipeline.jsonl"

# --- SLA timers: a million pending in Redis (the timer store; no PostgreSQL effects) --------
timers=()
timers+=("$("$BIN" bench timers --count "${TIMER_COUNT:-1000000}" --delay 60 --spread 120 --workers 2 --label steady-1M)")
timers+=("$("$BIN" bench timers --count "${TIMER_BURST:-200000}" --delay 20 --spread 0 --workers 2 --label burst-200k-at-once)")
printf '%s\n' "${timers[@]}" > "$OUT/timers.jsonl"

printf '%s\n' "${results[@]}" > "$OUT/intake.jsonl"
for section in intake pipeline timers; do
  python3 deploy/bench-report.py "$section" "$OUT/$section.jsonl"
done
