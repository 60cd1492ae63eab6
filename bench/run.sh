#!/usr/bin/env bash
# End-to-end benchmark: `sluice run` of N synthetic character records (1,000 per page,
# `next` links) from a local static API into a fresh local PostgreSQL, staging to a local
# folder, beside the limits measured in the same run on the same machine:
#   fetch  - a plain sequential fetch of every page (curl, keep-alive)
#   write  - copying the raw pages to disk
#   copy   - psql \copy of the same rows into an empty table with the same primary key
# Prints wall time, records/s and peak RSS of sluice (/usr/bin/time -v).
#
# Each spec is run twice: into PostgreSQL and into an SQLite file.
#
# Usage: bench/run.sh [N ...]            (default: 10000 100000 1000000)
#        BENCH_NESTED=0 bench/run.sh     (skip the nested-table spec)
#        BENCH_SQLITE=0 bench/run.sh     (skip SQLite)
#        bench/run.sh file:100 file:1000 (one CSV download of 100 MB, then 1 GB, into
#                                         PostgreSQL: peak RSS stays flat)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
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
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  "${as_pg[@]}" "$pg_ctl" stop -m immediate -D "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$initdb" --no-sync -A trust -U postgres -E UTF8 --locale=C -D "$work/pg" >/dev/null
"${as_pg[@]}" "$pg_ctl" start -w -D "$work/pg" -l "$work/pg.log" -o "-c port=$pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=8GB -c shared_buffers=512MB" >/dev/null
psql_at() { psql -X -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$pg_port/$1" "${@:2}"; }
seconds() { python3 -c "import sys,time; t=time.perf_counter(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); print(f'{time.perf_counter()-t:.2f}')" "$@"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); date: $(date -u +%Y-%m-%d)"
printf '%-8s %-12s %9s %9s %12s %9s | %8s %8s %8s %9s\n' records spec wall_s rec/s peak_rss_MB rows fetch_s write_s copy_s limits_x2
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
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {split($2, t, ":"); if (length(t) == 3) print t[1]*3600 + t[2]*60 + t[3]; else print t[1]*60 + t[2]}' "$work/time.log")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$work/time.log")
  rows=$(psql_at "$db" -tAc "SELECT count(*) FROM bench_file.orders")
  printf '%-8s %-12s %9s %9s %12s %9s | %s MB of CSV in one download\n' "$rows" "csv_file" "$wall" "$(python3 -c "print(int($rows/$wall))")" "$rss" "$rows" "$mb"
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
  fetch=$(seconds curl -sf -o /dev/null "http://127.0.0.1:$port/api/character?page=[1-$pages]")
  write=$(seconds sh -c "cat $data/page-*.json > $work/raw-copy && sync $work/raw-copy")
  rm -f "$work/raw-copy"
  for spec in character character_nested; do
    [ "$spec" = character_nested ] && [ "${BENCH_NESTED:-1}" = 0 ] && continue
    for wh in postgres sqlite; do
    [ "$wh" = sqlite ] && [ "${BENCH_SQLITE:-1}" = 0 ] && continue
    db="bench_${spec}_$n"
    schema=bench; [ "$spec" = character_nested ] && schema=bench_nested
    rows_sql="SELECT (SELECT count(*) FROM $schema.character)"
    [ "$spec" = character_nested ] && rows_sql="$rows_sql + (SELECT count(*) FROM $schema.appearance)"
    if [ "$wh" = postgres ]; then
      psql_at postgres -c "CREATE DATABASE $db"
      url="postgres://postgres@127.0.0.1:$pg_port/$db"
    else
      url="sqlite://$work/$db.db"
    fi
    rm -rf "$work/staging"
    DATABASE_URL="$url" SLUICE_STAGING="$work/staging" BENCH_API="http://127.0.0.1:$port/api" \
      /usr/bin/time -v "$sluice" -q run "bench/$spec.yaml" >"$work/run.out" 2>"$work/time.log" || { cat "$work/time.log" >&2; exit 1; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {split($2, t, ":"); if (length(t) == 3) print t[1]*3600 + t[2]*60 + t[3]; else print t[1]*60 + t[2]}' "$work/time.log")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$work/time.log")
    if [ "$wh" = postgres ]; then
      rows=$(psql_at "$db" -tAc "$rows_sql")
    else
      rows=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$work/$db.db" "${rows_sql//$schema./}")
    fi
    copy="-"; limits="-"
    if [ "$spec" = character ] && [ "$wh" = postgres ]; then
      psql_at "$db" -c "\\copy (SELECT * FROM bench.character) TO '$work/rows.csv' WITH (FORMAT csv)"
      psql_at "$db" -c "CREATE TABLE bench.copytest (LIKE bench.character INCLUDING ALL)"
      copy=$(seconds psql -X -q "postgres://postgres@127.0.0.1:$pg_port/$db" -c "\\copy bench.copytest FROM '$work/rows.csv' WITH (FORMAT csv)")
      limits=$(python3 -c "print(f'{2*($fetch+$write+$copy):.2f}')")
    fi
    rate=$(python3 -c "print(int($n/$wall))")
    label=${spec#character}; [ "$wh" = sqlite ] && label="lite$label"
    printf '%-8s %-12s %9s %9s %12s %9s | %8s %8s %8s %9s\n' "$n" "$label" "$wall" "$rate" "$rss" "$rows" "$fetch" "$write" "$copy" "$limits"
    if [ "$wh" = sqlite ] && [ "$spec" = character ]; then
      # The load step alone: the staged run again, into an empty file; its rows/s as
      # `sluice load` reports it (load time, from the first staged object to the commit).
      DATABASE_URL="sqlite://$work/${db}_load.db" SLUICE_STAGING="$work/staging" \
        /usr/bin/time -v "$sluice" -q load "bench/$spec.yaml" >"$work/run.out" 2>"$work/time.log" || { cat "$work/time.log" >&2; exit 1; }
      wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {split($2, t, ":"); if (length(t) == 3) print t[1]*3600 + t[2]*60 + t[3]; else print t[1]*60 + t[2]}' "$work/time.log")
      rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$work/time.log")
      load_rate=$(awk '$1 == "character" && $2 == "character" {print $NF}' "$work/run.out")
      printf '%-8s %-12s %9s %9s %12s %9s | load rows/s %s\n' "$n" "lite(load)" "$wall" "$(python3 -c "print(int($n/$wall))")" "$rss" "$n" "$load_rate"
    fi
    done
  done
done
echo "(spec '' = bench/character.yaml, 12 columns; '_nested' adds the appearance table; 'lite' = the same into SQLite, 'lite(load)' = its \`sluice load\` alone. limits_x2 = 2 x (fetch + write + copy), the target for sluice's wall time.)"
