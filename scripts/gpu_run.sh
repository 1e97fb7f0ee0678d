#!/usr/bin/env bash
# GPU-host work in three calls that each fit the 10-minute limit, run back to back on one warm host
# (the first one right after staging the bundle's last part). Each call gets a fresh copy of the local
# checkout, so before B extract A.tgz locally (tar xzf .../A.tgz): it carries the tuned tile table.
#   A: tune the triton tiles (writes gdnbench/backends/triton_tiles.json); GPU tests of triton and cute
#   B: the decode and MTP roofline runs (triton, cute, flashinfer, fla)
#   C: prefill re-measured with the events timer, an nsys trace of trace-decode, GPU tests for the
#      triton backend and the events timer, compute-sanitizer on triton / cute padded pools, and the
#      cute kernel's disk cache across two processes
# Everything lands in $OUT (tarred results directories, logs).
set -u
step=${1:?usage: gpu_run.sh A|B|C}
source /opt/gdnenv/env.sh
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gdnbench-out}; mkdir -p "$OUT"
G="python3 -m gdnbench"
DAY=$(date +%F)
run() { local t=$1; shift; echo "=== $* ($(date +%T))"; timeout "$t" "$@"; echo "=== exit $? ($(date +%T))"; }
case $step in
  A)
    run 270 python3 scripts/tune_triton.py --out "$OUT" 2>&1 | tee "$OUT/tune.log" | tail -30
    run 200 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k "triton or cute" \
      tests/test_timer.py 2>&1 | tee "$OUT/gpu-tests.log" | tail -8
    tar czf "$OUT/A.tgz" gdnbench/backends/triton_tiles.json ;;
  B)
    run 260 $G sweep roofline-decode --out "results/${DAY}_h100-sm90_roofline-decode" > "$OUT/roofline-decode.log" 2>&1
    run 170 $G sweep roofline-mtp --out "results/${DAY}_h100-sm90_roofline-mtp" > "$OUT/roofline-mtp.log" 2>&1
    for f in roofline-decode roofline-mtp; do tail -2 "$OUT/$f.log"; grep -E "^(failed|error)" "$OUT/$f.log" | head -5; done
    tar czf "$OUT/B.tgz" results/*_roofline-decode results/*_roofline-mtp gdnbench/backends/triton_tiles.json ;;
  C)
    run 170 $G sweep prefill --out "results/${DAY}_h100-sm90_prefill" > "$OUT/prefill.log" 2>&1
    tail -2 "$OUT/prefill.log"
    run 170 $G trace trace-decode --out "results/${DAY}_h100-sm90_trace-decode" > "$OUT/trace.log" 2>&1
    tail -22 "$OUT/trace.log"
    run 90 $G check gpu-smoke --sanitize -b triton -b cute -c decode-b4 --out "results/${DAY}_h100-sm90_sanitize" 2>&1 | tail -4
    # the cute kernel's disk cache: a second process must load, not recompile (compare first_call_ms)
    for i in 1 2; do run 60 $G check gpu-smoke -b cute -c decode-b33-h16x32-d128x128-klast-bf16-bf16-scattered \
        --out "/tmp/cute-cache-$i" > /dev/null 2>&1; python3 -c "import csv; print('cute first call, process $i:', \
        [r['first_call_ms'] for r in csv.DictReader(open('/tmp/cute-cache-$i/rows.csv'))])"; done
    tar czf "$OUT/C.tgz" --exclude='*.sqlite' results/*_prefill results/*_trace-decode results/*_sanitize ;;
esac
ls -la "$OUT"
