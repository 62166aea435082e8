#!/usr/bin/env bash
# The GPU scenario as one script for the device tool (an accelerator machine without network).
# Carry (see docs/BENCHMARKS.md, "GPU"): build/gpuwheels (nvidia-pytriton, tritonclient, python-rapidjson,
# and the mesh's pure-Python/cp312 dependencies the device image lacks), build/gpubin (redis-server and
# its libraries, behind a wrapper) and build/gpu-out (demo models trained here, so the device needs no
# training stack). Results are copied to $OUT.
set -uo pipefail
WHEELS=${WHEELS:-build/gpuwheels}
RESULTS=${RESULTS:-build/gpu-out}
SITE=$(mktemp -d)
echo "== device"; nvidia-smi -L || true; python3 -V; nproc
python3 -m pip install -q --no-deps --target "$SITE" "$WHEELS"/*.whl || exit 4
export PYTHONPATH="$SITE:$PWD" PATH="$PWD/build/gpubin:$PATH"
for m in torch numpy grpc pydantic_settings redis onnxruntime pandas opentelemetry.sdk tritonclient.grpc; do
  python3 -c "import $m" 2>/dev/null && echo "present $m" || echo "missing $m"
done
command -v redis-server >/dev/null && redis-server --version
python3 -m bench.gpu --duration "${DURATION:-6}" --batch-sizes "${BATCH_SIZES:-1,64}" --out "$RESULTS"
rc=$?
if [ -n "${OUT:-}" ]; then
  cp "$RESULTS"/gpu-*.json "$OUT"/ 2>/dev/null
  mkdir -p "$OUT/logs" && find "$RESULTS" -name '*.log' -size -2M -exec cp {} "$OUT/logs/" \; 2>/dev/null
fi
exit $rc
