#!/usr/bin/env bash
# Proto compatibility: `buf breaking` on proto/ against the last released contracts, so a change
# that would break an older client or an older replica during a rolling upgrade (a removed or
# renumbered field, a changed type, a removed RPC) fails here. The baseline is the git commit in
# proto/BASELINE (or $PROTO_BASELINE, any git ref); move it forward when a version is released.
# buf comes from the npm registry (@bufbuild/buf, pinned) into a cache outside the repository.
#
#   bash deploy/proto-compat.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MINYI_VALIDATE_CACHE:-$HOME/.cache/minyi-validate}/buf
BUF_VERSION=1.75.0
BASE=${PROTO_BASELINE:-$(tr -d '[:space:]' < "$ROOT/proto/BASELINE")}

if [ ! -x "$CACHE/node_modules/.bin/buf" ] || [ "$("$CACHE/node_modules/.bin/buf" --version)" != "$BUF_VERSION" ]; then
  mkdir -p "$CACHE"
  (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error --no-save "@bufbuild/buf@$BUF_VERSION" >/dev/null)
fi
BUF=$CACHE/node_modules/.bin/buf

if ! git -C "$ROOT" cat-file -e "$BASE^{commit}" 2>/dev/null; then
  echo "proto-compat: baseline $BASE is not in this clone's history (a shallow clone?)" >&2
  exit 1
fi
cd "$ROOT"
echo "==> buf build proto"
"$BUF" build proto
echo "==> buf breaking proto against $BASE"
"$BUF" breaking proto --against ".git#ref=$BASE,subdir=proto"
echo "==> proto contracts are compatible with $BASE"
