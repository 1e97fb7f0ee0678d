#!/usr/bin/env bash
# GPU-host work in four calls that each fit the 10-minute limit, run back to back on one warm host
# (A in the same command as the bundle's last staging step). Each call gets a fresh copy of the local
# checkout; what must outlive a call (the tuned tile table, the cute kernel cache, Triton's cache)
# is kept outside it, under /tmp, for as long as the host stays up.
#   A: triton tile tuning (-> triton_tiles.json, kept for B), GPU tests of the triton backend and timer
#   B: the decode and MTP roofline runs (triton, cute, flashinfer, fla)
#   C: `make trace` (nsys) of trace-decode, then prefill re-measured with the events timer
#   D: gate check of triton and cute on gpu-smoke, compute-sanitizer on their padded pools, the cute
#      kernel's disk cache across two processes
#   F: prefill: GPU tests of both FlashInfer prefill variants, scripts/prefill_probe.py (the same call
#      timed several ways), an nsys trace of FlashInfer's TP1 prefill rows (which kernels each call runs)
#   G: the prefill config re-measured with flashinfer, flashinfer_kernel, fla and fla_kernel
#   H: the chunk-form MTP kernel: its gate at tiny shapes (real bf16 dots), MTP tile tuning (chunk
#      candidates included; decode entries kept), GPU tests of the triton backend, the MTP roofline,
#      and Nsight Compute on the chosen MTP kernel at B = 64
#   X: the chunk-form MTP kernel (row blocks per program, pipelined): its gate at tiny shapes compiled for the
#      GPU, then MTP tile tuning of the chunk-form tiles next to each case's current tile (kept for B)
#   Y: the triton backends' GPU gate tests on MTP cases, Nsight Compute on the chosen MTP kernels at B = 64
#   W: the chunk-form MTP kernel on a persistent grid: its gate at tiny shapes compiled for the GPU (programs
#      crossing heads), then MTP tuning of the persistent tiles next to each case's current tile (kept for B)
#   I: decode tile tuning with K-chunked register tiles and the pipelined persistent kernel among the
#      candidates (MTP entries kept), then that kernel's gate tests compiled for the GPU
#   J: MTP tile tuning likewise (decode entries kept), the GPU gate tests of triton and of the backends
#      that read a contiguous pool view (flashinfer_kernel, FlashInfer V-last, fla_kernel), then
#      Nsight Compute on the chosen decode and MTP kernels at B = 64 (run B after J for the rooflines)
#   K: cute tile tuning (BV x NVEC vectors per lane; -> cute_tiles.json, kept for B), the cute backend's
#      GPU gate tests, Nsight Compute on its B = 64 bf16 and fp32 launches
#   L: cute tile tuning, its GPU gate tests, then the decode roofline run (triton, cute, flashinfer, fla)
#   M: MTP tile tuning (decode entries kept), the triton backend's GPU gate tests, Nsight Compute on the
#      chosen decode and MTP kernels at B = 64 (I, M, then B re-tune and re-measure the triton kernels)
#   R: bf16 decode tile tuning at B = 1, 16, 64 with the two-pass (reread) tiles among the candidates (kept for
#      B), their gate compiled for the GPU, the triton decode GPU tests
#   Q: the GPU timer tests, then scripts/latency_floor.py (empty / copy / slot-copy kernels on the decode
#      tiles' grids next to triton and triton_pdl: what a launch costs before any GDN arithmetic)
#   P: programmatic dependent launch: the GPU tests of triton and triton_pdl, then both rooflines with
#      only those two backends (scripts/pdl_probe.py prints them side by side)
#   E: Nsight Compute profiles of decode / MTP kernels at B = 64 (what limits them), the persistent
#      triton kernel's gate on padded pools at large batch, the cute disk cache across two processes
# Everything lands in $OUT (tarred results directories, logs).
set -u
step=${1:?usage: gpu_run.sh A|B|C|D|E|F|G|H|I|J|K|L|M|P|Q|R|W|X|Y|Z}
source /opt/gdnenv/env.sh
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 GDNBENCH_CACHE=/tmp/gdnbench-cache
OUT=${OUT:-/tmp/gdnbench-out}; mkdir -p "$OUT"
KEEP=/tmp/gdnbench-keep; mkdir -p "$KEEP"
TILES=gdnbench/backends/triton_tiles.json
CTILES=gdnbench/backends/cute_tiles.json
# tables tuned by an earlier call on this host replace the checkout's
for f in $TILES $CTILES; do [ -f "$KEEP/$(basename $f)" ] && cp "$KEEP/$(basename $f)" "$f"; done
G="python3 -m gdnbench"
DAY=$(date +%F)
run() { local t=$1; shift; echo "=== $* ($(date +%T))"; timeout "$t" "$@"; echo "=== exit $? ($(date +%T))"; }
# ncu_profile CSV BACKEND SPEC...: Nsight Compute on one gated launch of BACKEND per SPEC (profile_kernel.py
# arguments), appended to $OUT/CSV under a "### SPEC" line, then the headline metrics
ncu_profile() {
  local csv=$OUT/$1 backend=$2; shift 2
  local ncu="ncu --profile-from-start off --csv --page details --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section InstructionStats"
  for spec in "$@"; do
    echo "### $spec" >> "$csv"
    run 60 $ncu python3 scripts/profile_kernel.py --backend "$backend" $spec >> "$csv" 2>> "$OUT/ncu.err"; done
  grep -E "^###|DRAM Throughput|Achieved Occupancy|\"Duration\"|Registers Per|Compute \(SM\) Throughput|Issue Slots Busy" \
    "$csv" | cut -c1-200
}
case $step in
  F)
    run 200 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k "prefill and flashinfer" \
      > "$OUT/gpu-tests-prefill.log" 2>&1; tail -3 "$OUT/gpu-tests-prefill.log"
    run 200 python3 scripts/prefill_probe.py > "$OUT/prefill_probe.md" 2> "$OUT/prefill_probe.err"
    cat "$OUT/prefill_probe.md"; tail -3 "$OUT/prefill_probe.err"
    T="results/${DAY}_h100-sm90_trace-prefill"; rm -rf "$T"
    run 170 $G trace prefill -b flashinfer -b flashinfer_kernel -c prefill-b1-h16x32 -c prefill-b4-h16x32 \
      -c prefill-b16-h16x32 -c prefill-b64-h16x32 --out "$T" > "$OUT/trace-prefill.log" 2>&1
    tail -3 "$OUT/trace-prefill.log"; sed -n '1,14p' "$T/consistency.md"
    tar czf "$OUT/F.tgz" --exclude='*.sqlite' --exclude='*.nsys-rep' "$T" ;;
  G)
    R="results/${DAY}_h100-sm90_prefill-kernel"; rm -rf "$R"
    run 420 $G sweep prefill -b flashinfer -b flashinfer_kernel -b fla -b fla_kernel --no-progress --out "$R" \
      > "$OUT/prefill.log" 2>&1
    tail -3 "$OUT/prefill.log"; grep -E "^(failed|error)" "$OUT/prefill.log" | cut -c1-300 | head -4
    tar czf "$OUT/G.tgz" "$R" ;;
  H)
    run 120 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k chunk > "$OUT/chunk-tests.log" 2>&1
    tail -3 "$OUT/chunk-tests.log"
    run 300 python3 scripts/tune_triton.py --only mtp --out "$OUT" > "$OUT/tune-mtp.log" 2>&1
    tail -12 "$OUT/tune-mtp.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    rm -rf "results/${DAY}_h100-sm90_roofline-mtp"
    run 200 $G sweep roofline-mtp --no-progress --out "results/${DAY}_h100-sm90_roofline-mtp" > "$OUT/roofline-mtp.log" 2>&1
    tail -2 "$OUT/roofline-mtp.log"; grep -E "^(failed|error)" "$OUT/roofline-mtp.log" | cut -c1-300 | head -4
    tar czf "$OUT/H.tgz" results/*_roofline-mtp $TILES "$OUT/tune_triton.csv"
    run 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k "triton and mtp" \
      > "$OUT/gpu-tests.log" 2>&1; tail -3 "$OUT/gpu-tests.log"
    NCU="ncu --profile-from-start off --csv --page details --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats"
    run 60 $NCU python3 scripts/profile_kernel.py --backend triton --batch 64 --tokens 4 > "$OUT/ncu-mtp.csv" 2>&1
    grep -E "DRAM Throughput|Achieved Occupancy|\"Duration\"|Registers Per|Compute \(SM\) Throughput" "$OUT/ncu-mtp.csv" | cut -c1-200 ;;
  X)
    run 150 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k chunk > "$OUT/chunk-tests.log" 2>&1
    tail -3 "$OUT/chunk-tests.log"
    run 420 python3 scripts/tune_triton.py --only mtp --family chunk --state-dtypes ${DTYPES:-bfloat16,float32} --batches ${BATCHES:-} --out "$OUT" > "$OUT/tune-chunk.log" 2>&1
    tail -12 "$OUT/tune-chunk.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    tar czf "$OUT/X.tgz" $TILES ;;
  W)
    run 150 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k "chunk and (persistent or tile3)" \
      > "$OUT/persist-tests.log" 2>&1; tail -3 "$OUT/persist-tests.log"
    # PTILES: explicit tiles (tune_triton --tiles) instead of the persistent family
    if [ -n "${PTILES:-}" ]; then pick=(--tiles "$PTILES"); else pick=(--family persist); fi
    run 400 python3 scripts/tune_triton.py --only mtp "${pick[@]}" \
      --state-dtypes ${DTYPES:-bfloat16} --batches ${BATCHES:-16,64,128,256} --out "$OUT" > "$OUT/tune-persist.log" 2>&1
    tail -12 "$OUT/tune-persist.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    tar czf "$OUT/W.tgz" $TILES ;;
  Y)
    run 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k "triton and mtp" \
      > "$OUT/gpu-tests.log" 2>&1; tail -3 "$OUT/gpu-tests.log"
    ncu_profile ncu-chunk.csv triton "--batch 64 --tokens 4" "--batch 64 --tokens 4 --state-dtype float32" ;;
  Z)  # warp stall breakdown of chosen chunk-form tiles at B = 64 (scripts/ncu_stalls.py)
    for t in ${ZTILES:-16,1,0,8,0,2 16,1,0,8,0,2,0,128 16,1,0,4,0,2}; do echo "### $t" | tee -a "$OUT/stalls.txt"
      run 90 ncu --profile-from-start off --csv --page raw --section WarpStateStats --section SpeedOfLight \
        --section Occupancy --section LaunchStats python3 scripts/profile_kernel.py --batch 64 --tokens 4 --tile $t \
        2>/dev/null | python3 scripts/ncu_stalls.py | tee -a "$OUT/stalls.txt"; done ;;
  I)
    run 540 python3 scripts/tune_triton.py --only decode --out "$OUT" > "$OUT/tune-decode.log" 2>&1
    tail -20 "$OUT/tune-decode.log"; cp "$TILES" "$KEEP/" 2>/dev/null; cp "$OUT/tune_triton.csv" "$KEEP/tune-decode.csv"
    tar czf "$OUT/I.tgz" $TILES
    # the pipelined persistent kernel compiled for the GPU (cp.async), gated on padded pools
    run 120 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k "pipelined or stages or persistent" \
      > "$OUT/tests-pipelined.log" 2>&1; tail -1 "$OUT/tests-pipelined.log" ;;
  J)
    run 400 python3 scripts/tune_triton.py --only mtp --out "$OUT" > "$OUT/tune-mtp.log" 2>&1
    tail -12 "$OUT/tune-mtp.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    tar czf "$OUT/J.tgz" $TILES
    run 60 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k "chunked or k_chunk" > "$OUT/tests.log" 2>&1
    run 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k triton >> "$OUT/tests.log" 2>&1
    # the paths that read a contiguous pool through Inputs.contiguous_state()
    run 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py \
      -k "flashinfer_kernel or (flashinfer and vlast) or fla_kernel" >> "$OUT/tests.log" 2>&1
    grep -E "passed|failed" "$OUT/tests.log"
    ncu_profile ncu.csv triton "--batch 64" "--batch 64 --tokens 4" "--batch 64 --state-dtype float32" ;;
  M)
    run 400 python3 scripts/tune_triton.py --only mtp --out "$OUT" > "$OUT/tune-mtp.log" 2>&1
    tail -12 "$OUT/tune-mtp.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    tar czf "$OUT/M.tgz" $TILES
    run 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k triton > "$OUT/tests.log" 2>&1
    # the MTP paths compiled for the GPU: lazy and eager (steep-decay) decay, tree, K-chunked tiles
    run 150 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k "mtp or tree or chunked or row_sums" \
      >> "$OUT/tests.log" 2>&1
    grep -E "passed|failed" "$OUT/tests.log"
    ncu_profile ncu.csv triton "--batch 64" "--batch 64 --tokens 4" ;;
  K)
    run 300 python3 scripts/tune_cute.py --out "$OUT" > "$OUT/tune-cute.log" 2>&1
    tail -18 "$OUT/tune-cute.log"; cp "$CTILES" "$KEEP/" 2>/dev/null
    tar czf "$OUT/K.tgz" $CTILES
    run 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k cute > "$OUT/tests.log" 2>&1
    tail -2 "$OUT/tests.log"
    ncu_profile ncu-cute.csv cute "--batch 64" "--batch 64 --state-dtype float32" ;;
  L)
    run 300 python3 scripts/tune_cute.py --out "$OUT" > "$OUT/tune-cute.log" 2>&1
    tail -18 "$OUT/tune-cute.log"; cp "$CTILES" "$KEEP/" 2>/dev/null
    run 100 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k cute > "$OUT/tests.log" 2>&1
    tail -1 "$OUT/tests.log"
    rm -rf "results/${DAY}_h100-sm90_roofline-decode"
    run 200 $G sweep roofline-decode --no-progress --out "results/${DAY}_h100-sm90_roofline-decode" > "$OUT/roofline-decode.log" 2>&1
    tail -2 "$OUT/roofline-decode.log"; grep -E "^(failed|error)" "$OUT/roofline-decode.log" | cut -c1-300 | head -4
    tar czf "$OUT/L.tgz" results/*_roofline-decode $TILES $CTILES ;;
  R)
    run 420 python3 scripts/tune_triton.py --only decode --batches 1,16,64 --state-dtypes bfloat16 --out "$OUT" > "$OUT/tune-reread.log" 2>&1
    tail -10 "$OUT/tune-reread.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    tar czf "$OUT/R.tgz" $TILES
    run 100 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k "two_pass" > "$OUT/tests.log" 2>&1
    run 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k "triton and decode" \
      >> "$OUT/tests.log" 2>&1
    grep -E "passed|failed" "$OUT/tests.log" ;;
  P)
    run 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k triton > "$OUT/tests.log" 2>&1
    run 150 python3 -m pytest -q -p no:cacheprovider tests/test_triton_gdn.py -k "pdl" >> "$OUT/tests.log" 2>&1
    grep -E "passed|failed" "$OUT/tests.log"
    for c in roofline-decode roofline-mtp; do
      run 200 $G sweep $c -b triton -b triton_pdl --no-progress --out "/tmp/probe-$c" > "$OUT/probe-$c.log" 2>&1
      tail -1 "$OUT/probe-$c.log"; python3 scripts/pdl_probe.py "/tmp/probe-$c" | tee "$OUT/probe-$c.txt"; done ;;
  A)
    run 300 python3 scripts/tune_triton.py --out "$OUT" > "$OUT/tune.log" 2>&1
    tail -28 "$OUT/tune.log"; cp "$TILES" "$KEEP/" 2>/dev/null
    run 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_backends.py -k triton > "$OUT/gpu-tests.log" 2>&1
    run 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_timer.py >> "$OUT/gpu-tests.log" 2>&1
    tail -4 "$OUT/gpu-tests.log" ;;
  Q)
    run 60 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_timer.py > "$OUT/gpu-tests-timer.log" 2>&1
    tail -1 "$OUT/gpu-tests-timer.log"
    run 300 python3 scripts/latency_floor.py > "$OUT/latency-floor.md" 2> "$OUT/latency-floor.err"
    cat "$OUT/latency-floor.md"; tail -3 "$OUT/latency-floor.err" ;;
  B)
    rm -rf "results/${DAY}_h100-sm90_roofline-decode" "results/${DAY}_h100-sm90_roofline-mtp"
    run 380 $G sweep roofline-decode --no-progress --out "results/${DAY}_h100-sm90_roofline-decode" > "$OUT/roofline-decode.log" 2>&1
    run 210 $G sweep roofline-mtp --no-progress --out "results/${DAY}_h100-sm90_roofline-mtp" > "$OUT/roofline-mtp.log" 2>&1
    for f in roofline-decode roofline-mtp; do tail -2 "$OUT/$f.log"; grep -E "^(failed|error)" "$OUT/$f.log" | cut -c1-300 | head -4; done
    tar czf "$OUT/B.tgz" results/*_roofline-decode results/*_roofline-mtp $TILES $CTILES ;;
  C)
    rm -rf "results/${DAY}_h100-sm90_trace-decode"
    run 200 make trace ARGS="--out results/${DAY}_h100-sm90_trace-decode" > "$OUT/trace.log" 2>&1
    sed -n '1,12p' "results/${DAY}_h100-sm90_trace-decode/consistency.md"
    tar czf "$OUT/C1.tgz" --exclude='*.sqlite' results/*_trace-decode
    rm -rf "results/${DAY}_h100-sm90_prefill-events"
    run 320 $G sweep prefill -b flashinfer -b fla -b fla_kernel --no-progress \
      --out "results/${DAY}_h100-sm90_prefill-events" > "$OUT/prefill.log" 2>&1
    tail -3 "$OUT/prefill.log"
    tar czf "$OUT/C2.tgz" results/*_prefill-events ;;
  D)
    run 150 $G check gpu-smoke -b triton -b cute --no-progress --out /tmp/smoke > "$OUT/smoke.log" 2>&1
    tail -3 "$OUT/smoke.log"
    run 90 $G check gpu-smoke --sanitize -b triton -b cute -c decode-b4 --no-progress \
      --out "results/${DAY}_h100-sm90_sanitize-own" > "$OUT/sanitize.log" 2>&1
    tail -4 "$OUT/sanitize.log"
    # the cute kernel's disk cache: a second process must load, not recompile (compare first_call_ms)
    for i in 1 2; do run 60 env GDNBENCH_CACHE=/tmp/cute-cache-test $G check gpu-smoke -b cute --no-progress \
        -c decode-b33-h16x32-d128x128-klast-bf16-bf16-scattered --out "/tmp/cute-cache-$i" > /dev/null 2>&1
      python3 -c "import csv; print('cute first call, process $i:', \
        [r['first_call_ms'] for r in csv.DictReader(open('/tmp/cute-cache-$i/rows.csv'))])" | tee -a "$OUT/cute-cache.txt"; done
    tar czf "$OUT/D.tgz" --exclude='*.sqlite' results/*_sanitize-own /tmp/smoke ;;
  E)
    P="python3 scripts/profile_kernel.py"
    for spec in "--tile 32,2,4 --batch 256 --pool padded" "--tile 16,1,16 --batch 64 --pool padded" \
        "--tile 16,1,8 --batch 64 --tokens 4 --pool padded" "--tile 8,1,8 --batch 48 --hk 4 --hv 8 --pool padded"; do
      run 60 $P $spec 2>&1 | grep -E "gate|Error" | tee -a "$OUT/persistent-gate.txt"; done
    NCU="ncu --profile-from-start off --csv --page details --section SpeedOfLight --section Occupancy \
      --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis"
    for spec in "triton --batch 64" "flashinfer --batch 64" "cute --batch 64" "triton --batch 64 --hk 4 --hv 8" \
        "flashinfer --batch 64 --hk 4 --hv 8" "triton --batch 64 --tokens 4" "flashinfer --batch 64 --tokens 4"; do
      echo "### $spec" >> "$OUT/ncu.csv"; run 60 $NCU $P --backend $spec >> "$OUT/ncu.csv" 2>> "$OUT/ncu.err"; done
    grep -E "^###|DRAM Throughput|Achieved Occupancy|\"Duration\"" "$OUT/ncu.csv" | cut -c1-200 | head -40
    for i in 1 2; do run 60 env GDNBENCH_CACHE=/tmp/cute-cache-test $G check gpu-smoke -b cute --no-progress \
        -c decode-b33-h16x32-d128x128-klast-bf16-bf16-scattered --out "/tmp/cute-cache-$i" > /dev/null 2>&1
      python3 -c "import csv; print('cute first call, process $i:', \
        [r['first_call_ms'] for r in csv.DictReader(open('/tmp/cute-cache-$i/rows.csv'))])" | tee -a "$OUT/cute-cache.txt"
      ls -la --time-style=full-iso /tmp/cute-cache-test/cute/*/ | tee -a "$OUT/cute-cache.txt"; done ;;
esac
ls -la "$OUT"
