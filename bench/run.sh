#!/usr/bin/env bash
# End-to-end benchmark: `sluice run` of N synthetic character records (1,000 per page,
# `next` links) from a local static API into a fresh local PostgreSQL and into SQLite,
# staging to a local folder, beside the limits measured in the same pass on the same machine:
#   copy   - psql \copy of the same rows (CSV) into an empty table with the same primary key
#            (the slowest stage's limit: sluice's ratios are to this)
#   parse  - parsing every page into borrowed structs (serde derive), the least a JSON
#            reader does (`bench_api parse`)
#   fetch  - a plain sequential fetch of every page (curl, keep-alive)
#   write  - copying the raw pages to disk
# The machine is shared and noisy: every measurement is taken BENCH_RUNS times (3 by
# default), round after round, and the summary gives the medians, the ratios of the
# medians to the COPY limit's, and the highest peak RSS (/usr/bin/time -v) of the runs.
#
# Usage: bench/run.sh [N ...]            (default: 10000 100000 1000000)
#        BENCH_RUNS=1 bench/run.sh       (one round)
#        BENCH_NESTED=0 bench/run.sh     (skip the nested-table spec)
#        BENCH_SQLITE=0 bench/run.sh     (skip SQLite)
#        BENCH_S3=0 bench/run.sh         (skip the rounds that stage to S3: an S3-compatible
#                                         server on loopback, `bench_api s3`, then PostgreSQL)
#        bench/run.sh file:100 file:1000 (one CSV download of 100 MB, then 1 GB, into
#                                         PostgreSQL: peak RSS stays flat)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
runs=${BENCH_RUNS:-3}
port=${BENCH_PORT:-18080}
pg_port=${BENCH_PG_PORT:-15432}

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
find_pg() {
  command -v "$1" 2>/dev/null && return
  ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort | tail -n 1
}
initdb=$(find_pg initdb); pg_ctl=$(find_pg pg_ctl)
[ -n "$initdb" ] || { echo "bench: install PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

cargo build --release --quiet --bin sluice --example bench_api
sluice=$PWD/target/release/sluice
api=$PWD/target/release/examples/bench_api

work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 777 "$work"
as_pg=()
[ "$(id -u)" = 0 ] && { chown postgres: "$work"; as_pg=(runuser -u postgres --); }
server=""
s3server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  [ -n "$s3server" ] && kill "$s3server" 2>/dev/null || true
  "${as_pg[@]}" "$pg_ctl" stop -m immediate -D "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$initdb" --no-sync -A trust -U postgres -E UTF8 --locale=C -D "$work/pg" >/dev/null
"${as_pg[@]}" "$pg_ctl" start -w -D "$work/pg" -l "$work/pg.log" -o "-c port=$pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB -c shared_buffers=512MB" >/dev/null
s3port=$((port + 2))
if [ "${BENCH_S3:-1}" != 0 ]; then
  mkdir -p "$work/s3/bench"
  "$api" s3 "$work/s3" "$s3port" >/dev/null &
  s3server=$!
fi
psql_at() { psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$pg_port/$1" "${@:2}"; }
seconds() { python3 -c "import sys,time; t=time.perf_counter(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(f'{time.perf_counter()-t:.2f}')" "$@"; }
# Wall seconds and peak RSS (MB) from a /usr/bin/time -v log.
wall_of() { awk -F': ' '/Elapsed \(wall clock\)/ {split($2, t, ":"); if (length(t) == 3) print t[1]*3600 + t[2]*60 + t[3]; else print t[1]*60 + t[2]}' "$1"; }
rss_of() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }

results=$work/results.tsv
: >"$results"
# One measurement: size, what, seconds, peak RSS (MB, or -), rows (or -).
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; printf '  %-9s %-12s %8s s %8s MB %9s rows\n' "$@"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); date: $(date -u +%Y-%m-%d); commit: $(git rev-parse --short HEAD 2>/dev/null || echo -); $runs rounds"
file_bench() {
  # One CSV file of $1 MB, made as it is sent, read as it streams in (bench/csv_file.yaml):
  # peak RSS stays flat as the file grows.
  local mb=$1 fport=$((port + 1)) db="bench_file_$1"
  "$api" csv $((mb * 1000000)) "$fport" >/dev/null &
  local fserver=$!
  sleep 0.3
  psql_at postgres -c "CREATE DATABASE $db"
  rm -rf "$work/staging"
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/$db" SLUICE_STAGING="$work/staging" BENCH_API="http://127.0.0.1:$fport" \
    /usr/bin/time -v "$sluice" -q run bench/csv_file.yaml >"$work/run.out" 2>"$work/time.log" || { cat "$work/time.log" >&2; kill $fserver; exit 1; }
  kill $fserver 2>/dev/null || true
  local wall rss rows
  wall=$(wall_of "$work/time.log"); rss=$(rss_of "$work/time.log")
  rows=$(psql_at "$db" -tAc "SELECT count(*) FROM bench_file.orders")
  printf '%-8s %-12s %9s %9s %12s %9s | %s MB of CSV in one download\n' "$rows" "csv_file" "$wall" "$(python3 -c "print(int($rows/$wall))")" "$rss" "$rows" "$mb"
}

# One `sluice run` of bench/$2.yaml into $3 (postgres | sqlite | s3: PostgreSQL, staging
# to S3), round $4, recorded as $5.
sluice_run() {
  local n=$1 spec=$2 wh=$3 round=$4 label=$5 url db rows staging env=()
  db="bench_${spec}_${n}_$round"
  staging="$work/staging"
  if [ "$wh" = s3 ]; then
    db="${db}_s3"; wh=postgres; staging="s3://bench/$db"
    env=(AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
      AWS_ENDPOINT_URL_S3="http://127.0.0.1:$s3port" AWS_EC2_METADATA_DISABLED=true)
  fi
  local schema=bench; [ "$spec" = character_nested ] && schema=bench_nested
  local rows_sql="SELECT (SELECT count(*) FROM $schema.character)"
  [ "$spec" = character_nested ] && rows_sql="$rows_sql + (SELECT count(*) FROM $schema.appearance)"
  if [ "$wh" = postgres ]; then
    psql_at postgres -c "CREATE DATABASE $db"
    url="postgres://postgres@127.0.0.1:$pg_port/$db"
  else
    url="sqlite://$work/$db.db"
  fi
  rm -rf "$work/staging" "$work/s3/bench/"*
  env "${env[@]}" DATABASE_URL="$url" SLUICE_STAGING="$staging" BENCH_API="http://127.0.0.1:$port/api" \
    /usr/bin/time -v "$sluice" -q run "bench/$spec.yaml" >"$work/run.out" 2>"$work/time.log" || { cat "$work/time.log" >&2; exit 1; }
  local wall rss
  wall=$(wall_of "$work/time.log"); rss=$(rss_of "$work/time.log")
  if [ "$wh" = postgres ]; then
    rows=$(psql_at "$db" -tAc "$rows_sql")
  else
    rows=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$work/$db.db" "${rows_sql//$schema./}")
  fi
  record "$n" "$label" "$wall" "$rss" "$rows"
  if [ "$spec" = character ] && [ "$wh" = postgres ] && [ ${#env[@]} = 0 ]; then
    # The COPY limit: the same rows, as CSV, into an empty table with the same primary key.
    [ -f "$work/rows-$n.csv" ] || psql_at "$db" -c "\\copy (SELECT * FROM bench.character) TO '$work/rows-$n.csv' WITH (FORMAT csv)"
    psql_at "$db" -c "CREATE TABLE bench.copytest (LIKE bench.character INCLUDING ALL)"
    record "$n" copy "$(seconds psql -X -q "postgres://postgres@127.0.0.1:$pg_port/$db" -c "\\copy bench.copytest FROM '$work/rows-$n.csv' WITH (FORMAT csv)")" - "$rows"
  fi
  if [ "$spec" = character ] && [ "$wh" = sqlite ]; then
    # The load step alone: the staged run again, into an empty file.
    DATABASE_URL="sqlite://$work/${db}_load.db" SLUICE_STAGING="$work/staging" \
      /usr/bin/time -v "$sluice" -q load "bench/$spec.yaml" >"$work/run.out" 2>"$work/time.log" || { cat "$work/time.log" >&2; exit 1; }
    record "$n" "lite(load)" "$(wall_of "$work/time.log")" "$(rss_of "$work/time.log")" "$n"
    rm -f "$work/${db}_load.db"
  fi
  if [ "$wh" = postgres ]; then psql_at postgres -c "DROP DATABASE $db"; else rm -f "$work/$db.db"; fi
}

for n in "${sizes[@]}"; do
  case $n in file:*) file_bench "${n#file:}"; continue ;; esac
  pages=$(( (n + 999) / 1000 ))
  data="$work/api-$n"
  "$api" generate "$data" "$n" 1000 "http://127.0.0.1:$port" >/dev/null
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  "$api" serve "$data" "$port" >/dev/null &
  server=$!
  sleep 0.3
  for round in $(seq 1 "$runs"); do
    echo "$n records, round $round of $runs"
    record "$n" fetch "$(seconds curl -sf -o /dev/null "http://127.0.0.1:$port/api/character?page=[1-$pages]")" - -
    record "$n" write "$(seconds sh -c "cat $data/page-*.json > $work/raw-copy && sync $work/raw-copy")" - -
    rm -f "$work/raw-copy"
    record "$n" parse "$("$api" parse "$data" 2>/dev/null)" - "$n"
    for spec in character character_nested; do
      [ "$spec" = character_nested ] && [ "${BENCH_NESTED:-1}" = 0 ] && continue
      for wh in postgres sqlite s3; do
        [ "$wh" = sqlite ] && [ "${BENCH_SQLITE:-1}" = 0 ] && continue
        [ "$wh" = s3 ] && [ "${BENCH_S3:-1}" = 0 ] && continue
        label=flat; [ "$spec" = character_nested ] && label=nested
        [ "$wh" = sqlite ] && label="lite-$label"
        [ "$wh" = s3 ] && label="s3-$label"
        sluice_run "$n" "$spec" "$wh" "$round" "$label"
      done
    done
  done
  rm -rf "$data" "$work/rows-$n.csv"
done

[ -s "$results" ] || exit 0
echo
echo "medians of $runs rounds; x copy = the median over the COPY limit's median; peak RSS = the highest of the rounds"
python3 - "$results" <<'EOF'
import sys, statistics
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
sizes = list(dict.fromkeys(r[0] for r in rows))
order = ["copy", "parse", "fetch", "write", "flat", "nested", "lite-flat", "lite(load)", "lite-nested", "s3-flat", "s3-nested"]
print(f"{'records':>9} {'what':<12} {'median_s':>9} {'x copy':>7} {'records/s':>10} {'peak_MB':>8} {'rows':>9} {'runs':>14}")
for n in sizes:
    mine = [r for r in rows if r[0] == n]
    copy = [float(r[2]) for r in mine if r[1] == "copy"]
    base = statistics.median(copy) if copy else None
    for what in order:
        got = [r for r in mine if r[1] == what]
        if not got:
            continue
        walls = [float(r[2]) for r in got]
        med = statistics.median(walls)
        ratio = f"{med / base:.2f}" if base else "-"
        rss = [float(r[3]) for r in got if r[3] != "-"]
        peak = f"{max(rss):.1f}" if rss else "-"
        rate = f"{int(int(n) / med):,}" if med > 0 and what not in ("fetch", "write") else "-"
        print(f"{int(n):>9,} {what:<12} {med:>9.2f} {ratio:>7} {rate:>10} {peak:>8} {got[0][4]:>9} {' '.join(f'{w:.2f}' for w in walls):>14}")
print("(flat = bench/character.yaml, 12 columns, into PostgreSQL; nested adds the appearance table; lite = the same into SQLite;")
print(" lite(load) = `sluice load` alone of the flat run's staged parts into SQLite; s3 = PostgreSQL, staging to S3 on loopback.")
print(" Targets at 1M: flat <= 1.3x copy, nested <= 2.0x, peak RSS <= 48 MB, <= 64 MB staging to S3, and the same at 3M.)")
EOF
