#!/usr/bin/env bash
# GPU figures for the README: tokens/s of a bare forward pass and of attnmag (float32 and
# bf16; heads and every site), the out-of-memory retry, and peak GPU memory, on the bundled
# SmolLM2 and a GPT-2-large-shaped model. Stops after 5 minutes at most; without a GPU it
# stops at once with one line (exit 2). Extra arguments go to benchmarks/gpu.py, e.g.
#   benchmarks/gpu.sh --cpu-smoke         # the CPU-safe parts, anywhere
#   benchmarks/gpu.sh --texts 256         # a shorter run
#   benchmarks/gpu.sh --budget 150        # skip the timings not started within 150 s
#
# On a machine without attnmag installed and without network, first write the assets folder
# here (`python -m benchmarks.gpu_assets .gpu`) and bring .gpu/ along: its wheels are then
# installed into a fresh folder on PYTHONPATH, the working tree's attnmag sources replace the
# wheel's (the run measures the code as it is now), and gpu.py runs with `--assets .gpu`.
# PYTHON picks the interpreter; with $OUT set, the output is also written to $OUT/gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
assets=() site=""
if [[ -d .gpu/whl ]]; then
    site="$(mktemp -d /tmp/attnmag-site.XXXXXX)"
    trap 'rm -rf "$site"' EXIT
    if "$python" -m pip --version >/dev/null 2>&1; then
        "$python" -m pip install -q --disable-pip-version-check --no-index --no-deps \
            --no-compile --target "$site" .gpu/whl/*.whl
    else  # a venv without pip: a wheel's importable files are its zip's contents
        for wheel in .gpu/whl/*.whl; do "$python" -m zipfile -e "$wheel" "$site"; done
    fi
    cp -r attnmag/. "$site/attnmag/"
    for stage in extract models reports; do cp -r "$stage/." "$site/attnmag/$stage/"; done
    assets=(--assets .gpu)
fi
# `python -P` leaves the working directory off sys.path, so attnmag comes from $site when
# there is one (the working tree's attnmag/ lacks its stages) and benchmarks from here.
export PYTHONPATH="${site:+$site:}$PWD${PYTHONPATH:+:$PYTHONPATH}"
log=/dev/null
if [[ -n "${OUT:-}" ]]; then log="$OUT/gpu.txt"; fi
status=0
timeout --kill-after=10 300 "$python" -P -m benchmarks.gpu "${assets[@]}" "$@" 2>&1 |
    tee "$log" || status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then
    echo "benchmarks/gpu.sh: stopped after 5 minutes (pass --texts or --models for less)" |
        tee -a "$log" >&2
fi
exit $status
