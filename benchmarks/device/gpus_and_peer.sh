#!/bin/bash
# gpu-peers 1 (branch gpu-peers, commit COMMIT): carried wheels; netdsl apply --gpus 1 against one process
# (cupy) and numpy, byte for byte; tests/test_apply_gpus.py + tests/test_apply.py; bench_apply 2 GB: cupy with
# the ModelOpt peer on the GPU, --gpus 1, cupy, --gpus 1, numpy; the bench outputs compared byte for byte.
set -u
COMMIT=bee3a4d
WHL=${WHL:-../../.whl/gpu-peers}
SITE2=/tmp/site-gpu-peers
E=$OUT/env.txt
{ echo "commit $COMMIT"; date -u; nvidia-smi -L; python3 --version; echo "== pip list (image + runner)"; python3 -m pip list 2>/dev/null; echo "== PYTHONPATH=$PYTHONPATH"; ls -la "$WHL"; } > "$E" 2>&1
rm -rf "$SITE2"
# a carried wheel is installed where the image lacks its package, or has an older one (cuda-* kept as the image has them)
python3 benchmarks/device/wheels_needed.py "$WHL" > /tmp/gp-need.txt 2>> "$E"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --target "$SITE2" $(cat /tmp/gp-need.txt) >> "$E" 2>&1
echo "pip install rc=$? in $(( $(date +%s) - t0 )) s" >> "$E"
export PYTHONPATH=$SITE2:$PYTHONPATH
python3 -c "
import dask, distributed, dask_cuda, cuda.core, pynvml, torch, cupy
print('dask', dask.__version__, 'distributed', distributed.__version__, 'dask_cuda', dask_cuda.__version__, 'torch', torch.__version__, 'cupy', cupy.__version__)
from dask_cuda.utils import get_n_gpus; print('GPUs', get_n_gpus())" >> "$E" 2>&1

C=$OUT/cli.txt
# 1. the CLI on the tests' small two-shard checkpoint: numpy, cupy, cupy --gpus 1
python3 -c "from pathlib import Path; from tests.test_apply import make_checkpoint; make_checkpoint(Path('/tmp/gp-small'))" > "$C" 2>&1
for run in "numpy" "cupy" "cupy --gpus 1"; do
    out=/tmp/gp-out-${run// /_}
    echo "== netdsl apply --backend $run" >> "$C"
    start=$(date +%s.%N)
    timeout 120 python3 -m netdsl apply examples/recipes/nvfp4_weights.net /tmp/gp-small -o "$out" --format modelopt --no-progress --backend $run >> "$C" 2>&1
    echo "rc=$? seconds=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")" >> "$C"
done
ls -la /tmp/gp-out-numpy >> "$C" 2>&1
for other in /tmp/gp-out-cupy /tmp/gp-out-cupy_--gpus_1; do diff -r -q /tmp/gp-out-numpy "$other" >> "$C" 2>&1 && echo "IDENTICAL: numpy vs $other" >> "$C"; done
echo "== netdsl apply --gpus 2 (one GPU)" >> "$C"
python3 -m netdsl apply examples/recipes/nvfp4_weights.net /tmp/gp-small -o /tmp/gp-out-2 --no-progress --backend cupy --gpus 2 >> "$C" 2>&1; echo "rc=$?" >> "$C"
# the ModelOpt peer program alone on the small checkpoint (full traceback if it fails)
echo "== ModelOpt peer, small checkpoint" >> "$C"
timeout 120 python3 -c "$(python3 -c 'import sys; sys.path.insert(0, "benchmarks"); import bench_apply; print(bench_apply.PEER)')" /tmp/gp-small /tmp/gp-peer-small >> "$C" 2>&1; echo "rc=$?" >> "$C"

# 2. tests
timeout 300 python3 -m pytest -q -p no:cacheprovider -rs tests/test_apply_gpus.py tests/test_apply.py > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$?" >> "$OUT/pytest.txt"

# 3. 2 GB benchmark runs
B=$OUT/bench.log
for args in "--backend cupy --peer-python python3" "--backend cupy --gpus 1" "--backend cupy" "--backend cupy --gpus 1" "--backend numpy"; do
    echo "== bench_apply $args" >> "$B"
    timeout 300 python3 benchmarks/bench_apply.py --size-gb 2 --dir /tmp/bench $args --out "$OUT/apply.md" >> "$B" 2>&1
    echo "rc=$?" >> "$B"
done
ls -d -1tr /tmp/bench/bench-apply-out-*/q >> "$B"
first=$(ls -d -1tr /tmp/bench/bench-apply-out-*/q | head -1)
for other in $(ls -d -1tr /tmp/bench/bench-apply-out-*/q | tail -n +2); do diff -r -q "$first" "$other" >> "$B" 2>&1 && echo "IDENTICAL: $first vs $other" >> "$B"; done
du -sh /tmp/bench/checkpoint "$first" >> "$B"
