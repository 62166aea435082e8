#!/usr/bin/env bash
# Create one virtualenv per benchmark peer under .predmesh/bench/venvs/<peer>.
#
# The peers pin grpcio/protobuf/numpy versions that conflict with predmesh's own venv,
# so they never share it. Idempotent: a venv whose marker file exists is left alone
# (delete the folder, or pass --force, to rebuild). Usage:
#
#   bash bench/setup_peers.sh [--force] [mlserver] [fastapi] [feast] [ray]     # default: all four
#
# Env: PREDMESH_BENCH_PYTHON (interpreter used to create the venvs; default python3.11),
#      PREDMESH_BENCH_VENVS (where the venvs go; default .predmesh/bench/venvs; bench/peers/launch.py reads it too).
# Ray (`ray[serve]`, ~600 MB) is a benchmark peer only: never a predmesh dependency, never installed by CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${PREDMESH_BENCH_VENVS:-$ROOT/.predmesh/bench/venvs}"
PY="${PREDMESH_BENCH_PYTHON:-python3.11}"
FORCE=0
PEERS=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    mlserver|fastapi|feast|ray) PEERS+=("$arg") ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
[ ${#PEERS[@]} -eq 0 ] && PEERS=(mlserver fastapi feast ray)

# Pinned so that a rerun measures the same software.
declare -A REQS=(
  # MLServer has no ONNX runtime of its own: bench/peers/mlserver_onnx.py is a tiny custom one.
  [mlserver]="mlserver==1.7.1 onnxruntime==1.22.1"
  # The classic tutorial service: FastAPI + uvicorn, sync redis GETs, onnxruntime per request.
  [fastapi]="fastapi==0.115.12 uvicorn==0.34.3 redis==5.2.1 onnxruntime==1.22.1 numpy<2"
  # Feast SDK + feature server with a Redis online store.
  [feast]="feast[redis]==0.67.0"
  # Ray Serve composition of the same job: a features deployment (Redis) + a model deployment (ORT).
  [ray]="ray[serve]==2.60.0 redis==5.2.1 onnxruntime==1.22.1"
)

mkdir -p "$VENVS"
for peer in "${PEERS[@]}"; do
  dir="$VENVS/$peer"
  marker="$dir/.predmesh-bench-ok"
  if [ "$FORCE" = 0 ] && [ -f "$marker" ]; then
    echo "[$peer] ready ($dir)"
    continue
  fi
  echo "[$peer] creating $dir with $PY"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  # shellcheck disable=SC2086
  "$dir/bin/python" -m pip install --quiet ${REQS[$peer]}
  "$dir/bin/python" -m pip freeze > "$dir/requirements.lock"
  touch "$marker"
  echo "[$peer] ready ($dir)"
done
