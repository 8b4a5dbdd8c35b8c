#!/usr/bin/env bash
# Submission throughput against `runplane serve`, beside the raw PostgreSQL INSERT rate, with the
# bootstrap admin token and with a researcher's API token (how services and SDKs call).
#
#   bench/bench_submit.sh [WORKERS] [SECONDS] [ROUNDS]
#
# Needs wrk, pgbench and Go, and DATABASE_URL pointing at a PostgreSQL server (a scratch
# database is created there and dropped). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-2}
SECONDS_=${2:-15}
ROUNDS=${3:-3}
PORT=${PORT:-8765}
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL server}"
BASE=${DATABASE_URL/postgresql+psycopg:/postgresql:}
DB=runplane_bench_$$
# The fixed-rate client is Go (bench/openloop): a Python client at 200/s took most of a core
# here and measured its own queueing as much as the server.
OPENLOOP=$PWD/.cache/openloop
(cd bench/openloop && go build -o "$OPENLOOP" .)
if curl -s "127.0.0.1:$PORT/healthz" >/dev/null; then
  echo "port $PORT is in use: stop what listens there, or set PORT" >&2
  exit 1
fi
psql "$BASE" -qc "CREATE DATABASE $DB"
URL=$(.venv/bin/python -c "
from sqlalchemy.engine import make_url; import sys
print(make_url(sys.argv[1]).set(database=sys.argv[2]).render_as_string(hide_password=False))" "$BASE" "$DB")
trap 'kill $SERVER 2>/dev/null || true; sleep 1; psql "$BASE" -qc "DROP DATABASE $DB WITH (FORCE)"' EXIT

psql "$URL" -qc "CREATE TABLE bench_rows (id uuid PRIMARY KEY, name text, spec jsonb, created_at timestamptz)"
DATABASE_URL="$URL" RUNPLANE_LOG_LEVEL=WARNING .venv/bin/runplane migrate >/dev/null
DATABASE_URL="$URL" RUNPLANE_LOG_LEVEL=WARNING .venv/bin/runplane serve --port "$PORT" \
  --workers "$WORKERS" --no-reconciler >/tmp/runplane-bench-serve.log 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
AUTH="Authorization: Bearer runplane-dev-admin-token"
curl -sf -XPOST "127.0.0.1:$PORT/api/v1/projects" -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{"name":"bench"}' >/dev/null
curl -sf -XPUT "127.0.0.1:$PORT/api/v1/policies/global/trainings" -H "$AUTH" \
  -H 'Content-Type: application/json' \
  -d '{"defaults":{"imagePullPolicy":"IfNotPresent","compute":{"cpuCoreLimit":4}},"rules":{"compute":{"gpuDevicesRequest":{"max":8}},"image":{"pattern":"[a-z0-9./:_-]+"}}}' >/dev/null
API_TOKEN=$(curl -sf -XPOST "127.0.0.1:$PORT/api/v1/tokens" -H "$AUTH" \
  -H 'Content-Type: application/json' \
  -d '{"name":"bench-researcher","role":"researcher","projects":["bench"]}' \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["token"])')
export TOKEN
TOKEN=$API_TOKEN RUN=warm wrk -t2 -c8 -d3s -s bench/submit.lua "http://127.0.0.1:$PORT" >/dev/null
echo "== fixed 200 submissions/s (open loop) with the API token, before and after the rounds"
TOKEN=$API_TOKEN RUN=rate1 "$OPENLOOP" -url "http://127.0.0.1:$PORT" -rate 200 -seconds "$SECONDS_"

# The machine's speed drifts (it is shared): each round measures the raw rate and then the
# submissions right after it, and the ratio of the round is what counts; the median is reported.
echo "== $ROUNDS rounds: raw one-row INSERT transactions (pgbench -c 8), then submissions"
echo "   (wrk -c 8) with the API token and with the bootstrap token"
API_RATIOS=()
ADMIN_RATIOS=()
median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
# Each measurement starts right after a CHECKPOINT: the first change to a page after one writes
# the whole page to the WAL, so a rate measured late in the checkpoint cycle reads up to twice the
# one measured early (the raw rate moved between 5,400 and 12,000 tps without it).
checkpoint() { psql "$URL" -qc CHECKPOINT; }
submissions() { # <token> <run>: wrk's summary line
  checkpoint
  TOKEN=$1 RUN=$2 wrk -t2 -c8 -d"${SECONDS_}s" -s bench/submit.lua "http://127.0.0.1:$PORT" | tail -1
}
for round in $(seq "$ROUNDS"); do
  checkpoint
  RAW=$(pgbench -n -c 8 -j 2 -T "$SECONDS_" -f bench/insert.sql "$URL" 2>/dev/null \
    | awk '/^tps/ {print $3}')
  for who in api admin; do
    if [ "$who" = api ]; then OUT=$(submissions "$API_TOKEN" "a$round"); else
      OUT=$(submissions runplane-dev-admin-token "b$round"); fi
    RATE=$(sed -E 's/.*rate ([0-9.]+).*/\1/' <<<"$OUT")
    RATIO=$(awk -v a="$RATE" -v b="$RAW" 'BEGIN {printf "%.3f", a / b}')
    if [ "$who" = api ]; then API_RATIOS+=("$RATIO"); else ADMIN_RATIOS+=("$RATIO"); fi
    printf "round %d: raw %.0f tps | %-5s token: %s | ratio %s\n" "$round" "$RAW" "$who" "$OUT" "$RATIO"
  done
done
printf "median ratio: API token %s, bootstrap token %s\n" "$(median "${API_RATIOS[@]}")" \
  "$(median "${ADMIN_RATIOS[@]}")"
TOKEN=$API_TOKEN RUN=rate2 "$OPENLOOP" -url "http://127.0.0.1:$PORT" -rate 200 -seconds "$SECONDS_"
