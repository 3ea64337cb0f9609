#!/bin/bash
# The GPU path of netdsl apply, broken down (lead, 2026-12-07): the apply tests that run on the GPU, then
# bench_apply (SIZE GB, default 8) with --timing per run and variants of NETDSL_APPLY_SHARDS /
# NETDSL_APPLY_FSYNC (the bytes must not change), then bench_recipe_layers. Runs from the repository root
# with $OUT set (lark installed, PYTHONPATH the checkout).
set -u
SIZE=${SIZE:-8}
{ date -u; nvidia-smi -L; nproc; free -g | head -2; df -h /tmp | tail -1; } > $OUT/env.txt 2>&1
timeout 90 python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())" >> $OUT/env.txt 2>&1
timeout 60 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_apply.py tests/test_apply_ct.py -k "cupy or gpu" \
    > $OUT/tests.txt 2>&1
echo "pytest rc=$?" >> $OUT/tests.txt; tail -n 4 $OUT/tests.txt
timeout 150 python3 benchmarks/bench_apply.py --size-gb $SIZE --dir /tmp/bench --backend cupy \
    --variant NETDSL_APPLY_SHARDS=8 --variant NETDSL_APPLY_FSYNC=none \
    --variant NETDSL_APPLY_SHARDS=8,NETDSL_APPLY_FSYNC=none --out $OUT/apply.md > $OUT/bench.log 2>&1
echo "bench rc=$?"; sed -n 1,22p $OUT/bench.log
timeout 40 python3 benchmarks/bench_recipe_layers.py > $OUT/recipe_layers.txt 2>&1
echo "recipe layers rc=$?"; tail -n 25 $OUT/recipe_layers.txt
