#!/usr/bin/env bash
# The GPU scenario as one script for the device tool (an accelerator machine without network).
# Carry the wheels downloaded here (see docs/BENCHMARKS.md, "GPU"): nvidia-pytriton, tritonclient,
# python-rapidjson for the device's Python. Results land in $OUT (or .predmesh/bench/results).
set -uo pipefail
WHEELS=${WHEELS:-build/gpuwheels}
OUT=${OUT:-.predmesh/bench}
SITE=$(mktemp -d)
echo "== device"; nvidia-smi -L || true; python3 -V; nproc
echo "== python packages the mesh path needs (present / missing)"
for m in torch numpy grpc google.protobuf pydantic pydantic_settings redis onnxruntime pandas pyarrow \
    confluent_kafka prometheus_client opentelemetry yaml; do
  python3 -c "import $m" 2>/dev/null && echo "present $m" || echo "missing $m"
done
command -v redis-server >/dev/null && echo "present redis-server" || echo "missing redis-server"
python3 -m pip install -q --no-deps --target "$SITE" "$WHEELS"/*.whl || exit 4
export PYTHONPATH="$SITE:$PWD"
python3 -m bench.gpu --duration "${DURATION:-6}" --batch-sizes "${BATCH_SIZES:-1,64}" --out "$OUT/results"
