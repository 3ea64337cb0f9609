#!/bin/bash
# H100 calls of 2026-12-07 (lead): the apply tests (with Dask and dask-cuda from the carried wheels); bench_apply
# at 8 GB with the ModelOpt peer and NETDSL_APPLY_FSYNC=none (the peer fsyncs nothing), with the rows of the
# job's I/O alone and --timing's from/to columns; startup.sh; then 24 GB, where the fixed cost is a smaller
# share. Ran at 16:52 UTC (commit 7199d22) and at 17:25 UTC (the shard commits and writeback handoffs in
# threads of their own). Runs from the repository root with $OUT set (lark installed, PYTHONPATH the checkout).
set -u
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/steps.txt"; }
SITE2=/tmp/site-peer
{ date -u; git log -1 --format='%h %s' 2>/dev/null; nvidia-smi -L; nproc; free -g | head -2; df -h /tmp; } > "$OUT/env.txt" 2>&1
python3 benchmarks/device/wheels_needed.py ${WHL:-.whl/gpu-peers} > /tmp/peer-need.txt 2>> "$OUT/env.txt"
python3 -m pip install -q --no-index --no-deps --target $SITE2 $(cat /tmp/peer-need.txt) >> "$OUT/env.txt" 2>&1
printf '#!/bin/bash\nPYTHONPATH=%s:$PYTHONPATH exec python3 "$@"\n' "$SITE2" > /tmp/peer-python; chmod +x /tmp/peer-python
timeout 60 python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())" >> "$OUT/env.txt" 2>&1
stamp "set up"
PYTHONPATH=$SITE2:$PYTHONPATH timeout 120 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_cuda_start.py \
    tests/test_apply.py tests/test_apply_ct.py tests/test_apply_gpus.py > "$OUT/apply-tests.txt" 2>&1
stamp "apply tests rc=$?: $(tail -n 1 "$OUT/apply-tests.txt")"
timeout 120 python3 benchmarks/bench_apply.py --size-gb 8 --dir /tmp/bench8 --backend cupy --variant NETDSL_APPLY_FSYNC=none \
    --peer-python /tmp/peer-python --out "$OUT/apply8.md" > "$OUT/bench8.log" 2>&1
stamp "bench 8 GB rc=$?"
grep -h "^| " "$OUT/apply8.md"
sed -n '/`--timing` of the apply run (default/,/^```$/p' "$OUT/apply8.md" | head -20
timeout 60 bash benchmarks/device/startup.sh > /dev/null 2>&1
stamp "startup rc=$?"
grep -h "version\|apply small (cupy, --timing):" "$OUT/startup.txt" | cut -c1-200
rm -rf /tmp/bench8
df -h /tmp | tail -1
timeout 330 python3 benchmarks/bench_apply.py --size-gb 24 --dir /tmp/bench24 --backend cupy --variant NETDSL_APPLY_FSYNC=none --variant NETDSL_APPLY_FSYNC=commit \
    --peer-python /tmp/peer-python --out "$OUT/apply24.md" > "$OUT/bench24.log" 2>&1
stamp "bench 24 GB rc=$?"
grep -h "^| " "$OUT/apply24.md"
sed -n '/`--timing` of the apply run (default/,/^```$/p' "$OUT/apply24.md" | head -20
tail -3 "$OUT/bench24.log"
