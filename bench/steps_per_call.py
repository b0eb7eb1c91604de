"""Would several steps per dispatch help? The JAX compiled step run K times inside one jitted call (a fori_loop over
K steps, the dataset on the device, each step's draws made inside) against the product's one call per step.

    KERAS_BACKEND=jax python bench/steps_per_call.py --arch tiny      # 8x8 images, 4 filters, batch 8
    KERAS_BACKEND=jax python bench/steps_per_call.py --arch digits    # the default 16x16 digits model, batch 64

Prints one JSON line per K (ms per step, best of 2 rounds) and one for the product's own loop call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from dcgan_cli.state import draws  # noqa: E402
from dcgan_cli.training.compiled import CompiledStep  # noqa: E402
from dcgan_cli.config import load_config  # noqa: E402
from dcgan_cli.nets.models import build_models  # noqa: E402

ARCHS = {
    "tiny": ["model.image_size=8", "model.g_filters=4", "model.d_filters=4", "model.latent_dim=8",
             "train.batch_size=8"],
    "digits": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (2,000 tiny, 200 digits)")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit("the stateless step runs on JAX: KERAS_BACKEND=jax")
    steps = max(args.steps or (2000 if args.arch == "tiny" else 200), 16)  # at least one call of the largest K
    cfg = load_config(None, ARCHS[args.arch])
    shape = (cfg.model.image_size, cfg.model.image_size, cfg.model.channels)
    images = np.random.default_rng(0).integers(0, 256, (512, *shape), dtype=np.uint8)
    step = CompiledStep(build_models(cfg, np.random.default_rng(0)), cfg, draws.Draws(cfg, count=len(images)),
                        resident=True)
    source = keras.ops.convert_to_tensor(images)

    def several(state, source, first, count):
        return jax.lax.fori_loop(0, count, lambda i, inner: step._pure_step(inner, source, first + i), state)

    several = jax.jit(several, donate_argnums=(0,))
    for k in (1, 4, 16):
        times = []
        for _ in range(2):
            step.state = jax.block_until_ready(several(step.state, source, np.int32(0), np.int32(k)))
            started = time.perf_counter()
            for call in range(steps // k):
                step.state = several(step.state, source, np.int32(call * k), np.int32(k))
            jax.block_until_ready(step.state)
            times.append((time.perf_counter() - started) * 1000 / (steps // k * k))
        print(json.dumps({"arch": args.arch, "steps_per_call": k, "ms_per_step": round(min(times), 4),
                          "devices": [str(d) for d in jax.devices()]}))
    times = []
    for _ in range(2):
        step(source, 0)
        jax.block_until_ready(step.state)
        started = time.perf_counter()
        for s in range(steps):
            step(source, s)
        jax.block_until_ready(step.state)
        times.append((time.perf_counter() - started) * 1000 / steps)
    print(json.dumps({"arch": args.arch, "steps_per_call": "product (one call per step)",
                      "ms_per_step": round(min(times), 4), "devices": [str(d) for d in jax.devices()]}))


if __name__ == "__main__":
    sys.exit(main())
