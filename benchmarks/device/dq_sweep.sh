#!/bin/bash
# kernel variants vs the traffic-matched ceiling (interleaved / prefix orders split)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv > $OUT/gpu.txt 2>&1
timeout 225 python3 benchmarks/sweep_dq.py --out $OUT --budget 150 > $OUT/sweep.log 2>&1
echo "sweep rc=$?"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv >> $OUT/gpu.txt 2>&1
tail -c 11000 $OUT/sweep.log
