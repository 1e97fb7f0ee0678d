#!/usr/bin/env bash
# GPU-host work in three calls that each fit the 10-minute limit, run back to back on one warm host
# (A in the same command as the bundle's last staging step). Each call gets a fresh copy of the local
# checkout; what must outlive a call (the tuned tile table, the cute kernel cache, Triton's cache)
# is kept outside it, under /tmp, for as long as the host stays up.
#   A: gate check of triton and cute on gpu-smoke, triton tile tuning (-> triton_tiles.json),
#      GPU tests of the triton and cute backends and of the timer
#   B: the decode and MTP roofline runs (triton, cute, flashinfer, fla)
#   C: prefill re-measured with the events timer, `make trace` (nsys) of trace-decode,
#      compute-sanitizer on triton / cute padded pools, the cute disk cache across two processes
# Everything lands in $OUT (tarred results directories, logs).
set -u
step=${1:?usage: gpu_run.sh A|B|C}
source /opt/gdnenv/env.sh
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 GDNBENCH_CACHE=/tmp/gdnbench-cache
OUT=${OUT:-/tmp/gdnbench-out}; mkdir -p "$OUT"
KEEP=/tmp/gdnbench-keep; mkdir -p "$KEEP"
TILES=gdnbench/backends/triton_tiles.json
[ -f "$TILES" ] || { [ -f "$KEEP/triton_tiles.json" ] && cp "$KEEP/triton_tiles.json" "$TILES"; }
G="python3 -m gdnbench"
DAY=$(date +%F)
run() { local t=$1; shift; echo "=== $* ($(date +%T))"; timeout "$t" "$@"; echo "=== exit $? ($(date +%T))"; }
case $step in
  A)
    run 150 $G check gpu-smoke -b triton -b cute --no-progress --out /tmp/smoke > "$OUT/smoke.log" 2>&1
    tail -4 "$OUT/smoke.log"; grep -E "fail|error" /tmp/smoke/rows.csv | cut -c1-400 | head -6
    run 230 python3 scripts/tune_triton.py --out "$OUT" > "$OUT/tune.log" 2>&1
    tail -28 "$OUT/tune.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    run 170 python3 -m pytest -q -x -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k "triton or cute" \
      tests/test_timer.py > "$OUT/gpu-tests.log" 2>&1
    tail -6 "$OUT/gpu-tests.log"
    tar czf "$OUT/A.tgz" $TILES /tmp/smoke 2>/dev/null ;;
  B)
    run 270 $G sweep roofline-decode --no-progress --out "results/${DAY}_h100-sm90_roofline-decode" > "$OUT/roofline-decode.log" 2>&1
    run 190 $G sweep roofline-mtp --no-progress --out "results/${DAY}_h100-sm90_roofline-mtp" > "$OUT/roofline-mtp.log" 2>&1
    for f in roofline-decode roofline-mtp; do tail -3 "$OUT/$f.log"; done
    tar czf "$OUT/B.tgz" results/*_roofline-decode results/*_roofline-mtp $TILES ;;
  C)
    run 170 $G sweep prefill --no-progress --out "results/${DAY}_h100-sm90_prefill-events" > "$OUT/prefill.log" 2>&1
    tail -3 "$OUT/prefill.log"
    run 170 make trace ARGS="--out results/${DAY}_h100-sm90_trace-decode" > "$OUT/trace.log" 2>&1
    tail -22 "$OUT/trace.log"
    run 90 $G check gpu-smoke --sanitize -b triton -b cute -c decode-b4 --no-progress \
      --out "results/${DAY}_h100-sm90_sanitize-own" > "$OUT/sanitize.log" 2>&1
    tail -4 "$OUT/sanitize.log"
    # the cute kernel's disk cache: a second process must load, not recompile (compare first_call_ms)
    for i in 1 2; do run 60 env GDNBENCH_CACHE=/tmp/cute-cache-test $G check gpu-smoke -b cute --no-progress \
        -c decode-b33-h16x32-d128x128-klast-bf16-bf16-scattered --out "/tmp/cute-cache-$i" > /dev/null 2>&1
      python3 -c "import csv; print('cute first call, process $i:', \
        [r['first_call_ms'] for r in csv.DictReader(open('/tmp/cute-cache-$i/rows.csv'))])" | tee -a "$OUT/cute-cache.txt"; done
    tar czf "$OUT/C.tgz" --exclude='*.sqlite' results/*_prefill-events results/*_trace-decode results/*_sanitize-own ;;
esac
ls -la "$OUT"
