#!/bin/bash
# The session's second H100 call (lead, 2026-12-07 16:10 UTC, about 2 minutes): after final.sh showed the shard
# threads waiting 2.2 s for the SHA-256 and NETDSL_APPLY_READ=register slower than staging, the apply tests on
# the GPU and bench_apply at 8 GB with the ModelOpt peer, the new defaults (staging, the hash up to 128 MiB
# behind). Runs from the repository root with $OUT set (lark installed, PYTHONPATH the checkout).
set -u
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/steps.txt"; }
SITE2=/tmp/site-peer
{ date -u; nvidia-smi -L; nproc; free -g | head -2; } > "$OUT/env.txt" 2>&1
python3 benchmarks/device/wheels_needed.py ${WHL:-.whl/gpu-peers} > /tmp/peer-need.txt 2>> "$OUT/env.txt"
python3 -m pip install -q --no-index --no-deps --target $SITE2 $(cat /tmp/peer-need.txt) >> "$OUT/env.txt" 2>&1
printf '#!/bin/bash\nPYTHONPATH=%s:$PYTHONPATH exec python3 "$@"\n' "$SITE2" > /tmp/peer-python; chmod +x /tmp/peer-python
timeout 60 python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())" >> "$OUT/env.txt" 2>&1
stamp "set up"
timeout 40 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_apply.py tests/test_apply_ct.py -k "cupy or gpu" \
    > "$OUT/apply-tests.txt" 2>&1
stamp "apply tests rc=$?: $(tail -n 1 "$OUT/apply-tests.txt")"
timeout 110 python3 benchmarks/bench_apply.py --size-gb 8 --dir /tmp/bench8 --backend cupy --variant NETDSL_APPLY_SHARDS=6 --peer-python /tmp/peer-python \
    --out "$OUT/apply8.md" > "$OUT/bench8.log" 2>&1
stamp "bench 8 GB rc=$?"
grep -h "netdsl apply\|ModelOpt NVFP4\|^| read\|^| write" "$OUT/apply8.md"
sed -n '/`--timing` of the apply run (default/,/^```$/p' "$OUT/apply8.md" | head -20
