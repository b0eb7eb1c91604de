"""Shared fixtures: a tiny config that trains in a second, quiet TensorFlow logs, a per-session cache folder, and
thread caps so that pytest-xdist's workers share the cores instead of fighting over them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Caches the code writes by default (the domain classifier, real-data summaries) go to one folder per test session,
# shared by its tests and the processes they start, never into the user's ~/.cache.
# Under pytest-xdist the controller makes the folder, its workers inherit it, and the controller removes it at the end.
_OWN_CACHE = "DCGAN_TEST_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["DCGAN_TEST_CACHE"] = tempfile.mkdtemp(prefix="dcgan-tests-cache-")
os.environ["XDG_CACHE_HOME"] = os.environ["DCGAN_TEST_CACHE"]
# JAX compiles the same tiny steps in many tests and processes; a compilation cache shared by the session (every
# JAX process the tests start inherits it) saves most of that time and changes no result.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.environ["XDG_CACHE_HOME"], "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The tests' steps run a handful of times on tiny networks: XLA's optimisation passes cost more than they save there
# (a quarter of the CPU time of a JAX test process). Both sides of every comparison compile alike.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

from dcgan_cli.ablate.executors import cores, thread_env  # noqa: E402 (imports neither Keras nor an engine)

# Each xdist worker, and every process it starts, computes with cores / workers threads, set before any engine starts.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.update(thread_env(max(1, cores() // _WORKERS)))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from dcgan_cli.config import load_config  # noqa: E402


def pytest_sessionfinish(session) -> None:
    """The session that made the cache folder removes it (not an xdist worker, not a process a test started)."""
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["DCGAN_TEST_CACHE"], ignore_errors=True)


TINY = [
    "model.image_size=16", "model.latent_dim=8", "model.g_filters=8", "model.d_filters=8",
    "train.batch_size=8", "train.steps=4",
    "output.sample_every=4", "output.checkpoint_every=2", "output.log_every=2", "output.n_samples=9",
    "output.progress=false",
]


def crashed_copy(run: Path, *, after: int, to: Path) -> Path:
    """A copy of a finished run as a crash just after its step-`after` checkpoint leaves it: the later checkpoints
    gone, the later grids and log lines still there. Resuming it must reproduce the finished run."""
    shutil.copytree(run, to)
    for path in (to / "checkpoints").glob("step_*"):
        if int(path.name.removeprefix("step_")) > after:
            shutil.rmtree(path)
    assert (to / "checkpoints" / f"step_{after:06d}" / "COMPLETE").is_file(), f"no checkpoint at step {after}"
    return to


@pytest.fixture
def tiny_overrides() -> list[str]:
    """`--set` overrides for a run of 4 steps on 16x16 digits with small networks."""
    return list(TINY)


@pytest.fixture
def tiny_cfg():
    """The tiny config as a Config."""
    return load_config(None, TINY)


@pytest.fixture(scope="session")
def tiny_scores():
    """(config, dataset, domain reference) of the tiny config. Its classifier and real-image statistics land in the
    session's cache: trained here by TensorFlow in 6 s, for the JAX and torch processes that tests start too (JAX
    takes 25 s to train it on a CPU)."""
    from dcgan_cli.data import sources
    from dcgan_cli.evaluate import scoring

    cfg = load_config(None, TINY)
    dataset = sources.load_dataset(cfg, progress=False)
    return cfg, dataset, scoring.reference(dataset, "domain", cfg=cfg, progress=False, log=lambda message: None)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory):
    """plain_run(loop): the tiny config trained on `loop` once per session, with a checkpoint at every step, all
    kept: the run that a switch's run (or one that also scores, probes, ...) is compared with. Tests only read it."""
    from dcgan_cli.training import train

    made: dict[str, Path] = {}

    def run(loop: str) -> Path:
        if loop not in made:
            cfg = load_config(None, [*TINY, f"train.loop={loop}", "output.checkpoint_every=1",
                                     "output.keep_checkpoints=4"])
            made[loop] = train.run(cfg, run_dir=tmp_path_factory.mktemp(f"plain-{loop}") / "run")
        return made[loop]

    return run


def saved_weights(run: Path, step: int) -> dict[str, np.ndarray]:
    """The arrays of a run's step-`step` checkpoint (weights.npz), by group/index key."""
    with np.load(run / "checkpoints" / f"step_{step:06d}" / "weights.npz") as found:
        return {key: found[key] for key in found.files}


def runs_per_loop(tmp_path_factory, config_of):
    """get(loop): a run of config_of(loop) trained once per module and loop, for tests that only read it."""
    from dcgan_cli.training import train

    made: dict[str, Path] = {}

    def get(loop: str) -> Path:
        if loop not in made:
            made[loop] = train.run(config_of(loop), run_dir=tmp_path_factory.mktemp(loop))
        return made[loop]

    return get


def as_written_before_the_logit_losses(path) -> None:
    """Make a checkpoint what format 2 wrote: the same weights (its D's sigmoid had none), no gradient norm among
    G's optimizer variables (its last, gradients.keeping_gradient_norm), and a config with the retired d_wins keys."""
    state = json.loads((path / "state.json").read_text())
    last = f"g_optimizer/{len(state['variables']['g_optimizer']) - 1:04d}"
    assert state["variables"]["g_optimizer"][-1][0].endswith("gradient_norm")
    state["format"], state["variables"]["g_optimizer"] = 2, state["variables"]["g_optimizer"][:-1]
    (path / "state.json").write_text(json.dumps(state))
    with np.load(path / "weights.npz") as saved:
        arrays = {key: saved[key] for key in saved.files if key != last}
    np.savez(path / "weights.npz", **arrays)
    raw = yaml.safe_load((path / "config.yaml").read_text())
    monitor = {key: value for key, value in raw["monitor"].items() if key not in ("d_wins_margin", "d_wins_grad_norm")}
    raw["monitor"] = {**monitor, "d_wins_loss": 0.3, "d_wins_output": 0.05}
    (path / "config.yaml").write_text(yaml.safe_dump(raw))


# Put on PYTHONPATH for a test's `dcgan` processes: a run whose directory contains $DCGAN_TEST_HOLD waits after
# each checkpoint it writes until the file $DCGAN_TEST_GATE exists, so a test can act while a run is held midway
# (stop it, check what it kept) however fast or slow the machine is.
HOLD_SITE = """
import os
if os.environ.get("DCGAN_TEST_GATE"):
    import time
    from dcgan_cli.state import checkpoint

    _save = checkpoint.save

    def _held(run_dir, *args, **kwargs):
        path = _save(run_dir, *args, **kwargs)
        if os.environ["DCGAN_TEST_HOLD"] in str(run_dir):
            while not os.path.exists(os.environ["DCGAN_TEST_GATE"]):
                time.sleep(0.05)
        return path

    checkpoint.save = _held
"""


def holding(tmp_path: Path, hold: str) -> tuple[dict, Path]:
    """The environment for `dcgan` processes whose runs matching `hold` (a part of their directory; "" for every
    run) wait after each checkpoint (HOLD_SITE), and the gate file that lets them go on once it exists."""
    site = tmp_path / "hold-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HOLD_SITE)
    gate = tmp_path / "gate-open"
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "DCGAN_TEST_GATE": str(gate),
            "DCGAN_TEST_HOLD": hold}, gate
