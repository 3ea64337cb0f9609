#!/bin/bash
# the kernels' GPU tests (bit-exact against NumPy), with the default build and
# with a build that flips every new tuning knob (so whichever the sweep picks is already checked).
set -u
P="python3 -m pytest -q -p no:cacheprovider"
KNOBS="NETDSL_AHEAD=2 NETDSL_SCALE_AHEAD=7 NETDSL_STORE_CS=1 NETDSL_MIN_CTAS_PER_SM=6 NETDSL_CTA16_PASSES=10"
PRE="from netdsl.backends.cupy import precompile; print('parts built:', precompile())"
python3 -c "$PRE" > $OUT/precompile.log 2>&1 &
NETDSL_CUDA_DEFINES="$KNOBS" python3 -c "$PRE" > $OUT/precompile-knobs.log 2>&1 &
wait
date
timeout 175 $P -x tests/test_gpu_kernels.py -k every_granularity > $OUT/default-granularity.log 2>&1 &
timeout 175 $P -x tests/test_gpu_kernels.py -k "not every_granularity" tests/test_gpu_fusion.py tests/test_kernel_abi.py > $OUT/default-rest.log 2>&1 &
NETDSL_CUDA_DEFINES="$KNOBS" timeout 175 $P -x tests/test_gpu_kernels.py -k "not takes_these_geometries and not large_random" > $OUT/knobs.log 2>&1 &
wait
date
for f in $OUT/*.log; do echo "== $f"; tail -n 4 $f; done
