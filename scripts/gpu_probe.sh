#!/usr/bin/env bash
# First call on a fresh GPU host (after staging the bundle): environment, GPU tests, calibrate, a smoke
# sweep of every backend entry point, and a compute-sanitizer spot check. Every step runs even if an
# earlier one fails; logs and results go to $OUT (tarred), a summary is printed last.
set -u
source /opt/gdnenv/env.sh
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gdnbench-out}; mkdir -p "$OUT"
G="python3 -m gdnbench"
step() { echo; echo "=== $* ($(date +%T))"; }
step env;        $G env > "$OUT/env.json" 2>&1; nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
step matrix;     COLUMNS=260 $G list --matrix > "$OUT/matrix.txt" 2>&1; $G list 2>&1 | tail -12
step gpu-tests;  timeout 420 python3 -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.log" | tail -25
step calibrate;  timeout 120 $G calibrate --out "$OUT/calibrate.json" 2>&1 | tee "$OUT/calibrate.log"
step smoke;      timeout 300 $G sweep gpu-smoke --out results/gpu-smoke --no-progress 2>&1 | tee "$OUT/smoke.log" | tail -70
step sanitize;   timeout 240 $G check gpu-smoke --sanitize -c decode-b4-h16x32-d128x128-klast-bf16-bf16-padded \
                   -c decode-b4-h16x32-d128x128-klast-f32-bf16-padded --out results/sanitize --no-progress 2>&1 | tail -12
step pack;       tar czf "$OUT/results.tgz" results/gpu-smoke results/sanitize 2>/dev/null; ls -la "$OUT"
