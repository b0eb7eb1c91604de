"""Crash safety: kill -9 at random moments, signals, NaN, a full disk, and resuming bit for bit."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.state import checkpoint
from dcgan_cli.training import loops, train, upkeep

from conftest import holding

STEPS = 24
RUN = {
    "model": {"image_size": 16, "latent_dim": 8, "g_filters": 8, "d_filters": 8},
    "train": {"steps": STEPS, "batch_size": 8},
    "output": {"sample_every": 4, "checkpoint_every": 1, "keep_checkpoints": 2, "log_every": 1, "n_samples": 9,
               "progress": False},
}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "crash.yaml"
    path.write_text(yaml.safe_dump(RUN))
    return path


def dcgan(*args, limit_bytes: int | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start `dcgan ...` in a fresh process (optionally with every file it writes capped at limit_bytes, in the
    environment `env`, e.g. conftest.holding's)."""
    def cap():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    env = {**(env or os.environ), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dcgan_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=cap)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """The process's exit code and stderr; killed if it has not ended by `timeout` (a held run would wait for
    ever), and the test fails."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, stderr


def here(*args) -> tuple[int, str]:
    """`dcgan ...` in this process: only a run that is to be interrupted needs a process of its own, and a process
    start is most of a tiny run's time."""
    result = CliRunner().invoke(main, list(map(str, args)))
    return result.exit_code, result.stderr


def resume(run: Path) -> tuple[int, str]:
    return here("train", "--resume", "--run-dir", run)


def arrays(ckpt: Path) -> dict[str, np.ndarray]:
    """Every saved array of a checkpoint: weights, BatchNorm statistics, optimizer slots, latents."""
    with np.load(ckpt / "weights.npz") as saved:
        out = {key: saved[key] for key in saved.files}
    out["sample_latents"] = np.load(ckpt / "sample_latents.npy")
    return out


def assert_same_run(run: Path, reference: Path) -> None:
    final = f"checkpoints/step_{STEPS:06d}"
    mine, theirs = arrays(run / final), arrays(reference / final)
    assert mine.keys() == theirs.keys()
    different = [key for key in mine if not np.array_equal(mine[key], theirs[key])]
    assert different == [], f"resumed run differs in {different[:5]}"
    for grid in sorted((reference / "samples").glob("*.png")):
        assert (run / "samples" / grid.name).read_bytes() == grid.read_bytes(), grid.name
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1)), "the metrics log continues where it stopped, without repeats"


def assert_checkpoints_whole(run: Path) -> None:
    """Every checkpoint a loader would pick is complete and readable."""
    for ckpt in checkpoint.complete(run):
        assert len(arrays(ckpt)) > 10 and load_config(ckpt / "config.yaml").train.steps == STEPS


@pytest.fixture(scope="module")
def reference(config_file, tmp_path_factory) -> tuple[Path, float]:
    """An uninterrupted run and how long it took, start-up included."""
    run = tmp_path_factory.mktemp("reference") / "run"
    started = time.monotonic()
    code, stderr = finish(dcgan("train", "--config", config_file, "--run-dir", run))
    assert code == 0, stderr
    return run, time.monotonic() - started


def kill_and_resume(config_file, reference, tmp_path, seed: int) -> None:
    ref_run, duration = reference
    run = tmp_path / f"run{seed}"
    process = dcgan("train", "--config", config_file, "--run-dir", run)
    time.sleep(np.random.default_rng(seed).uniform(0.5, duration))
    process.kill()  # SIGKILL: no handler runs, no cleanup
    process.wait()
    if run.exists():
        assert_checkpoints_whole(run)
    code, stderr = resume(run)
    if not run.exists():  # killed before the run directory was made: nothing to resume, start afresh
        assert code == 2 and "nothing to resume" in stderr
        code, stderr = here("train", "--config", config_file, "--run-dir", run)
    assert code == 0, stderr
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert_same_run(run, ref_run)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.e2e
def test_kill_9_at_a_random_moment_then_resume_matches_the_uninterrupted_run(config_file, reference, tmp_path,
                                                                             seed):
    kill_and_resume(config_file, reference, tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
@pytest.mark.e2e
def test_kill_9_twenty_more_times(config_file, reference, tmp_path, seed):
    kill_and_resume(config_file, reference, tmp_path, seed)


def wait_for_checkpoint(run: Path, process: subprocess.Popen, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not checkpoint.complete(run):
        assert process.poll() is None and time.monotonic() < deadline, "training never wrote a checkpoint"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.e2e
def test_a_signal_finishes_the_step_checkpoints_and_says_how_to_resume(config_file, reference, tmp_path, signum,
                                                                       code):
    """The run is held after its first checkpoint (conftest.holding) until the signal is sent, so it cannot
    finish first on a fast machine."""
    run = tmp_path / "run"
    env, gate = holding(tmp_path, "")
    process = dcgan("train", "--config", config_file, "--run-dir", run, env=env)
    wait_for_checkpoint(run, process)
    process.send_signal(signum)
    gate.touch()
    returned, stderr = finish(process)
    assert returned == code, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name} at step" in last_line
    assert f"Resume with: dcgan train --resume --run-dir {run}" in last_line
    stopped_at = int(last_line.split(" at step ")[1].split()[0])
    assert checkpoint.complete(run)[-1].name == f"step_{stopped_at:06d}"
    assert "Traceback" not in stderr
    returned, stderr = resume(run)
    assert returned == 0, stderr
    assert_same_run(run, reference[0])


@pytest.mark.e2e
def test_a_second_ctrl_c_quits_at_once_without_breaking_checkpoints(config_file, tmp_path):
    """Held after its first checkpoint (conftest.holding, the gate never opened), the run gets a second SIGINT
    once it has answered the first: two sent at once may reach it as one."""
    run = tmp_path / "run"
    env, _ = holding(tmp_path, "")
    process = dcgan("train", "--config", config_file, "--run-dir", run, env=env)
    wait_for_checkpoint(run, process)
    process.send_signal(signal.SIGINT)
    answer = ""
    while "send it again to quit at once" not in answer:
        read = process.stderr.read(1)
        assert read, answer
        answer += read
    process.send_signal(signal.SIGINT)
    returned, stderr = finish(process, timeout=300)
    assert returned == 130 and "Traceback" not in stderr
    assert_checkpoints_whole(run)
    returned, stderr = resume(run)
    assert returned == 0, stderr


@pytest.mark.e2e
def test_a_full_disk_names_the_path_and_keeps_the_previous_checkpoint(config_file, tmp_path):
    run = tmp_path / "run"
    returned, stderr = here("train", "--config", config_file, "--run-dir", run, "--set", "train.steps=2")
    assert returned == 0, stderr
    before = arrays(run / "checkpoints" / "step_000002")
    weights_size = (run / "checkpoints" / "step_000002" / "weights.npz").stat().st_size
    returned, stderr = finish(dcgan("train", "--resume", "--run-dir", run, "--set", "train.steps=4",
                                    limit_bytes=weights_size // 2))
    assert returned == 1 and "Traceback" not in stderr
    assert f"cannot write {run / 'checkpoints' / 'step_000003'}: File too large" in stderr
    assert f"the last complete checkpoint, {run / 'checkpoints' / 'step_000002'}, is intact" in stderr
    assert [p.name for p in checkpoint.complete(run)] == ["step_000001", "step_000002"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    after = arrays(run / "checkpoints" / "step_000002")
    assert all(np.array_equal(before[key], after[key]) for key in before)


@pytest.mark.e2e
def test_an_unwritable_run_directory_is_named(config_file, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    result = CliRunner().invoke(main, ["train", "--config", str(config_file), "--run-dir",
                                       str(tmp_path / "file" / "run")])
    assert result.exit_code == 1 and f"cannot write {tmp_path / 'file' / 'run'}: Not a directory" in result.stderr
    assert isinstance(result.exception, SystemExit), "a message and an exit code, not an exception's traceback"


@pytest.fixture
def quick_cfg(tmp_path):
    overrides = [f"{section}.{key}={value}" for section, values in RUN.items() for key, value in values.items()]
    return load_config(None, [*overrides, "train.steps=6", "output.checkpoint_every=2"])


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(quick_cfg, tmp_path,
                                                                                     monkeypatch):
    real_update_g = loops.update_g
    calls = []

    def update_g(models, *g_side):
        calls.append(1)
        loss, norm = real_update_g(models, *g_side)
        return (float("nan") if len(calls) == 5 else loss), norm

    monkeypatch.setattr(loops, "update_g", update_g)
    with pytest.raises(upkeep.Diverged, match="training diverged at step 5: g_loss=nan; nothing from this step was "
                                             "saved and the last good checkpoint is .*step_000004"):
        train.run(quick_cfg, run_dir=tmp_path / "run")
    assert [p.name for p in checkpoint.complete(tmp_path / "run")] == ["step_000002", "step_000004"]


def test_non_finite_weights_are_never_checkpointed(quick_cfg, tmp_path, monkeypatch):
    real_step = loops.train_step
    calls = []

    def poisoned_step(models, *args, **kwargs):
        logs = real_step(models, *args, **kwargs)
        calls.append(1)
        if len(calls) == 4:  # losses of step 4 are finite, but its weights are not
            kernel = models.g.get_layer("project").kernel
            kernel.assign(np.full(kernel.shape, np.inf, np.float32))
        return logs

    monkeypatch.setattr(loops, "train_step", poisoned_step)
    with pytest.raises(upkeep.Diverged, match="at step 4: a weight or optimizer variable is NaN or infinite"):
        train.run(quick_cfg, run_dir=tmp_path / "run")
    assert [p.name for p in checkpoint.complete(tmp_path / "run")] == ["step_000002"]
