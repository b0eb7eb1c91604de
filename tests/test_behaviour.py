"""What the defaults train, held still across refactors: the final weights of a short default run on each loop and
each backend, and the resolved config of every shipped preset, against a record in tests/behaviour/.

A change meant to alter what the defaults train rewrites the record in the same commit, and says why:

    DCGAN_RECORD_BEHAVIOUR=1 pytest -n 0 tests/test_behaviour.py

On a CPU a record was taken on (with the same oneDNN setting), each run's weights must hash the same, bit for bit.
Another CPU may round differently (oneDNN and XLA pick kernels by instruction set), and 12 steps of a GAN grow the
difference, so there D's and G's weights are held to the first record's summary of each array instead, to
ROUNDING of the array's spread (its standard deviation). The oneDNN setting is the switch as the test process has
it after dcgan-cli's default (dcgan_cli/machine.py): on an x86 CPU with AVX2 but without AVX-512 VNNI or BF16 it
reads TF_ENABLE_ONEDNN_OPTS=1 since the default turned oneDNN on there, a record of its own (its Eigen-kernel record,
"unset", no longer applies); where TensorFlow turns oneDNN on by itself it stays "unset".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dcgan_cli.ablate.executors import thread_env

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).resolve().parent / "behaviour"
RUNS = RECORD / "runs.json"
RECORDING = os.environ.get("DCGAN_RECORD_BEHAVIOUR") == "1"
LOOPS = ("train_on_batch", "compiled")
STEPS = 12
# Another CPU's rounding, grown over STEPS steps, moved D's and G's weights by at most 0.029 of each array's spread
# (TensorFlow's oneDNN kernels against its Eigen ones; JAX 0.011, torch 0.003); raising the flip rate from 0.05 to
# 0.06 moved them by 0.16, the learning rate from 2e-4 to 2.1e-4 by 0.20.
ROUNDING = 0.08
PRESETS = sorted(path.name for path in (ROOT / "configs").glob("*.yaml"))

# Both loops' runs in one process per backend (a process start costs more than a short run).
RUNNER = """
import json, sys
from dcgan_cli.cli import main
for args in json.loads(sys.argv[1]):
    main(args, standalone_mode=False)
"""


def machine() -> str:
    """The CPU's model name and TensorFlow's oneDNN switch as this process has it, dcgan-cli's default included
    (which kernels it runs): the record they have, if any, must match bit for bit."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    return f"{cpu}, TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}"


def default_run(run: Path, loop: str) -> list[str]:
    """configs/default.yaml (the eleven hacks on the digits), STEPS steps on `loop`, its final checkpoint only."""
    sets = [f"train.loop={loop}", f"train.steps={STEPS}", f"output.sample_every={STEPS}",
            f"output.checkpoint_every={STEPS}", "output.progress=false"]
    return ["train", "--config", str(ROOT / "configs" / "default.yaml"), "--run-dir", str(run),
            *[arg for item in sets for arg in ("--set", item)]]


def final_weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / f"step_{STEPS:06d}" / "weights.npz") as saved:
        return {key: saved[key] for key in sorted(saved.files)}


def digest(weights: dict[str, np.ndarray]) -> str:
    sha = hashlib.sha256()
    for key, array in weights.items():
        sha.update(key.encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()


def summary(weights: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Each array's mean, standard deviation and first values: what another CPU's rounding leaves alike."""
    return {key: [float(array.mean()), float(array.std()), *map(float, array.ravel()[:4])]
            for key, array in weights.items() if array.dtype.kind == "f"}


def backends() -> list:
    found = [pytest.param("tensorflow")]
    for name in ("jax", "torch"):
        missing = importlib.util.find_spec(name) is None
        found.append(pytest.param(name, marks=pytest.mark.skipif(missing, reason=f"{name} is not installed")))
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("backend", backends())
def test_a_short_default_run_trains_the_recorded_weights_on_each_loop(backend, tmp_path):
    """One compute thread, since a sum split over threads rounds by how it was split."""
    commands = [default_run(tmp_path / loop, loop) for loop in LOOPS]
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(commands)], capture_output=True, text=True,
                            cwd=ROOT, timeout=600,
                            env={**os.environ, **thread_env(1), "KERAS_BACKEND": backend,
                                 "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    found = {f"{backend}/{loop}": final_weights(tmp_path / loop) for loop in LOOPS}
    records = json.loads(RUNS.read_text()) if RUNS.is_file() else {}
    here = machine()
    if RECORDING:
        records[here] = {**records.get(here, {}), **{
            name: {"sha256": digest(weights), "summary": summary(weights)} for name, weights in found.items()}}
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        RUNS.write_text(json.dumps(records, indent=1) + "\n")
    own = records.get(here, {})
    for name, weights in found.items():
        if name in own:
            assert digest(weights) == own[name]["sha256"], f"{name}: the default run trains other weights"
            continue
        recorded = next(iter(records.values()))[name]["summary"]
        for key, values in summary(weights).items():
            if key.startswith(("d/", "g/")):  # the networks' weights; Adam's moments amplify rounding further
                spread = recorded[key][1]  # the array's standard deviation: the scale of its values
                np.testing.assert_allclose(values, recorded[key], rtol=1e-3, atol=ROUNDING * spread,
                                           err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", PRESETS)
def test_each_shipped_config_resolves_to_the_recorded_config(name):
    from click.testing import CliRunner

    from dcgan_cli.cli import main

    result = CliRunner().invoke(main, ["config", "--config", str(ROOT / "configs" / name)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recorded = RECORD / "configs" / name
    if RECORDING:
        recorded.parent.mkdir(parents=True, exist_ok=True)
        recorded.write_text(result.output)
    assert result.output == recorded.read_text(), f"{name} resolves to another config than recorded"
