#!/usr/bin/env bash
# Fetch, here, the wheels a lent H200 machine lacks (it has PyTorch, numpy, einops,
# safetensors, tqdm, imageio, matplotlib and tensorboard, but no network and none of
# these), for its Python 3.12, into .whl/ (ignored by git; about 10 MB in all).
#   bash tools/gpu/fetch_wheels.sh       then carry .whl with tools/gpu/train_h200.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl \
    hydra-core==1.3.8 omegaconf==2.3.1 gymnasium==1.4.0 farama-notifications==0.0.6 \
    mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0 pyopengl==3.1.10 websockets==17.4
# antlr4 (needed by omegaconf) ships no wheel: build its pure-Python one here
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -la .whl
