#!/bin/sh
# Times the writer's rollup catch-up: copies a seeded data dir (hv-seed), starts
# `hitvault serve` on the copy and prints the seconds from the start until the
# writer logs its last "stats rollups refreshed" with more=false (every day
# before today built), and how many turns it took.
#
#     rollup-catchup.sh <hitvault binary> <seeded data dir> [work dir]
set -eu
bin=$1 seeded=$2 work=${3:-$(mktemp -d)}
rm -rf "$work/data" "$work/log" && mkdir -p "$work" && cp -r "$seeded" "$work/data"
: > "$work/log"
chmod 711 "$work"
if [ "$(id -u)" = 0 ]; then chown -R nobody "$work/data"; export HITVAULT_USER=nobody; fi
start=$(date +%s.%N)
HITVAULT_LOG=warn,hitvault=debug "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
    2> "$work/log" > /dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until grep -q 'stats rollups refreshed.*more=false' "$work/log"; do
    kill -0 $pid 2>/dev/null || { echo "the daemon exited; see $work/log"; exit 1; }
    sleep 0.2
done
end=$(date +%s.%N)
turns=$(grep -c 'stats rollups refreshed' "$work/log")
echo "catch-up $(echo "$end - $start" | bc) s in $turns turns (from the start, migration included)"
