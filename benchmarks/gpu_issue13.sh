#!/usr/bin/env bash
# Every GPU measurement of issue 13, for a lent GPU machine (H100/H200, 16 cores), in two calls of ~5 min each
# (estimated, not yet run: the 10-minute limit per call and 15 minutes per session leave room for one rerun):
#   bash benchmarks/gpu_issue13.sh step      # 1. the step goals (official_step.py)
#   bash benchmarks/gpu_issue13.sh loader    # 2. and 3. the loader and the end-to-end split
# Results go to $OUT (the device tool's folder; default ./gpu_out).
#
# That machine's image has torch, torchvision, accelerate, numpy, PIL, yaml, tqdm, matplotlib, safetensors but
# neither PyAV nor pydantic: carry them as wheels. Here, once, in the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl av==18.1.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
# (37 MB), then run(command="bash benchmarks/gpu_issue13.sh step", carry=[".whl"]); this script installs them.
#
# 1. official_step.py: the official step re-created beside ours, batch 6 and 8, Swin3D-T 32 x 224: s/step,
#    clips/s, peak GiB (torch.cuda.max_memory_allocated) of the official loop, ours exact (bf16, fp32), exact +
#    motion_first, the recommended gp_batch B/4 + motion_first, and at batch 8 plain CE and that option compiled
#    (inductor; drop --compile if time is short). Goals: exact <= 40 GB at batch 8; recommended <= 2.5x a plain
#    step; >= 2x the official clips/s.
# 2. loader.py --breakdown: CPU-ms per clip in a worker, and clips/s of 8 workers (goal: >= the model's clips/s).
# 3. train_throughput.py, plain CE: `albar train` end to end, split into steps inside an epoch and epoch
#    boundaries (the 25.8 clips/s once seen there included validation, checkpoints and worker restarts).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
what=${1:-step}
if [ "$what" = step ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/card.txt"
  python3 benchmarks/official_step.py --compile inductor --warmup 3 --json "$OUT/official_step.json" 2>&1 \
    | tee "$OUT/official_step.txt"
elif [ "$what" = loader ]; then
  python3 benchmarks/loader.py --breakdown --workers 8 --clips 64 --videos 8 --cores 16 2>&1 | tee "$OUT/loader.txt"
  python3 benchmarks/train_throughput.py --out /tmp/albar_tp --objective ce --workers 8 --epochs 3 2>&1 \
    | tail -4 | tee "$OUT/throughput_ce.txt"
else
  echo "usage: bash benchmarks/gpu_issue13.sh step|loader" >&2
  exit 2
fi
