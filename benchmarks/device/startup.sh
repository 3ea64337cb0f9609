#!/bin/bash
# Where apply's fixed cost goes (lead, 2026-12-07): Python's imports (-X importtime), CuPy's import and the
# CUDA context, and the process's exit after its last line, on the tests' small checkpoint. Runs from the
# repository root with $OUT set (lark installed, PYTHONPATH the checkout).
set -u
S=$OUT/startup.txt
python3 -c "from pathlib import Path; from tests.test_apply import make_checkpoint; make_checkpoint(Path('/tmp/su-small'))" > "$S" 2>&1
python3 -X importtime -m netdsl --version 2> "$OUT/importtime-version.txt" >> "$S"
for i in 1 2 3; do
  s=$(date +%s.%N); python3 -m netdsl --version > /dev/null; e=$(date +%s.%N)
  echo "netdsl --version: $(python3 -c "print(round($e - $s, 3))") s" >> "$S"
  s=$(date +%s.%N); python3 -c "pass"; e=$(date +%s.%N)
  echo "python3 -c pass: $(python3 -c "print(round($e - $s, 3))") s" >> "$S"
done
python3 - >> "$S" 2>&1 <<'PY'
import time
t0 = time.perf_counter()
import numpy  # noqa
t1 = time.perf_counter()
import cupy
t2 = time.perf_counter()
cupy.cuda.runtime.getDeviceCount()
t3 = time.perf_counter()
x = cupy.zeros(1); x.sum().item()
t4 = time.perf_counter()
from netdsl.backends.cupy import precompile  # noqa
t5 = time.perf_counter()
print(f"import numpy {t1-t0:.3f}  import cupy {t2-t1:.3f}  device count {t3-t2:.3f}  first kernel+context {t4-t3:.3f}  import netdsl.backends.cupy {t5-t4:.3f}")
PY
for i in 1 2 3; do
  rm -rf /tmp/su-out
  s=$(date +%s.%N)
  python3 -X importtime -m netdsl apply examples/recipes/nvfp4_weights.net /tmp/su-small -o /tmp/su-out --format modelopt --no-progress --backend cupy --timing 2> "$OUT/importtime-apply-$i.txt" > /dev/null
  e=$(date +%s.%N)
  echo "apply small (cupy, --timing, importtime on): $(python3 -c "print(round($e - $s, 3))") s; $(grep '^timing' "$OUT/importtime-apply-$i.txt")" >> "$S"
done
for i in 1 2 3; do
  rm -rf /tmp/su-out
  s=$(date +%s.%N)
  python3 -c "
import sys, time
t0 = time.time()
import netdsl.cli as cli
t1 = time.time()
sys.argv = ['netdsl', 'apply', 'examples/recipes/nvfp4_weights.net', '/tmp/su-small', '-o', '/tmp/su-out', '--format', 'modelopt', '--no-progress', '--backend', 'cupy', '--timing']
real = cli.main
def timed():
    code = real()
    print(f'python started {t0:.3f} imported {t1:.3f} main returned {time.time():.3f}', file=sys.stderr)
    return code
cli.main = timed
cli.entry()" 2> /tmp/su-t.txt > /dev/null
  e=$(date +%s.%N)
  echo "apply small (cupy, --timing): launched $s exited $e; $(grep -h '^timing\|^python started' /tmp/su-t.txt | tr '\n' ' ')" >> "$S"
done
cat "$S"
