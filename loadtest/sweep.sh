#!/usr/bin/env bash
# The BENCHMARKS.md sweep: for each concurrency, a fresh `switchboard serve` (release, SQLite with
# 1,000 seeded customers, chaos on) with the provider stand-ins in their own process, and
# `switchboard-loadtest` ramping to that many Media Streams conversations and holding them.
#
#   cargo build --release -p switchboard -p switchboard-loadtest
#   loadtest/sweep.sh 100 500 1000 2000          # results in ${OUT:-/tmp/sweep}
#
# Environment:
#   OUT        where reports, charts and logs go (default /tmp/sweep)
#   DELAYS     "zero" (default): the stand-ins answer at once (time to first token, per-token,
#              speech latency and final-transcript delay all 0), so a turn's latency is the STT
#              endpointing silence (stt.endpointing_ms, 300 ms) plus what the server adds;
#              "default": the stand-ins' realistic delays (150 ms, 20 ms/token, 100 ms, 50 ms)
#   HOLD_S     seconds to hold the concurrency after the ramp (default 30)
#   RAMP       calls started per second while ramping (default 100)
#   TRANSPORT  media (default), relay or mixed
#   SSE        operator SSE clients held during the run (default 0)
#   EXTRA      more switchboard-loadtest flags
#   STANDINS_THREADS, LOADGEN_THREADS
#              tokio worker threads of the stand-ins and of the load generator (default: one per
#              core); the server always gets one per core
#   BIN        where the release binaries are (default target/release): A/B runs of two builds
#   LOADGEN_NICE, STANDINS_NICE
#              scheduling niceness of the load generator and of the stand-ins (default 0, as
#              the server); negative values need root
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
OUT=${OUT:-/tmp/sweep}
DELAYS=${DELAYS:-zero}
HOLD_S=${HOLD_S:-30}
RAMP=${RAMP:-100}
TRANSPORT=${TRANSPORT:-media}
SSE=${SSE:-0}
PORT=18080
STANDINS=127.0.0.1:18090
mkdir -p "$OUT"
[ -x "$BIN/switchboard" ] && [ -x "$BIN/switchboard-loadtest" ] || {
    echo "build first: cargo build --release -p switchboard -p switchboard-loadtest" >&2
    exit 2
}

case "$DELAYS" in
    zero) delay_flags=(--ttft-ms 0 --token-ms 0 --tts-latency-ms 0 --stt-final-delay-ms 0) ;;
    default) delay_flags=() ;;
    *) echo "DELAYS must be zero or default" >&2; exit 2 ;;
esac

export SWITCHBOARD__DATABASE__URL="sqlite://$OUT/sweep.db"
export SWITCHBOARD__PERSISTENCE__JOURNAL_PATH="$OUT/journal"
export SWITCHBOARD__SERVER__BIND="127.0.0.1:$PORT"
export SWITCHBOARD__SERVER__PUBLIC_URL="http://127.0.0.1:$PORT"
export SWITCHBOARD__LOG__LEVEL=warn
export SWITCHBOARD__CHAOS__ENABLED=true
export SWITCHBOARD__LLM__BASE_URL="http://$STANDINS/v1"
export SWITCHBOARD__TTS__BASE_URL="http://$STANDINS/v1"
export SWITCHBOARD__STT__BASE_URL="http://$STANDINS/v1"
# Enough descriptors for thousands of sockets (each call: media socket, STT socket, HTTP).
ulimit -n 65536 2>/dev/null || true

if [ ! -s "$OUT/sweep.db" ]; then
    "$BIN/switchboard" seed --customers 1000 >/dev/null
fi

env ${STANDINS_THREADS:+TOKIO_WORKER_THREADS=$STANDINS_THREADS} nice -n "${STANDINS_NICE:-0}" "$BIN/switchboard" standins --bind "$STANDINS" "${delay_flags[@]}" >"$OUT/standins.log" 2>&1 &
standins=$!
trap 'kill $standins 2>/dev/null || true; [ -n "${server:-}" ] && kill $server 2>/dev/null || true' EXIT

# The machine's speed today: shared 2-core VMs of the same kind differ by 2x or more from one
# day to the next, so every sweep records a fixed single-core job (lower is faster).
calib=$( { /usr/bin/time -f %e sh -c 'head -c 300M /dev/zero | sha256sum >/dev/null'; } 2>&1 )
echo "== machine: sha256 of 300 MB in $calib s; $(nproc) cores" | tee "$OUT/machine.txt"

for n in "$@"; do
    "$BIN/switchboard" serve >"$OUT/serve-$n.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    sleep 1 # idle RSS settles after start-up
    echo "== $n concurrent calls (delays: $DELAYS, transport: $TRANSPORT, load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    cpu_before=$(head -1 /proc/stat)
    # shellcheck disable=SC2086
    env ${LOADGEN_THREADS:+TOKIO_WORKER_THREADS=$LOADGEN_THREADS} nice -n "${LOADGEN_NICE:-0}" "$BIN/switchboard-loadtest" --url "http://127.0.0.1:$PORT" --calls "$n" --ramp-per-sec "$RAMP" \
        --hold-s "$HOLD_S" --transport "$TRANSPORT" --turns 3 --chaos-fraction 0.02 \
        --sse-clients "$SSE" --server-pid "$server" --quiet \
        --report "$OUT/report-$n.json" --chart "$OUT/chart-$n.png" ${EXTRA:-} | tee "$OUT/summary-$n.txt" || true
    curl -fsS "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics-$n.txt" || true
    # A shared VM's host can take the cores away (steal in /proc/stat): a run that had them
    # taken says so, and its tails are the host's, not the server's.
    echo "$cpu_before" "$(head -1 /proc/stat)" | awk '{
        for (i = 2; i <= 9; i++) { d = $(i + 11) - $i; total += d; if (i == 5) idle = d; if (i == 9) steal = d }
        printf "== the machine during the run: %.1f %% idle, %.1f %% stolen by the host\n", 100 * idle / total, 100 * steal / total
    }' | tee -a "$OUT/summary-$n.txt"
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
done
