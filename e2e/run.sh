#!/usr/bin/env bash
# Run the browser tests against a fresh demo node. Needs Debian's chromium and Node.js with npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
# The same build as the README test command (it builds target/debug/caravan for tests/cli.rs), so CI
# reuses it instead of compiling the dependency tree a second time with other features.
cargo test --workspace --no-run --quiet
cd "$here"
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent
mkdir -p artifacts
data="$(mktemp -d)"
log="$data/node.log"
"$target/debug/caravan" demo --listen 127.0.0.1:0 --data "$data" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  base="$(sed -n 's|^Caravan node listening on \(http://[^/]*\)/$|\1|p' "$log")"
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || { cat "$log"; echo "node did not start"; exit 1; }
BASE="$base" ARTIFACTS="$here/artifacts" node consultation.mjs
BASE="$base" ARTIFACTS="$here/artifacts" node certificates.mjs
BASE="$base" ARTIFACTS="$here/artifacts" node surveillance.mjs
# Video visits: starts its own nodes (with TURN flags) and a private coturn (Debian's `coturn`).
CARAVAN_BIN="$target/debug/caravan" ARTIFACTS="$here/artifacts" node visits.mjs
BASE="$base" ARTIFACTS="$here/artifacts" node viewer.mjs
BASE="$base" ARTIFACTS="$here/artifacts" node slides.mjs
