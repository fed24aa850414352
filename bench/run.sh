#!/bin/sh
# run.sh runs the session benchmarks (Doorless, go.mau.fi/libsignal and the bare
# primitives side by side) and summarises them with benchstat.
#
#	./run.sh                  # -cpu 1 -count 6, about three minutes
#	COUNT=10 ./run.sh         # more repetitions, tighter confidence intervals
#	BENCH=OneChain ./run.sh   # a subset (a -bench regexp)
#
# It writes, under results/ (or $OUT):
#	raw.txt        the go test output, benchstat's input
#	summary.txt    machine, calibration and benchstat tables
set -eu

cd "$(dirname "$0")"
COUNT=${COUNT:-6}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-1s}
OUT=${OUT:-results}
BENCHSTAT=${BENCHSTAT:-"go run golang.org/x/perf/cmd/benchstat@latest"}
mkdir -p "$OUT"

cmd="go test -run ^\$ -bench $BENCH -benchmem -cpu 1 -count $COUNT -benchtime $BENCHTIME -timeout 30m ."
echo "running: $cmd" >&2
# shellcheck disable=SC2086
$cmd | tee "$OUT/raw.txt"

{
	echo "# Doorless session benchmarks"
	echo
	echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "command: $cmd"
	echo "go:      $(go version)"
	echo "nproc:   $(nproc)"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min, at the end of the run)"
	echo
	lscpu | head -20
	echo
	echo "## Calibration"
	go test -run '^TestCalibration$' -count 1 -v . | grep -E 'bench_test.go'
	echo
	echo "## Side by side (ratios against impl=primitives)"
	echo
	$BENCHSTAT -col /impl -filter '-.name:Primitive' "$OUT/raw.txt"
	echo
	echo "## Primitives one by one"
	echo
	$BENCHSTAT -filter '.name:Primitive' "$OUT/raw.txt"
} >"$OUT/summary.txt" 2>&1

echo "wrote $OUT/raw.txt and $OUT/summary.txt" >&2
