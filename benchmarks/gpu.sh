#!/usr/bin/env bash
# GPU figures for the README: tokens/s of a bare forward pass and of attnmag (float32 and
# bf16; heads and every site), the out-of-memory retry, and peak GPU memory, on the bundled
# SmolLM2 and a GPT-2-large-shaped model. Stops after 5 minutes at most; without a GPU it
# stops at once with one line (exit 2). Extra arguments go to benchmarks/gpu.py, e.g.
#   benchmarks/gpu.sh --cpu-smoke         # the CPU-safe parts, anywhere
#   benchmarks/gpu.sh --texts 256         # a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
status=0
timeout --kill-after=10 300 "$python" -m benchmarks.gpu "$@" || status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then
    echo "benchmarks/gpu.sh: stopped after 5 minutes (pass --texts or --models for less)" >&2
fi
exit $status
