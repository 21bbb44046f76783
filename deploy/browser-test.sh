#!/usr/bin/env bash
# Browser test of the supervisor dashboard: headless Chromium (Debian's `chromium` package,
# driven by playwright-core; no browser download) against a fresh `minyi dev` on free ports.
#
#   bash deploy/browser-test.sh                                  # the test
#   SCREENSHOT=docs/dashboard.png bash deploy/browser-test.sh    # the test, then the screenshot
#
# The test seeds petitions over Open311, acts as a handler with `minyi-handler`, and checks the
# page against figures it computes itself (tests/browser/dashboard.test.mjs). The screenshot is
# taken on a second instance filled with 30 days of history (the ignored Rust test
# `seed_history_for_the_screenshot` writes its minyi.db).
#
# Installs chromium (and, for a screenshot, CJK fonts) with apt when missing, as root
# or with sudo, like deploy/ensure-services.sh. Exits non-zero when the test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
need=()
[ -x "$CHROMIUM" ] || need+=(chromium)
# CJK fonts matter only for the screenshot (the test reads the DOM, not pixels).
if [ -n "${SCREENSHOT:-}" ]; then fc-list 2>/dev/null | grep -qi "cjk" || need+=(fonts-noto-cjk); fi
command -v node >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "browser-test: installing ${need[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
cargo build -q -p minyi --bins
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac
bin="$target/debug"

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

pids=()
dirs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "${dirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

# start_minyi DIR [VAR=VALUE…]: `minyi dev` on DIR and free ports; sets grpc_port, http_port.
start_minyi() {
  local data=$1
  shift
  grpc_port=$(free_port)
  http_port=$(free_port)
  env MINYI_DATA_DIR="$data" MINYI_GRPC_ADDR="127.0.0.1:$grpc_port" \
    MINYI_HTTP_ADDR="127.0.0.1:$http_port" "$@" "$bin/minyi" dev >"$data/minyi.log" 2>&1 &
  pids+=($!)
  local pid=$!
  for _ in $(seq 1 120); do
    if [ -s "$data/credentials.json" ] && (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "browser-test: minyi dev did not start; its log:" >&2
  cat "$data/minyi.log" >&2
  return 1
}

data=$(mktemp -d)
dirs+=("$data")
# 20 synthetic examples per item (not the default 4) make the classifier confident enough to
# dispatch some petitions by itself; training takes ~15 s.
start_minyi "$data" MINYI_CLASSIFIER_EXAMPLES_PER_ITEM=20
status=0
(cd tests/browser && MINYI_HTTP="http://127.0.0.1:$http_port" MINYI_GRPC="http://127.0.0.1:$grpc_port" \
  MINYI_DATA_DIR="$data" MINYI_BIN_DIR="$bin" CHROMIUM="$CHROMIUM" node dashboard.test.mjs) || status=$?
if [ "$status" != 0 ]; then
  echo "browser-test: FAILED; the last lines of minyi's log:" >&2
  tail -n 40 "$data/minyi.log" >&2
  exit "$status"
fi

if [ -n "${SCREENSHOT:-}" ]; then
  case $SCREENSHOT in /*) shot=$SCREENSHOT ;; *) shot=$root/$SCREENSHOT ;; esac
  history=$(mktemp -d)
  dirs+=("$history")
  MINYI_SEED_DIR="$history" cargo test -q -p minyi-tests --test dashboard -- --ignored \
    --exact seed_history_for_the_screenshot >/dev/null
  start_minyi "$history"
  (cd tests/browser && MINYI_HTTP="http://127.0.0.1:$http_port" MINYI_DATA_DIR="$history" \
    CHROMIUM="$CHROMIUM" SCREENSHOT="$shot" node screenshot.mjs)
fi
