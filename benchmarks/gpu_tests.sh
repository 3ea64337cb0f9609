#!/usr/bin/env bash
# The GPU part of the test suite, as run on the H100 (docs/testing.md, "The GPU run"): the kernels built
# once, then every test file that touches the GPU in four parallel parts. Logs go to ${1:-gpu-test-logs}/.
# Usage: benchmarks/gpu_tests.sh [LOG_DIR]
set -u
cd "$(dirname "$0")/.."
logs="${1:-gpu-test-logs}"
mkdir -p "$logs"
python3 -c "from netdsl.backends.cupy import precompile; print('kernel parts built:', precompile())"
P="python3 -m pytest -q -p no:cacheprovider"
part() {
    local name=$1
    shift
    $P "$@" > "$logs/$name.log" 2>&1
    echo "$name rc=$?" >> "$logs/$name.log"
}
part kernels tests/test_gpu_kernels.py -k every_granularity &
part launch tests/test_gpu_kernels.py -k "not every_granularity" tests/test_kernel_abi.py \
    tests/test_device_arrays.py tests/test_memory.py tests/test_apply.py tests/test_apply_gpus.py tests/test_apply_ct.py \
    tests/test_recipe_layers.py tests/test_view.py &
part backends tests/test_gpu_fusion.py tests/test_examples.py tests/test_backends.py tests/test_special_values.py \
    tests/test_mark.py tests/test_cli_options.py &
part interop tests/test_ops_table.py tests/test_constant_rooted.py tests/test_onnx_interop.py tests/test_compare.py \
    tests/test_producers.py &
wait
python3 -m netdsl test examples/ --backend cupy > "$logs/cases.log" 2>&1
echo "cases rc=$?" >> "$logs/cases.log"
for log in "$logs"/*.log; do
    echo "== $log"
    tail -n 2 "$log"
done
