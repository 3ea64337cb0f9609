#!/bin/bash
# The session's last H100 call (lead, 2026-12-07 16:00 UTC), everything in one: the apply tests on the GPU
# (--gpus 1 included, dask-cuda from the carried wheels), where the fixed cost goes (startup.sh), bench_apply at
# 8 GB with the ModelOpt peer and NETDSL_APPLY_READ=staging beside the default, the kernels' GPU tests and whole
# table with the new defaults (final_kernels.sh), then, as time allows, bench_apply at 16 GB (an 8B model's
# bfloat16 checkpoint) with the peer, and --gpus 1 at 8 GB. Runs from the repository root with $OUT set (lark
# installed, PYTHONPATH the checkout); WHL is the folder of the peer wheels (default .whl/gpu-peers).
set -u
T0=$(date +%s)
BUDGET=${BUDGET:-560}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/steps.txt"; }
WHL=${WHL:-.whl/gpu-peers}
SITE2=/tmp/site-peer
{ date -u; nvidia-smi -L; nproc; free -g | head -2; df -h /tmp | tail -1; git log --oneline -1 2>/dev/null; } > "$OUT/env.txt" 2>&1
python3 benchmarks/device/wheels_needed.py "$WHL" > /tmp/peer-need.txt 2>> "$OUT/env.txt"
python3 -m pip install -q --no-index --no-deps --target $SITE2 $(cat /tmp/peer-need.txt) >> "$OUT/env.txt" 2>&1
printf '#!/bin/bash\nPYTHONPATH=%s:$PYTHONPATH exec python3 "$@"\n' "$SITE2" > /tmp/peer-python; chmod +x /tmp/peer-python
timeout 100 python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())" >> "$OUT/env.txt" 2>&1
stamp "set up"
PYTHONPATH=$SITE2:$PYTHONPATH timeout 100 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_apply.py \
    tests/test_apply_ct.py tests/test_apply_gpus.py -k "cupy or gpu" > "$OUT/apply-tests.txt" 2>&1
stamp "apply tests rc=$?: $(tail -n 1 "$OUT/apply-tests.txt")"
timeout 140 python3 benchmarks/bench_apply.py --size-gb 8 --dir /tmp/bench8 --backend cupy --variant NETDSL_APPLY_READ=staging --variant NETDSL_APPLY_SHARDS=2 --variant NETDSL_APPLY_SHARDS=6 \
    --peer-python /tmp/peer-python --out "$OUT/apply8.md" > "$OUT/bench8.log" 2>&1
stamp "bench 8 GB rc=$?"
timeout 260 bash benchmarks/device/final_kernels.sh > "$OUT/kernels.log" 2>&1
stamp "kernels rc=$?"
if [ "$(left)" -gt 30 ]; then timeout 30 bash benchmarks/device/startup.sh > /dev/null 2>&1; stamp "startup rc=$?"; fi
if [ "$(left)" -gt 150 ]; then
    rm -rf /tmp/bench8
    timeout $(( $(left) - 5 )) python3 benchmarks/bench_apply.py --size-gb 16 --dir /tmp/bench16 --backend cupy \
        --peer-python /tmp/peer-python --out "$OUT/apply16.md" > "$OUT/bench16.log" 2>&1
    stamp "bench 16 GB rc=$?"
elif [ "$(left)" -gt 70 ]; then
    PYTHONPATH=$SITE2:$PYTHONPATH timeout $(( $(left) - 5 )) python3 benchmarks/bench_apply.py --size-gb 8 --dir /tmp/bench8 \
        --backend cupy --gpus 1 --out "$OUT/apply8-gpus1.md" > "$OUT/bench8-gpus1.log" 2>&1
    stamp "bench 8 GB --gpus 1 rc=$?"
fi
cat "$OUT/steps.txt"
grep -h "netdsl apply\|ModelOpt NVFP4\|^| read" "$OUT"/apply*.md 2>/dev/null
