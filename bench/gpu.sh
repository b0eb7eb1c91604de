#!/usr/bin/env bash
# The GPU table of docs/loops.md in one call on an NVIDIA GPU (under 8 minutes on an H100): the compiled step alone,
# the full step and `dcgan train` itself for DCGAN-64 at batch 64/256/1024 in float32 and bfloat16 (JAX), the
# train_on_batch loop's breakdown and `dcgan train` with it, the seed-style reference loop, several steps per call
# against one, and the pytorch/examples-style loop (PTex) beside them. One JSON line per figure on stdout, also
# collected in $OUT/gpu.jsonl where OUT is set.
#
#   PEER=FILE bash bench/gpu.sh --prepare
#                                  on a machine with the internet, once: Keras' wheels into .whl/ and the PTex loop
#                                  (FILE, pytorch/examples' dcgan/main.py as a benchmark) into .peers/ (both
#                                  git-ignored), for a GPU machine without the internet or TensorFlow
#   bash bench/gpu.sh              on the GPU machine, with .whl/ and .peers/ copied beside the checkout
#   bash bench/gpu.sh --quick      anywhere: the same sequence at the tiny size, batch 8, a few steps, on the CPU
#                                  (tests/test_bench.py runs it: a measurement that fails makes the script fail)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --prepare ]; then
    for ignored in /.whl/ /.peers/; do grep -qxF "$ignored" .git/info/exclude || echo "$ignored" >> .git/info/exclude; done
    mkdir -p .whl .peers
    if [ -n "${PEER:-}" ]; then cp "$PEER" .peers/torch_loop.py; else echo "no PEER=FILE: the PTex loop is skipped"; fi
    version=$(python3 -c "import keras; print(keras.__version__)")
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "keras==$version" namex optree
    ls .whl .peers
    exit 0
fi

if [ -d .whl ] && ! python3 -c "import keras" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" KERAS_BACKEND="${KERAS_BACKEND:-jax}" PYTHONUNBUFFERED=1
log="${OUT:-$(mktemp -d)}/gpu.jsonl"
peer=${PEER:-.peers/torch_loop.py}

if [ "${1:-}" = --quick ]; then
    arch=tiny peer_arch=dcgan32 batches="8" half_batches="8" big=8 steps=3 cli_steps=10 device=cpu small=tiny
else
    arch=dcgan64 peer_arch=dcgan64 batches="64 256" half_batches="256 1024" big=1024 steps=100 cli_steps=300 \
        device=cuda small=digits
fi

python3 -c "import keras" 2>/dev/null || { echo "no Keras for $(command -v python3): activate the project's venv, or" \
    "run bash bench/gpu.sh --prepare and carry .whl" >&2; exit 1; }

failed=0
figure() {  # one measurement: its JSON line, or (without stopping the rest) the end of what went wrong
    local out
    if out=$("$@" 2>&1); then
        printf '%s\n' "$out" | grep '^{' | tee -a "$log"
    else
        failed=$((failed + 1))
        echo "# failed: $*"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/#   /'
    fi
}

peer_figure() {  # the PyTorch reference loop, where torch and the peer's file are here (a GPU machine has both)
    if [ -f "$peer" ] && python3 -c "import torch" 2>/dev/null; then figure python3 "$peer" "$@"
    else echo "# skipped: the PyTorch reference loop (no torch or no $peer here)"; fi
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/# /' || true
for batch in $batches; do
    figure python3 bench/throughput.py --arch "$arch" --batch "$batch" --loop compiled --breakdown --steps "$steps"
    figure python3 bench/throughput.py --arch "$arch" --batch "$batch" --loop compiled --cli --steps "$cli_steps"
    peer_figure --arch "$peer_arch" --batch "$batch" --steps "$steps" --device "$device"
done
for batch in $half_batches; do
    figure python3 bench/throughput.py --arch "$arch" --batch "$batch" --loop compiled --precision bfloat16 \
        --breakdown --steps "$steps"
done
figure python3 bench/throughput.py --arch "$arch" --batch "$big" --loop compiled --precision bfloat16 --cli \
    --steps "$cli_steps"
peer_figure --arch "$peer_arch" --batch "$big" --steps "$steps" --device "$device" --fast
figure python3 bench/throughput.py --arch "$arch" --batch "${batches%% *}" --loop train_on_batch --breakdown \
    --steps "$steps"
figure python3 bench/throughput.py --arch "$arch" --batch "${batches%% *}" --loop train_on_batch --cli \
    --steps "$cli_steps"
figure python3 bench/throughput.py --arch "$arch" --batch "${batches%% *}" --loop reference --steps "$steps"
figure python3 bench/steps_per_call.py --arch "$small" --steps "$steps"
echo "# figures in $log"
[ "$failed" -eq 0 ] || { echo "# $failed measurements failed" >&2; exit 1; }
