#!/bin/bash
# The device run of benchmarks/modelopt_cuda_nvfp4.py (issue 14: ModelOpt's NVFP4 quantizer on CUDA against
# its CPU path and netdsl). cwd = a copy of the repository; the carried wheels (.whl/gpu-peers: nvidia-modelopt
# 0.47.0 and what its quantizer imports) two folders up, installed as benchmarks/device/gpus_and_peer.sh does:
# a wheel where the image lacks its package or has an older one (cuda-* kept as the image has them).
set -u
WHL=${WHL:-../../.whl/gpu-peers}
SITE2=/tmp/site-mo-cuda
E=$OUT/env.txt
{ date -u; nvidia-smi -L; python3 --version; echo "== PYTHONPATH=$PYTHONPATH"; ls "$WHL"; } > "$E" 2>&1
rm -rf "$SITE2"
python3 benchmarks/device/wheels_needed.py "$WHL" > /tmp/mo-cuda-need.txt 2>> "$E"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --target "$SITE2" $(cat /tmp/mo-cuda-need.txt) >> "$E" 2>&1
echo "pip install rc=$? in $(( $(date +%s) - t0 )) s" >> "$E"
export PYTHONPATH=$SITE2:$PYTHONPATH
python3 -c "import torch, modelopt, cupy; print('torch', torch.__version__, 'modelopt', modelopt.__version__, 'cupy', cupy.__version__, torch.cuda.get_device_name())" >> "$E" 2>&1
timeout 120 python3 benchmarks/modelopt_cuda_nvfp4.py --out "$OUT" > "$OUT/run.log" 2>&1
echo "modelopt_cuda_nvfp4 rc=$?" | tee -a "$OUT/run.log"
tail -c 6000 "$OUT/run.log"
