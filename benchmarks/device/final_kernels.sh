#!/bin/bash
# The next run (<= 300 s): the two knobs the H100 sweep measured faster (benchmarks/results-sweep-dq.md) as
# the kernels' build, checked and measured before they become the defaults: the kernels' GPU tests with
# them (bit-exact against NumPy), then (after the tests) benchmarks/bench_gpu.py's whole table with them
# (ceilings in both orders, the device copies). If every test passes and no mode falls, set
# NETDSL_SCALE_AHEAD 1 and NETDSL_STORE_CS 1 in kernels/common.cuh and abi.TUNING_DEFAULTS.
set -u
export NETDSL_CUDA_DEFINES="NETDSL_SCALE_AHEAD=1 NETDSL_STORE_CS=1"
P="python3 -m pytest -q -p no:cacheprovider --maxfail=20"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" >> "$OUT/gpu.txt"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader >> "$OUT/gpu.txt" 2>&1
K=$(mktemp -d)
timeout 60 python3 -c "from netdsl.backends.cupy import precompile; print('parts built:', precompile())" > "$K/pre.log" 2>&1
stamp "built: $(tail -n 1 "$K/pre.log")"
timeout 100 $P tests/test_gpu_kernels.py -k every_granularity > "$K/t1.log" 2>&1 &
timeout 100 $P tests/test_gpu_kernels.py -k "not every_granularity" tests/test_kernel_abi.py > "$K/t2.log" 2>&1 &
timeout 100 $P tests/test_gpu_fusion.py tests/test_recipe_layers.py > "$K/t3.log" 2>&1 &
timeout 100 $P tests/test_examples.py tests/test_special_values.py tests/test_device_arrays.py > "$K/t4.log" 2>&1 &
wait
stamp "tests done"
for f in "$K"/*.log; do echo "== $f"; cat "$f"; done | tail -c 400000 > "$OUT/tests.log"
timeout 150 python3 benchmarks/bench_gpu.py --out "$OUT/results-gpu.md" --budget 100 \
    --defines "$NETDSL_CUDA_DEFINES" > "$OUT/bench.log" 2>&1
stamp "bench rc=$?"
for f in "$K"/t*.log; do echo "== $f"; tail -n 2 "$f"; done
cat "$OUT/gpu.txt"
grep -A2 "^Below" "$OUT/results-gpu.md"
