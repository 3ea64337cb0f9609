#!/bin/bash
# H100 call of 2026-12-07 (lead, about 7 minutes): the 24 GB result of apply_scale.sh (17:04 UTC) again on
# whatever machine comes (defaults and NETDSL_APPLY_FSYNC=commit; no peer, measured beside it at 17:04), then
# 36 GB with the defaults, as time allows (the disk holds 64 GB: input, output and the I/O row's copy). The apply tests first. Runs from the repository root with $OUT set
# (lark installed, PYTHONPATH the checkout).
set -u
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/steps.txt"; }
{ date -u; nvidia-smi -L; nproc; free -g | head -2; df -h /tmp; } > "$OUT/env.txt" 2>&1
timeout 60 python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())" >> "$OUT/env.txt" 2>&1
stamp "set up"
timeout 60 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_cuda_start.py tests/test_apply.py tests/test_apply_ct.py \
    > "$OUT/apply-tests.txt" 2>&1
stamp "apply tests rc=$?: $(tail -n 1 "$OUT/apply-tests.txt")"
timeout 200 python3 benchmarks/bench_apply.py --size-gb 24 --dir /tmp/bench24 --backend cupy --variant NETDSL_APPLY_FSYNC=commit \
    --out "$OUT/apply24.md" > "$OUT/bench24.log" 2>&1
stamp "bench 24 GB rc=$?"
grep -h "^| " "$OUT/apply24.md"
rm -rf /tmp/bench24
timeout 260 python3 benchmarks/bench_apply.py --size-gb 36 --dir /tmp/bench36 --backend cupy --out "$OUT/apply36.md" > "$OUT/bench36.log" 2>&1
stamp "bench 36 GB rc=$?"
grep -h "^| " "$OUT/apply36.md"
tail -3 "$OUT/bench36.log"
