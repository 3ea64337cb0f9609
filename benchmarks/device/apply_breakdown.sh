#!/bin/bash
# The GPU path of netdsl apply, broken down (lead, 2026-12-07): the apply tests that run on the GPU, then
# bench_apply (SIZE GB, default 6) with --timing per run, the variants VARIANTS (settings, docs/settings.md;
# the bytes must not change) and, with PEER=1, ModelOpt's quantizer on the GPU beside it (the carried wheels
# of .whl/gpu-peers installed where the image lacks them, as modelopt_cuda_nvfp4.sh does). Runs from the
# repository root with $OUT set (lark installed, PYTHONPATH the checkout).
set -u
SIZE=${SIZE:-6}
VARIANTS=${VARIANTS:-"NETDSL_APPLY_SHARDS=8 NETDSL_APPLY_FSYNC=none"}
{ date -u; nvidia-smi -L; nproc; free -g | head -2; df -h /tmp | tail -1; } > $OUT/env.txt 2>&1
timeout 90 python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())" >> $OUT/env.txt 2>&1
timeout 60 python3 -m pytest -q -p no:cacheprovider -rfEs tests/test_apply.py tests/test_apply_ct.py -k "cupy or gpu" \
    > $OUT/tests.txt 2>&1
echo "pytest rc=$?" >> $OUT/tests.txt; tail -n 4 $OUT/tests.txt
PEER_ARGS=()
if [ "${PEER:-0}" = 1 ]; then
    SITE2=/tmp/site-peer
    python3 benchmarks/device/wheels_needed.py .whl/gpu-peers > /tmp/peer-need.txt 2>> $OUT/env.txt
    python3 -m pip install -q --no-index --no-deps --target $SITE2 $(cat /tmp/peer-need.txt) >> $OUT/env.txt 2>&1
    PEER_ARGS=(--peer-python /tmp/peer-python)
    printf '#!/bin/bash\nPYTHONPATH=%s:$PYTHONPATH exec python3 "$@"\n' "$SITE2" > /tmp/peer-python; chmod +x /tmp/peer-python
fi
V=(); for v in $VARIANTS; do V+=(--variant "$v"); done
timeout ${BENCH_LIMIT:-200} python3 benchmarks/bench_apply.py --size-gb $SIZE --dir /tmp/bench --backend cupy "${V[@]}" \
    "${PEER_ARGS[@]}" --out $OUT/apply.md > $OUT/bench.log 2>&1
echo "bench rc=$?"; sed -n 1,24p $OUT/bench.log
