"""`dcgan ablate`: designs, the study on disk, the report, parallel and Ray runs, interruption, shared caches."""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from filelock import FileLock
from PIL import Image

from dcgan_cli.ablate import compare, executors, report, study, worker
from dcgan_cli.ablate.design import FACTORS, GROUPS, AblationError, parse_factors, variants
from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.files import write_atomically
from dcgan_cli.training import upkeep
from dcgan_cli.training.monitor import METRICS

from conftest import TINY, holding

BASE = load_config(None, TINY)
DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"
STUDY_SET = [*TINY, "output.eval_every=0"]


def names(made) -> list[str]:
    return [v.name for v in made]


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def dcgan(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dcgan_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def ablate_args(run_dir: Path, *extra: str, sets: list[str] = STUDY_SET) -> list[str]:
    args = ["ablate", "--config", str(DIGITS), "--factors", "batch_norm,d_bn_in_g_update", "--seeds", "2",
            "--n", "50", "--run-dir", str(run_dir), *extra]
    for item in sets:
        args += ["--set", item]
    return args


# ------------------------------------------------------------------ designs


def test_leave_one_out_is_the_base_and_each_factor_switched_alone():
    factors, everything = parse_factors("all")
    made, reference, varied, notes = variants(BASE, factors, design="leave-one-out", everything=everything)
    assert reference == "base" and names(made)[0] == "base" and len(made) == 13 and not notes
    assert [f.name for f in varied] == list(FACTORS)[:12] == list(GROUPS["all"])
    moving = made[names(made).index("d_bn_in_g_update-moving")]
    assert moving.changes == (("model.d_bn_in_g_update", "moving"),)
    assert moving.apply(BASE).model.d_bn_in_g_update == "moving" and moving.apply(BASE).hacks == BASE.hacks
    # A factor the base has off is switched on.
    base_off = load_config(None, [*TINY, "hacks.noisy_labels=false"])
    made, *_ = variants(base_off, parse_factors("noisy_labels")[0], design="leave-one-out")
    assert names(made) == ["base", "noisy_labels-on"] and made[1].apply(base_off).hacks.noisy_labels


def test_one_at_a_time_starts_from_all_off_and_leaves_out_what_it_cannot_vary():
    factors, everything = parse_factors("all")
    made, reference, varied, notes = variants(BASE, factors, design="one-at-a-time", everything=everything)
    assert reference == "all-off" and names(made)[0] == "all-off"
    all_off = made[0].apply(BASE)
    assert not any(getattr(all_off.hacks, f.name) for f in factors if f.path.startswith("hacks."))
    only = made[names(made).index("adam-only")].apply(BASE)
    assert only.hacks.adam and not only.hacks.batch_norm and not only.hacks.leaky_relu
    # Without BatchNorm, D's BN statistics are no factor: left out of "all" with a note, refused when named.
    assert "d_bn_in_g_update-only" not in names(made) and "d_bn_in_g_update" not in [f.name for f in varied]
    assert any("d_bn_in_g_update" in note and "BatchNorm" in note for note in notes)
    with pytest.raises(AblationError, match="d_bn_in_g_update cannot be varied in the all-off config"):
        variants(BASE, parse_factors("batch_norm,d_bn_in_g_update")[0], design="one-at-a-time")


def test_the_moving_average_is_a_factor_whose_on_is_any_decay():
    assert GROUPS["new"][-1] == "ema" and FACTORS["ema"].path == "train.ema_decay"
    made, *_ = variants(BASE, parse_factors("ema")[0], design="leave-one-out")
    assert names(made) == ["base", "ema-0.999"] and made[1].apply(BASE).train.ema_decay == 0.999
    averaged = load_config(None, [*TINY, "train.ema_decay=0.99"])
    made, *_ = variants(averaged, parse_factors("ema")[0], design="leave-one-out")
    assert names(made) == ["base", "ema-0.0"] and made[1].apply(averaged).train.ema_decay == 0.0
    made, reference, *_ = variants(averaged, parse_factors("ema,hinge_loss")[0], design="one-at-a-time")
    assert reference == "all-off" and made[0].apply(averaged).train.ema_decay == 0.0
    assert made[names(made).index("ema-only")].apply(averaged).train.ema_decay == 0.99, "the base's own decay"
    assert made[names(made).index("hinge_loss-only")].apply(averaged).train.ema_decay == 0.0


def test_factorial_makes_every_distinct_combination_and_guards_large_designs():
    made, *_ = variants(BASE, parse_factors("batch_norm,adam,d_bn_in_g_update")[0], design="factorial")
    # 2^3 = 8 combinations, less the two where D's BN statistics are switched without BN (duplicates).
    assert len(made) == 6 and len({v.name for v in made}) == 6 and "base" in names(made)
    configs = {(c.hacks.batch_norm, c.hacks.adam, c.model.d_bn_in_g_update if c.hacks.batch_norm else "-")
               for c in (v.apply(BASE) for v in made)}
    assert len(configs) == 6
    seven = ",".join(list(FACTORS)[:7])
    with pytest.raises(AblationError, match="7 factors make 128 variants.*--yes"):
        variants(BASE, parse_factors(seven)[0], design="factorial")
    assert len(variants(BASE, parse_factors(seven)[0], design="factorial", allow_large=True)[0]) == 128


def test_factorial_leaves_out_combinations_the_config_refuses_with_a_note():
    made, _, _, notes = variants(BASE, parse_factors("diff_augment,adaptive_augment,lecam")[0], design="factorial")
    assert sorted(names(made)) == sorted(["base", "lecam-on", "adaptive_augment-on", "adaptive_augment-on+lecam-on",
                                          "diff_augment-on", "diff_augment-on+lecam-on"])
    assert len(notes) == 2 and all(note.startswith("left out diff_augment+adaptive_augment") for note in notes)


def test_unknown_and_inert_factors_are_named_with_a_suggestion():
    with pytest.raises(AblationError, match=r"unknown factor; did you mean 'batch_norm'\? Received: 'batchnorm'"):
        parse_factors("batchnorm")
    with pytest.raises(AblationError, match="known factors: all, new, strided_conv"):
        parse_factors("wasserstein")
    assert parse_factors("hacks.adam, model.d_bn_in_g_update")[0] == [FACTORS["adam"], FACTORS["d_bn_in_g_update"]]
    slope_zero = load_config(None, [*TINY, "hacks.leaky_slope=0"])
    with pytest.raises(AblationError, match="leaky_relu cannot be varied.*slope is 0"):
        variants(slope_zero, parse_factors("leaky_relu")[0], design="leave-one-out")


# ------------------------------------------------------------------ the study on disk


def planned(root: Path, *, seeds: int = 2, design: str = "leave-one-out", factors: str = "batch_norm,adam"):
    made, reference, varied, _ = variants(BASE, parse_factors(factors)[0], design=design)
    return study.Study(root=root, design=design, factors=tuple(f.name for f in varied), seeds=seeds,
                       variants=tuple(made), reference=reference, base=BASE,
                       evaluation={"count": 50, "features": "domain", "seed": 0})


def test_prepare_writes_each_runs_config_and_refuses_another_study(tmp_path):
    root = tmp_path / "study"
    pending = study.prepare(planned(root))
    assert len(pending) == 6 and (root / study.PLAN).is_file()
    run = next(r for r in pending if r.variant == "batch_norm-off" and r.seed == 1)
    cfg = load_config(run.directory / "config.yaml")
    assert not cfg.hacks.batch_norm and cfg.train.seed == BASE.train.seed + 1
    assert cfg.output.run_dir == str(run.directory)
    assert json.loads((run.directory / study.SPEC).read_text())["changes"] == "hacks.batch_norm: on -> off"
    assert study.load(root).identity() == planned(root).identity()
    # More seeds extend the same study, fewer never shrink it; another design is refused.
    assert len(study.prepare(planned(root, seeds=3))) == 9
    assert study.extended(planned(root, seeds=1)).seeds == 3 and study.extended(planned(root, seeds=4)).seeds == 4
    with pytest.raises(AblationError, match="holds another ablation"):
        study.prepare(planned(root, design="one-at-a-time"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(AblationError, match="holds something other than an ablation"):
        study.prepare(planned(tmp_path / "other"))


def test_a_run_directory_in_use_is_refused(tmp_path):
    run = study.prepare(planned(tmp_path / "study"))[0]
    with FileLock(run.directory / ".lock"):
        with pytest.raises(worker.Busy, match="another process is running this run"):
            worker.run_one(run.directory)
        result = invoke("ablate-run", run.directory)
        assert result.exit_code == executors.BUSY and "another process is running this run" in result.output
    assert not (run.directory / study.RESULT).exists()


def test_a_diverged_run_is_finished_and_reported(tmp_path, monkeypatch):
    run = study.prepare(planned(tmp_path / "study"))[0]

    def diverge(cfg, *, run_dir, resume, judge):
        raise upkeep.Diverged("training diverged at step 3: g_loss=nan")

    monkeypatch.setattr(worker.training, "run", diverge)
    result = worker.run_one(run.directory)
    assert result["status"] == "diverged" and result["collapsed"] and "g_loss=nan" in result["message"]
    assert study.finished(run) == result


def test_collapse_rule():
    assert worker.collapsed(0.1, {}, floor=0.5) and not worker.collapsed(0.9, {}, floor=0.5)
    assert worker.collapsed(0.6, {}, floor=0.7)
    assert worker.collapsed(0.9, {"modes_covered": 5, "classes": 10}, floor=0.5)
    assert not worker.collapsed(0.9, {"modes_covered": 6, "classes": 10}, floor=0.5)


# ------------------------------------------------------------------ the report, from made-up results


def fake_result(run: study.Run, fd: float, *, grid: bool = True, series: list | None = None) -> None:
    (run.directory / "samples").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 20), int(fd) % 255, dtype=np.uint8)).save(run.directory / "samples" / "last.png")
    result = {"variant": run.variant, "seed": run.seed, "train_seed": run.seed, "changes": "", "status": "done",
              "features": "domain", "step": 4, "train_seconds": 1.0, "diversity": 0.9, "collapsed": False,
              "losses": dict.fromkeys(METRICS, 0.5), "grid": "samples/last.png" if grid else None,
              "scores": {"frechet_distance": fd, "modes_covered": 10, "classes": 10, "class_kl": 0.1,
                         "mean_confidence": 0.9, "precision": 0.5, "recall": 0.5}}
    if series is not None:
        result["series"] = series
    write_atomically(run.directory / study.RESULT, lambda file: file.write(json.dumps(result).encode()))


def test_report_tests_each_variant_against_the_reference(tmp_path):
    made = planned(tmp_path / "study", seeds=3)
    study.prepare(made)
    scores = {"base": [10.0, 11.0, 10.5], "batch_norm-off": [40.0, 42.0, 41.0], "adam-off": [9.0, 12.5, 10.0]}
    for run in made.runs():
        fake_result(run, scores[run.variant][run.seed])
    written = report.write(made)
    assert written.effects["batch_norm-off"].verdict == "hurts"
    assert written.effects["batch_norm-off"].low > 0 and written.effects["batch_norm-off"].difference == 30.5
    assert written.effects["adam-off"].verdict == "within noise"
    rows = report.table(written)
    assert len(rows) == 2 + 3 and rows[2].startswith("| base |") and rows[3].startswith("| batch_norm-off |")
    assert "FD (last 3) mean ± std" in rows[0] and "verdict" in rows[0] and "paired [95% CI]" in rows[0]
    text = (made.root / "report.md").read_text()
    assert "| batch_norm-off | hacks.batch_norm: on -> off | 3/3 | 41.00 ± 1.00 | - | +30.50 [" in text
    assert "**batch_norm-off** (hacks.batch_norm: on -> off) raises the FD by 30.50" in text
    with open(made.root / "results.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert len(table) == 9 and set(report.CSV_COLUMNS) == set(table[0])
    assert {row["variant"] for row in table} == set(scores) and table[0]["frechet_distance"] == "10.0"
    for name in ("report.png", "samples.png"):
        with Image.open(made.root / name) as image:
            assert image.format == "PNG" and image.width > 400


def test_runs_are_scored_by_their_last_checkpoints_and_compared_paired_by_seed(tmp_path):
    """The seed moves every variant's score by up to 20 while the change lowers it by about 1 at each seed: Welch's
    test over seeds cannot see that, pairing by seed can. Each run is scored by its last 3 scores from half-way on
    (the final one wanders), and the spread of those is reported."""
    made = planned(tmp_path / "study", seeds=3, factors="batch_norm")
    study.prepare(made)
    seed_effect = [0.0, 10.0, 20.0]
    for run in made.runs():
        level = 30.0 + seed_effect[run.seed] - (1.0 if run.variant == "batch_norm-off" else 0.0)
        wander = [0.4, -0.2, -0.2] if run.seed == 1 else [0.2, -0.1, -0.1]
        series = [[1, 99.0], [2, level + wander[0]], [3, level + wander[1]], [4, level + wander[2]]]
        fake_result(run, level + wander[2] + (5.0 if run.variant == "base" and run.seed == 2 else 0.0), series=series)
    written = report.write(made)
    effect = written.effects["batch_norm-off"]
    assert effect.verdict == "helps" and effect.pairs == 3 and effect.difference == pytest.approx(-1.0)
    summaries = {v.name: v for v in written.variants}
    assert summaries["base"].tails() == pytest.approx({0: 30.0, 1: 40.0, 2: 50.0})  # step 1 lies before half-way
    assert summaries["base"].spread() == pytest.approx(np.mean([np.std([0.2, -0.1, -0.1], ddof=1)] * 2
                                                               + [np.std([0.4, -0.2, -0.2], ddof=1)]))
    unpaired = compare.welch(np.array(list(summaries["batch_norm-off"].tails().values())),
                             np.array(list(summaries["base"].tails().values())))
    assert unpaired.verdict == "within noise"
    with open(made.root / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert float(rows[0]["tail_score"]) == pytest.approx(30.0) and float(rows[0]["tail_spread"]) > 0


def test_a_run_without_a_series_is_scored_by_its_training_time_scores(tmp_path):
    """Results written before runs kept their series are read from the run's own metrics.jsonl."""
    made = planned(tmp_path / "study", seeds=1, factors="batch_norm")
    study.prepare(made)
    run = made.runs()[0]
    fake_result(run, 50.0)
    lines = [{"step": step, "eval": {"features": "domain", "frechet_distance": value}}
             for step, value in ((1, 90.0), (2, 20.0), (3, 22.0), (4, 24.0))]
    (run.directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    written = report.collect(made)
    assert next(v for v in written.variants if v.name == "base").tails() == {0: pytest.approx(22.0)}


def test_factorial_report_gives_each_factors_main_effect(tmp_path):
    made = planned(tmp_path / "study", seeds=2, design="factorial")
    study.prepare(made)
    assert len(made.variants) == 4
    for run in made.runs():  # only batch_norm matters: off raises the score by 20
        cfg = made.variant(run.variant).apply(BASE)
        fake_result(run, (10.0 if cfg.hacks.batch_norm else 30.0) + 0.5 * run.seed + (0.3 if cfg.hacks.adam else 0))
    written = report.write(made)
    effects = written.main_effects
    assert set(effects) == {"hacks.batch_norm: on -> off", "hacks.adam: on -> off"}
    assert effects["hacks.batch_norm: on -> off"].verdict == "hurts"
    assert effects["hacks.batch_norm: on -> off"].difference == pytest.approx(20.0)
    assert effects["hacks.adam: on -> off"].verdict == "within noise"
    assert "## Main effects" in (made.root / "report.md").read_text()


def test_report_on_a_partial_study(tmp_path):
    made = planned(tmp_path / "study", seeds=2)
    study.prepare(made)
    for run in made.runs()[:4]:  # seed 0 of every variant and seed 1 of the base
        fake_result(run, 10.0 + run.seed)
    written = report.write(made)
    assert written.finished() == 4 and len(written.runs) == 6
    assert written.effects["adam-off"].verdict == "needs 2+ seeds each"
    assert "Runs finished: 4 of 6" in (made.root / "report.md").read_text()
    with open(made.root / "results.csv", newline="") as file:
        assert [row["status"] for row in csv.DictReader(file)].count("not finished") == 2


# ------------------------------------------------------------------ end to end


@pytest.mark.e2e
def test_tiny_ablation_plans_then_runs_two_at_once_and_reports(tmp_path):
    root = tmp_path / "study"
    variants_run = ("base", "batch_norm-off", "d_bn_in_g_update-moving")
    # --plan: exactly one command per run, nothing trained (in this process: the runs themselves start their own).
    planning = invoke(*ablate_args(root, "--plan", "--jobs", "2"))
    assert planning.exit_code == 0, planning.output
    lines = planning.stdout.strip().splitlines()
    assert sorted(line.split()[2] for line in lines) == sorted(str(root / "variants" / v / f"seed{k}")
                                                               for v in variants_run for k in (0, 1))
    assert all(line.startswith("dcgan ablate-run ") and line.endswith(f"--threads {max(1, executors.cores() // 2)}")
               for line in lines)
    assert not list(root.glob("variants/*/*/checkpoints"))
    process = dcgan(*ablate_args(root, "--jobs", "2"), cwd=tmp_path)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "study wall time" in err and "6 of 6 runs finished" in err
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == ["| variant", "| base", "| batch_norm-off",
                                                     "| d_bn_in_g_update-moving"]
    for name in ("report.md", "results.csv", "report.png", "samples.png", study.PLAN):
        assert (root / name).is_file()
    for variant in variants_run:
        for seed in (0, 1):
            run = root / "variants" / variant / f"seed{seed}"
            result = json.loads((run / study.RESULT).read_text())
            assert result["status"] == "done" and result["features"] == "domain" and result["step"] == 4
            assert (run / "checkpoints" / "step_000004").is_dir() and (run / result["grid"]).is_file()
            assert set(result["losses"]) == set(METRICS) and 0 <= result["diversity"]
            # Without training-time scores, the series is each kept checkpoint scored as the final one is.
            assert [step for step, _ in result["series"]] == [2, 4]
            assert result["series"][-1][1] == result["scores"]["frechet_distance"]
    # The same command again: nothing left to run. --plan lists no run; a new seed is exactly one command each.
    again = invoke(*ablate_args(root, "--plan"))
    assert again.exit_code == 0 and again.stdout.strip() == "" and "6 of 6 runs finished already" in again.stderr
    more = invoke(*ablate_args(root, "--plan", "--seeds", "3"))
    lines = more.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("dcgan ablate-run ") for line in lines)
    assert {line.split()[2] for line in lines} == {str(root / "variants" / v / "seed2") for v in variants_run}
    assert invoke("ablate", "--report", root).exit_code == 0


@pytest.mark.e2e
def test_killed_ablation_continues_where_it_stopped(tmp_path):
    root = tmp_path / "study"
    sets = [*STUDY_SET, "train.steps=200", "output.checkpoint_every=25", "output.sample_every=200"]
    env, gate = holding(tmp_path, "seed1")  # the seed-1 runs wait after a checkpoint until the gate opens
    process = dcgan(*ablate_args(root, "--jobs", "2", sets=sets), cwd=tmp_path, env=env)

    def training_midway() -> list[Path]:
        """Checkpoints of runs still training (not yet at their last step, no result)."""
        return [path for path in root.glob("variants/*/*/checkpoints/step_*")
                if path.name != "step_000200" and not (path.parent.parent / study.RESULT).exists()]

    # Stop once one run has finished and another is held midway, past a checkpoint.
    deadline = time.monotonic() + 1200
    while not (list(root.glob("variants/*/*/result.json")) and training_midway()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    gate.touch()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130 and "run the same command again to continue" in err
    done = {path: path.stat().st_mtime_ns for path in root.glob("variants/*/*/result.json")}
    assert 1 <= len(done) < 6
    partial = invoke("ablate", "--report", root)
    assert partial.exit_code == 0 and f"Runs finished: {len(done)} of 6" in (root / "report.md").read_text()
    listing = sorted(str(path.relative_to(root)) for path in root.glob("variants/*/*/*"))
    assert training_midway(), listing  # the stopped run kept its checkpoints, to resume from

    again = dcgan(*ablate_args(root, "--jobs", "2", sets=sets), cwd=tmp_path, env=env)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f"{len(done)} of 6 runs finished already" in err and "6 of 6 runs finished" in err
    assert {path: path.stat().st_mtime_ns for path in done} == done  # finished runs were not redone
    assert len(list(root.glob("variants/*/*/result.json"))) == 6


@pytest.mark.e2e
def test_an_unlabelled_folder_is_ablated_in_rotation_features(tmp_path):
    """No labels, no Inception weights (offline): the study scores every run in the rotation network's features,
    with NDB, and says so in its report."""
    from dcgan_cli.data import sources

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i, image in enumerate(sources.load_dataset(load_config(None, []), progress=False).images[:200]):
        Image.fromarray(image[..., 0]).save(pictures / f"{i:03d}.png")
    root = tmp_path / "study"
    result = invoke("ablate", "--config", DIGITS, "--factors", "ema", "--seeds", "1", "--n", "50", "--run-dir", root,
                    *[arg for item in (*STUDY_SET, "data.name=folder", f"data.path={pictures}", "data.limit=120")
                      for arg in ("--set", item)], "--score-set", "data.limit=null")
    assert result.exit_code == 0, result.output
    assert json.loads((root / study.PLAN).read_text())["evaluation"]["features"] == "rotation"
    for variant in ("base", "ema-0.999"):
        scored = json.loads((root / "variants" / variant / "seed0" / study.RESULT).read_text())
        assert scored["features"] == "rotation" and scored["status"] == "done"
        assert ": 200 real images" in scored["real_set"], "trained on 120, scored against all 200 (--score-set)"
        assert {"frechet_distance", "ndb", "bins", "bins_covered", "precision", "recall"} <= set(scored["scores"])
    text = (root / "report.md").read_text()
    assert "the rotation network's features (no labels)" in text and "| bins covered | NDB |" in text
    rows = list(csv.DictReader((root / "results.csv").open()))
    assert [row["features"] for row in rows] == ["rotation", "rotation"] and all(row["ndb"] for row in rows)


@pytest.mark.e2e
def test_ray_executor_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    root = tmp_path / "study"
    args = ["ablate", "--config", str(DIGITS), "--factors", "batch_norm", "--seeds", "1", "--n", "50",
            "--executor", "ray", "--run-dir", str(root)]
    for item in STUDY_SET:
        args += ["--set", item]
    process = dcgan(*args, cwd=tmp_path)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    for variant in ("base", "batch_norm-off"):
        run = root / "variants" / variant / "seed0"
        assert json.loads((run / study.RESULT).read_text())["status"] == "done"
        assert (run / "checkpoints" / "step_000004" / "COMPLETE").is_file() and (run / study.LOG).is_file()
    assert (root / "report.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--factors", "batchnorm"], "did you mean 'batch_norm'"),
    (["--factors", "leaky_relu", "--set", "hacks.leaky_slope=0"], "leaky_relu cannot be varied"),
    (["--design", "factorial"], "12 factors make 4096 variants"),
    (["--score-set", "model.d_filters=8"], "--score-set: only data.* can change"),
    (["--score-set", "data.limit=0"], "--score-set: data.limit"),
])
def test_mistakes_exit_2_before_any_run(tmp_path, args, message):
    result = invoke("ablate", "--config", DIGITS, "--run-dir", tmp_path / "study", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "study").exists()


def test_ray_missing_and_no_study_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "ray_available", lambda: False)
    result = invoke("ablate", "--config", DIGITS, "--executor", "ray", "--run-dir", tmp_path / "study")
    assert result.exit_code == 2 and 'pip install "dcgan-cli[ray]"' in result.output
    assert not (tmp_path / "study").exists()
    result = invoke("ablate", "--report", tmp_path)
    assert result.exit_code == 2 and "no ablation here" in result.output


def test_thread_caps_for_parallel_runs():
    env = executors.thread_env(1)
    assert env["TF_NUM_INTRAOP_THREADS"] == "1" and env["OMP_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
    assert "XLA_FLAGS" not in executors.thread_env(4)


# ------------------------------------------------------------------ caches shared by parallel runs


DECODE = """
import hashlib, sys, time
from dcgan_cli.data import folder
original = folder._decode_into_cache
def counted(*args, **kwargs):
    with open(sys.argv[3], "a") as log:
        log.write("decode\\n")
    time.sleep(1.0)  # widen the window in which the other process looks for the cache
    return original(*args, **kwargs)
folder._decode_into_cache = counted
dataset = folder.load(sys.argv[1], size=16, channels=1, limit=None, cache_dir=sys.argv[2], progress=False,
                      log=print)
print(len(dataset.images), hashlib.sha256(dataset.images.tobytes()).hexdigest())
"""


@pytest.mark.e2e
def test_runs_starting_at_once_decode_a_folder_once_and_read_the_same_images(tmp_path):
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(np.full((20, 20), i * 8, dtype=np.uint8)).save(images / label / f"{i}.png")
    log = tmp_path / "decodes.txt"
    processes = [subprocess.Popen([sys.executable, "-c", DECODE, str(images), str(tmp_path / "cache"), str(log)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.split())
    assert log.read_text().splitlines() == ["decode"]
    assert outputs[0] == outputs[1] == outputs[2] and outputs[0][0] == "60"
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]


def test_concurrent_writers_of_one_file_never_mix_or_fail(tmp_path):
    target = tmp_path / "shared.bin"
    contents = [bytes([i]) * 200_000 for i in range(4)]
    errors = []

    def hammer(content: bytes) -> None:
        try:
            for _ in range(40):
                write_atomically(target, lambda file: file.write(content))
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    seen = set()
    while any(t.is_alive() for t in threads):
        if target.exists():
            seen.add(hashlib.sha256(target.read_bytes()).hexdigest())
    for thread in threads:
        thread.join()
    assert not errors
    assert seen <= {hashlib.sha256(c).hexdigest() for c in contents}
    assert target.read_bytes() in contents and [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_report_needs_no_keras_in_a_worker_free_process():
    code = "import sys; import dcgan_cli.ablate.report, dcgan_cli.ablate.executors; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_together_compares_the_base_with_all_it_turns_on_switched_off():
    preset = load_config(None, [*TINY, "hacks.spectral_norm=true", "train.ema_decay=0.99"])
    made, reference, varied, _ = variants(preset, parse_factors("spectral_norm,ema,hinge_loss")[0], design="together")
    assert reference == "all-off" and names(made) == ["all-off", "base"]
    assert [f.name for f in varied] == ["spectral_norm", "ema"], "hinge_loss is off in the base: nothing to switch"
    default = made[0].apply(preset)
    assert not default.hacks.spectral_norm and default.train.ema_decay == 0.0 and made[1].apply(preset) == preset
    with pytest.raises(AblationError, match="--design together: every factor named is off in the base"):
        variants(BASE, parse_factors("hinge_loss")[0], design="together")
