#!/usr/bin/env bash
# One command on a lent H200: the reference recipe at GPU scale (conf/experiment/gpu_h200.yaml),
# data made there with MuJoCo, training, the fidelity probe, and an export of at most 16 MiB.
#   here:   bash tools/gpu/fetch_wheels.sh
#   there:  bash tools/gpu/train_h200.sh [Hydra overrides]      (the device tool: carry [".whl"])
# Results go to $OUT (the device tool's folder) or runs/: world.safetensors, eval/, train_summary.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -d .whl ] && ! python3 -c "import hydra, mujoco" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" MUJOCO_GL="${MUJOCO_GL:-egl}" PYTHONUNBUFFERED=1
out="${OUT:-runs}/gpu_h200"
start=$(date +%s)
python3 -m worldsim.train experiment=gpu_h200 out="$out" data.data_root="${OUT:-runs}/data" "$@"
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
done = json.loads((out / "done.json").read_text())
size = pathlib.Path(done["export"]["path"]).stat().st_size
print(json.dumps({"flops": done["flops"], "wall_s": done["wall_s"], "export_mib": round(size / 2**20, 2), "fidelity": done.get("eval", {}).get("mean")}))
assert size <= 16 * 2**20, f"the export is {size / 2**20:.1f} MiB, over 16"
PY
echo "total wall time: $(( $(date +%s) - start )) s"
