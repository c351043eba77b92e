#!/usr/bin/env bash
# Runs the benchmark suite and rewrites docs/benchmarks.md.
#
# Usage: bench/run.sh [quick|full]   (default full)
#   quick: a few seconds per case, under five minutes in all
#   full:  12 s per case plus 60 s memory-flatness runs
#
# Needs wrk, pgbench and psql, and a Postgres server at postgres://postgres@127.0.0.1:5432
# that lets the user create the database peripherals_bench. All traffic stays on 127.0.0.1.
set -euo pipefail

mode="${1:-full}"
case "$mode" in
  quick|full) ;;
  *) echo "usage: bench/run.sh [quick|full]" >&2; exit 2 ;;
esac

missing=0
require() {
  local tool="$1" package="$2"
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is not installed; install it with: apt-get install $package" >&2
    missing=1
  fi
}
require wrk wrk
require pgbench postgresql-contrib
require psql postgresql-client
require python3 python3
require cargo "a Rust toolchain (https://rustup.rs)"
if [ "$missing" -ne 0 ]; then
  exit 1
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "warning: Postgres is not accepting connections on 127.0.0.1:5432; the Postgres cases will be reported as not run" >&2
fi

cd "$(dirname "$0")/.."
exec python3 bench/harness/main.py "$mode"
