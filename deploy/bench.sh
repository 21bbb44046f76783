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
export MINYI_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/%2f" MINYI_AMQP_PREFIX="bench$$"
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
