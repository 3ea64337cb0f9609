#!/bin/bash
# The two modes below 95% of their traffic-matched ceiling (issue 14, item 5): Quantize fp4 128x128 and
# DynamicQuantize float int8 1x4096, both from bfloat16. Builds the kernels with the new tuning knobs
# (NETDSL_CHUNK_MAP; NETDSL_CTA_PACKED_MAX, NETDSL_CTA_SHARED_RCP, NETDSL_CTA_CTAS: benchmarks/results-sweep-dq.md),
# sweeps them on those cases and their controls, then checks them bit for bit (tests/test_gpu_kernels.py).
# About 2.5 minutes on an H100 (at most 4 with every timeout spent); everything lands in $OUT.
set -u
P="python3 -m pytest -q -p no:cacheprovider -x"
# two builds cover every new code path: A the registers map and the three CTA knobs, B the incremental
# map (with the scale loaded ahead for Quantize, so both of its index forms run) and 3 CTAs per SM
A="NETDSL_CHUNK_MAP=1 NETDSL_CTA_PACKED_MAX=1 NETDSL_CTA_SHARED_RCP=1 NETDSL_CTA_CTAS=4"
B="NETDSL_CHUNK_MAP=2 NETDSL_SCALE_AHEAD=1 NETDSL_CTA_PACKED_MAX=1 NETDSL_CTA_CTAS=3"
PRE="from netdsl.backends.cupy import precompile; print('parts built:', precompile())"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv > $OUT/gpu.txt 2>&1
date +%T > $OUT/times.txt
timeout 50 python3 -c "$PRE" > $OUT/precompile.log 2>&1 &
NETDSL_CUDA_DEFINES="$A" timeout 50 python3 -c "$PRE" > $OUT/precompile-a.log 2>&1 &
NETDSL_CUDA_DEFINES="$B" timeout 50 python3 -c "$PRE" > $OUT/precompile-b.log 2>&1 &
wait
date +%T >> $OUT/times.txt

Q="NETDSL_CHUNK_MAP"
PM="NETDSL_CTA_PACKED_MAX=1"
RCP="NETDSL_CTA_SHARED_RCP=1"
timeout 90 python3 benchmarks/sweep_dq.py --out $OUT --budget 60 --random-ceilings 0 \
  --cases "Q fp4 block 128x128@bfloat16" --cases "Q fp4 block 1x16@bfloat16" --cases "Q fp4 per-channel@bfloat16" \
  --cases "Q int4 block 128x128@bfloat16" --cases "DynQ float int8 1x4096@bfloat16" \
  --cases "DynQ float int8 128x128@bfloat16" \
  --variant base:8 \
  --variant "map1:8:$Q=1@Q" --variant "map2:8:$Q=2@Q" --variant "scale:8:NETDSL_SCALE_AHEAD=1@Q" \
  --variant "map1-scale:8:$Q=1,NETDSL_SCALE_AHEAD=1@Q" --variant "map2-scale:8:$Q=2,NETDSL_SCALE_AHEAD=1@Q" \
  --variant "pmax:8:$PM@DynQ" --variant "rcp:8:$RCP@DynQ" --variant "pmax-rcp:8:$PM,$RCP@DynQ" \
  --variant "pmax-c3:8:$PM,NETDSL_CTA_CTAS=3@DynQ" --variant "pmax-rcp-c3:8:$PM,$RCP,NETDSL_CTA_CTAS=3@DynQ" \
  --variant "pmax-rcp-c4:8:$PM,$RCP,NETDSL_CTA_CTAS=4@DynQ" \
  > $OUT/sweep.log 2>&1
echo "sweep rc=$?" >> $OUT/times.txt
date +%T >> $OUT/times.txt

# bit-exactness: the new knobs' builds on the granularity table (16-bit input: the index code is
# type-independent), DynamicQuantize's cases and the large grid-stride test; the default on the new test
K="(every_granularity and bfloat16) or test_dynamic_quantize or large_two_dim_blocks or checked_examples"
NETDSL_CUDA_DEFINES="$A" timeout 90 $P tests/test_gpu_kernels.py -k "$K" > $OUT/tests-a.log 2>&1 &
NETDSL_CUDA_DEFINES="$B" timeout 90 $P tests/test_gpu_kernels.py -k "$K" > $OUT/tests-b.log 2>&1 &
timeout 90 $P tests/test_gpu_kernels.py -k large_two_dim_blocks > $OUT/tests-default.log 2>&1 &
wait
date +%T >> $OUT/times.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv >> $OUT/gpu.txt 2>&1
for f in $OUT/tests-*.log; do echo "== $f"; tail -n 3 $f; done
cat $OUT/times.txt
head -n 9 $OUT/sweep.md 2>/dev/null || tail -n 20 $OUT/sweep.log
