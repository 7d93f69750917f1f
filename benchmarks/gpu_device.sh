#!/usr/bin/env bash
# On the lent GPU machine (device tool: command "bash benchmarks/gpu_device.sh [gpu.py options]",
# carry [".gpu"] made by benchmarks/gpu_prepare.sh). Its image's python3 (3.12) holds torch,
# torchvision, timm, onnx, onnxruntime, onnxscript, scikit-learn, matplotlib, safetensors, pluggy;
# the carried wheels add the rest under /tmp/site. This tree comes first on the path, so the code
# that runs is the code in the tree. Results go to $OUT (what the device tool brings back).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -d .gpu/whl ] && [ -d .gpu/flowers12 ] || { echo "gpu_device.sh: no .gpu/: run benchmarks/gpu_prepare.sh here and carry .gpu"; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 3
TREE="$PWD"
for src in plugins/*/src; do TREE="$TREE:$PWD/$src"; done
export PYTHONPATH="$TREE:/tmp/site" PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 TRANSFERKIT_OFFLINE=1
OUT=${OUT:-benchmarks}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv || true
python3 -c "import torch, timm, transferkit; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'timm', timm.__version__, torch.cuda.get_device_name(0))" || exit 4
python3 benchmarks/gpu.py --data .gpu/flowers12 --out "$OUT/RESULTS-gpu.md" "$@" 2>&1 | tee "$OUT/gpu.log"
