#!/usr/bin/env bash
# Every GPU measurement of issue 13 in one go, for a lent GPU machine (H100/H200, 16 cores): ~8-10 min (estimated;
# with a 10-minute limit per call, run step 1 alone, then 2 and 3).
#   OUT=/some/folder bash benchmarks/gpu_issue13.sh        (default OUT: ./gpu_out)
# 1. official_step.py: the official step re-created beside ours, batch 6 and 8, Swin3D-T 32 x 224: s/step,
#    clips/s, peak GiB (torch.cuda.max_memory_allocated) of the official loop, ours exact (bf16, fp32), exact +
#    motion_first, the recommended gp_batch B/4 + motion_first, and at batch 8 plain CE and that option compiled.
#    Goals: exact <= 40 GB at batch 8; recommended <= 2.5x a plain step; >= 2x the official clips/s.
# 2. loader.py --breakdown: CPU-ms per clip in a worker, and clips/s of 8 workers (goal: >= the model's clips/s).
# 3. train_throughput.py, plain CE: `albar train` end to end, split into steps inside an epoch and epoch
#    boundaries (the 25.8 clips/s once seen there included validation, checkpoints and worker restarts).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/card.txt"
python benchmarks/official_step.py --compile inductor --warmup 3 --json "$OUT/official_step.json" 2>&1 \
  | tee "$OUT/official_step.txt"
python benchmarks/loader.py --breakdown --workers 8 --clips 64 --videos 8 --cores 16 2>&1 | tee "$OUT/loader.txt"
python benchmarks/train_throughput.py --out /tmp/albar_tp --objective ce --workers 8 --epochs 3 2>&1 \
  | tail -4 | tee "$OUT/throughput_ce.txt"
