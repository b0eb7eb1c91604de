"""`dcgan tune`: the search space's checks, trials as runs, pruning, resuming, shared journals, the report,
best.yaml and the confirmation on fresh seeds."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dcgan_cli.ablate import study as ablate_study
from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.files import read_jsonl
from dcgan_cli.state import checkpoint
from dcgan_cli.training import upkeep
from dcgan_cli.training import train as training
from dcgan_cli.tune import runner as tune_runner
from dcgan_cli.tune import study as tuning_module
from dcgan_cli.tune import worker as trial_worker
from dcgan_cli.tune.space import load_space, parse_space

from conftest import TINY, holding

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"
SETS = [*TINY, "train.steps=6", "output.eval_every=2", "output.eval_samples=20", "output.sample_every=6",
        "output.checkpoint_every=2"]
SPACE = {"hacks.learning_rate": {"log_uniform": [5.0e-5, 1.0e-3]}, "hacks.beta_1": {"choice": [0.0, 0.5, 0.9]},
         "train.ema_decay": {"uniform": [0.9, 0.99]},
         "hacks.real_label_range": {"choice": [[0.7, 1.2], [0.9, 1.0]]}}


def tuning_in(root: Path, *, space: dict = SPACE, **fields) -> tuning_module.Tuning:
    """A study's definition as `dcgan tune` builds it, on the tiny settings; `fields` replace the defaults."""
    defaults = {"base": load_config(DIGITS, SETS), "seeds": 1, "objective": "final", "sampler": "random",
                "pruner": "none", "storage": None, "name": "study",
                "evaluation": {"count": 50, "features": "domain", "seed": 0}}
    return tuning_module.Tuning(root=root, space=parse_space(space, source="space.yaml"), **{**defaults, **fields})


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def dcgan(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dcgan_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def space_file(path: Path, space: dict = SPACE) -> Path:
    path.write_text(yaml.safe_dump(space))
    return path


def tune_args(root: Path, space: Path, *extra: str, sets: list[str] = SETS) -> list[str]:
    args = ["tune", "--config", str(DIGITS), "--space", str(space), "--n", "50", "--run-dir", str(root), *extra]
    for item in sets:
        args += ["--set", item]
    return args


# ------------------------------------------------------------------ the search space


def test_a_space_maps_keys_to_optuna_distributions_and_back_to_config_values():
    space = parse_space(SPACE, source="space.yaml")
    distributions = space.distributions()
    assert distributions["hacks.learning_rate"].log and distributions["hacks.learning_rate"].low == 5.0e-5
    assert distributions["hacks.real_label_range"].choices == ("[0.7, 1.2]", "[0.9, 1.0]")
    values = space.values({"hacks.learning_rate": 3e-4, "hacks.beta_1": 0.9, "train.ema_decay": 0.95,
                           "hacks.real_label_range": "[0.9, 1.0]"})
    assert values["hacks.real_label_range"] == (0.9, 1.0) and values["hacks.beta_1"] == 0.9
    cfg = space.apply(load_config(DIGITS), values)
    assert cfg.hacks.real_label_range == (0.9, 1.0) and cfg.train.ema_decay == 0.95 and cfg.hacks.learning_rate == 3e-4
    assert parse_space({"hacks.d_steps": {"int": [1, 3]}}, source="s").distributions()["hacks.d_steps"].high == 3
    policy = parse_space({"hacks.diff_augment_policy": {"choice": [["cutout", "translation"], ["color"]]}},
                         source="s")
    assert policy.distributions()["hacks.diff_augment_policy"].choices == ("[translation, cutout]", "[color]")
    assert policy.values({"hacks.diff_augment_policy": "[translation, cutout]"}) == {
        "hacks.diff_augment_policy": ("translation", "cutout")}


def test_the_first_trial_is_the_base_as_far_as_the_space_holds_it(tmp_path):
    """SPACE holds the base's learning rate, beta_1 and label range, but not its ema_decay (0, outside [0.9,
    0.99]): trial 0 takes the three, the sampler draws the fourth; a second process does not enqueue it again."""
    tuning = tuning_in(tmp_path / "study")
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    again = tuning_module.optuna_study(tuning)
    first = study.ask(tuning.space.distributions())
    values = tuning.space.values(first.params)
    base = tuning.base.hacks
    assert values["hacks.learning_rate"] == base.learning_rate and values["hacks.beta_1"] == base.beta_1
    assert values["hacks.real_label_range"] == base.real_label_range
    assert 0.9 <= values["train.ema_decay"] <= 0.99
    assert len(again.get_trials(deepcopy=False)) == 1  # the one enqueued, now running: no second copy waits


def test_a_start_from_config_is_tried_after_the_base_once_and_marked(tmp_path):
    """--start-from: a known config's values of the searched keys are trial 1 (its ema_decay 0.5 lies outside the
    space, so the sampler draws that one and a note names it); a rerun or a joining process enqueues it no more."""
    from dcgan_cli.tune import report

    tuning = tuning_in(tmp_path / "study")
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    start = load_config(DIGITS, [*SETS, "hacks.learning_rate=0.0007", "hacks.beta_1=0.9", "train.ema_decay=0.5"])
    notes = tuning_module.start_from(study, tuning, {"preset.yaml": start})
    assert notes == ["--start-from preset.yaml: the space does not hold its train.ema_decay; the sampler draws them"]
    tuning_module.start_from(tuning_module.optuna_study(tuning), tuning, {"preset.yaml": start})
    base, started = (study.ask(tuning.space.distributions()) for _ in range(2))
    assert tuning.space.values(base.params)["hacks.learning_rate"] == tuning.base.hacks.learning_rate
    values = tuning.space.values(started.params)
    assert values["hacks.learning_rate"] == 0.0007 and values["hacks.beta_1"] == 0.9
    assert values["hacks.real_label_range"] == start.hacks.real_label_range and 0.9 <= values["train.ema_decay"] <= 0.99
    assert len(study.get_trials(deepcopy=False)) == 2  # no second copy waits
    assert [row.note for row in report.collect(tuning, study)] == ["", "started from preset.yaml"]


def test_start_from_a_bad_config_or_beside_report_exits_2_before_anything_is_written(tmp_path):
    space = space_file(tmp_path / "space.yaml")
    broken = tmp_path / "preset.yaml"
    broken.write_text("hacks: {learning_rat: 0.001}\n")
    bad = invoke(*tune_args(tmp_path / "a", space, "--start-from", broken))
    assert bad.exit_code == 2 and "preset.yaml" in bad.output and "learning_rat" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "a").exists()
    beside = invoke("tune", "--report", tmp_path / "a", "--start-from", broken)
    assert beside.exit_code == 2 and "--start-from: starts a search" in beside.output


def documented_study(path: Path) -> tuple[Path, list[str], list[Path]]:
    """The --config, the --set values and the --start-from files of the `dcgan tune` command in a shipped space's
    opening comment."""
    comment = " ".join(line.lstrip("#").strip().rstrip("\\") for line in path.read_text().splitlines()
                       if line.startswith("#"))
    command = comment[comment.index("dcgan tune "):].split()
    given = {flag: [command[k + 1] for k, word in enumerate(command) if word == flag]
             for flag in ("--config", "--set", "--start-from")}
    root = DIGITS.parent.parent
    return root / given["--config"][0], given["--set"], [root / start for start in given["--start-from"]]


@pytest.mark.parametrize("name", sorted(path.name for path in (DIGITS.parent / "spaces").glob("*.yaml")))
def test_each_shipped_space_loads_and_every_choice_and_bound_is_valid_on_its_study_base(name):
    """Each value of each key, alone on the base its comment's command tunes, passes every check of the config,
    the cross-checks included; trial 0, the base, takes its own value of every key the space has; and each known
    config the command starts from (--start-from) loads and is a trial of the space on that base."""
    path = DIGITS.parent / "spaces" / name
    space = load_space(path)
    config, sets, starts = documented_study(path)
    base = load_config(config, sets)
    assert len(space.params) >= 5 and sets
    for param in space.params:
        for value in param.values:
            space.apply(base, {param.path: value})
    if name != "digits.yaml":  # the presets' studies: trial 0 is exactly the default hacks
        assert set(space.drawn(base)) == {p.path for p in space.params}
    for start in starts:
        space.apply(base, space.drawn(load_config(start)))


PRESET_KEYS = ["hacks.strided_conv", "hacks.transposed_conv", "hacks.leaky_relu", "hacks.batch_norm",
               "model.d_bn_in_g_update", "hacks.gaussian_init", "hacks.adam", "hacks.scale_images",
               "hacks.gaussian_latent", "hacks.separate_batches", "hacks.label_smoothing",
               "hacks.noisy_labels", "hacks.r1_gamma", "hacks.instance_noise_std",
               "hacks.diff_augment_policy", "hacks.lecam_weight", "hacks.learning_rate",
               "hacks.d_learning_rate", "hacks.g_learning_rate", "hacks.beta_1", "hacks.real_label_range",
               "hacks.flip_probability", "train.ema_decay", "model.g_filters", "model.d_filters"]


def test_the_presets_spaces_cover_what_a_user_can_set():
    """Every hack 1-11 with an alternative, the stabilisers 12-24 with their magnitudes, the optimiser's and
    labels' magnitudes, the widths; both presets' spaces search the same keys."""
    spaces = DIGITS.parent / "spaces"
    searched = {p.path for p in load_space(spaces / "cifar10.yaml").params}
    switches = {f"hacks.{field}" for field in ("ttur", "train_d_more", "instance_noise", "g_dropout",
                                               "spectral_norm", "hinge_loss", "r1_penalty", "minibatch_std",
                                               "diff_augment", "class_conditional", "replay", "adaptive_augment",
                                               "lecam")}
    assert set(PRESET_KEYS) | switches <= searched
    assert {p.path for p in load_space(spaces / "mnist.yaml").params} == searched


@pytest.mark.parametrize("space, message", [
    ({"hacks.learning_rat": {"log_uniform": [1e-4, 1e-3]}}, "hacks.learning_rat: unknown key; did you mean "
                                                             "'learning_rate'"),
    ({"hack.beta_1": {"uniform": [0.1, 0.5]}}, "hack.beta_1: unknown key"),
    ({"hacks.beta_1": {"uniform": [0.5, 1.5]}}, "hacks.beta_1: expected a number in [0, 1). Received: 1.5"),
    ({"hacks.flip_probability": {"uniform": [0.3, 0.1]}}, "hacks.flip_probability: uniform expects low < high"),
    ({"hacks.learning_rate": {"log_uniform": [0.0, 1e-3]}}, "hacks.learning_rate: log_uniform expects bounds above 0"),
    ({"hacks.batch_norm": {"uniform": [0, 1]}}, "hacks.batch_norm: uniform does not fit this key (true or false)"),
    ({"train.batch_size": {"uniform": [32, 64]}}, "train.batch_size: uniform does not fit this key (an integer)"),
    ({"hacks.d_steps": {"int": [1.5, 3]}}, "hacks.d_steps: int expects integer bounds"),
    ({"hacks.conditioning": {"choice": ["projection", "bogus"]}}, "hacks.conditioning: expected one of projection, "
                                                                  "auxiliary"),
    ({"hacks.beta_1": {"normal": [0.5, 0.1]}}, "hacks.beta_1: expected one distribution, {KIND: ARGS}"),
    ({"train.seed": {"int": [0, 5]}}, "train.seed: cannot be searched"),
    ({"data.limit": {"int": [100, 500]}}, "data.limit: cannot be searched"),
    ([1, 2], "expected a mapping of config keys to distributions"),
])
def test_bad_spaces_exit_2_naming_the_key_before_any_trial(tmp_path, space, message):
    root = tmp_path / "study"
    result = invoke(*tune_args(root, space_file(tmp_path / "space.yaml", space)))
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and "space.yaml" in result.output
    assert not root.exists()


def test_a_space_file_that_cannot_be_read_or_parsed_is_named(tmp_path):
    missing = invoke(*tune_args(tmp_path / "study", tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "nope.yaml: cannot read the search space" in missing.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("hacks.beta_1: {uniform: [0.1, \n")
    parsed = invoke(*tune_args(tmp_path / "study", broken))
    assert parsed.exit_code == 2 and "broken.yaml" in parsed.output and "Traceback" not in parsed.output


def test_options_that_cannot_work_exit_2(tmp_path, monkeypatch):
    space = space_file(tmp_path / "space.yaml")
    no_scores = invoke(*tune_args(tmp_path / "a", space, sets=[*SETS, "output.eval_every=0"]))
    assert no_scores.exit_code == 2 and "--pruner median" in no_scores.output
    assert "output.eval_every" in no_scores.output
    storage = invoke(*tune_args(tmp_path / "b", space, "--storage", "tune.db"))
    assert storage.exit_code == 2 and "--storage: expected a database URL" in storage.output
    nothing = invoke("tune", "--report", tmp_path / "c")
    assert nothing.exit_code == 2 and "no tuning study here" in nothing.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    missing = invoke(*tune_args(tmp_path / "d", space))
    assert missing.exit_code == 2 and 'pip install "dcgan-cli[tune]"' in missing.output


# ------------------------------------------------------------------ pruning


def test_a_judge_stops_training_after_a_score_with_a_checkpoint(tmp_path):
    cfg = load_config(DIGITS, [*SETS, "train.steps=8"])
    seen = []

    def judge(step: int, value: float) -> bool:
        seen.append((step, value))
        return step >= 4

    with pytest.raises(upkeep.Pruned, match="pruned at step 4 of 8"):
        training.run(cfg, run_dir=tmp_path / "run", judge=judge)
    assert [step for step, _ in seen] == [2, 4] and all(value > 0 for _, value in seen)
    assert checkpoint.read_state(checkpoint.complete(tmp_path / "run")[-1])["step"] == 4
    scored = [record["step"] for record in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval" in record]
    assert scored == [2, 4]


def test_a_pruned_trial_stops_early_keeps_its_checkpoint_and_is_marked(tmp_path, monkeypatch):
    """A pruner that stops every trial at its second score: the run stops at step 4 of 6, the storage says
    PRUNED, and the report marks it with the step."""
    import optuna

    tuning = tuning_in(tmp_path / "study", pruner="median")
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    trial = study.ask(tuning.space.distributions())
    directory = tuning_module.plan_trial(tuning, trial)

    class SecondScore(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return len(trial.intermediate_values) >= 2

    monkeypatch.setattr(trial_worker, "pruner", lambda *args, **kwargs: SecondScore())
    result = trial_worker.run_trial(directory)
    assert result["status"] == "pruned" and result["runs"][0]["step"] == 4 and "value" not in result
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen.state == optuna.trial.TrialState.PRUNED and sorted(frozen.intermediate_values) == [2, 4]
    assert checkpoint.read_state(checkpoint.complete(directory)[-1])["step"] == 4
    assert ablate_study.finished(ablate_study.Run("trial 0", 0, directory))["status"] == "pruned"
    from dcgan_cli.tune import report

    rows, summary = report.write(tuning, study)
    assert rows[0].state == "pruned" and rows[0].pruned_at() == 4 and "1 pruned" in summary[0]
    with open(tuning.root / "trials.csv", newline="") as file:
        assert next(csv.DictReader(file))["pruned_at"] == "4"
    # Run again (a second worker, or a rerun): the result stands and nothing trains.
    assert trial_worker.run_trial(directory) == result


def test_seed_k_of_a_trial_reports_at_its_own_steps(tmp_path, monkeypatch):
    """With two seeds, seed 1's scores are reported at train.steps + step, so pruners compare seed with seed; the
    objective is the mean of the seeds' final scores."""
    tuning = tuning_in(tmp_path / "study", space={"hacks.learning_rate": {"log_uniform": [1e-4, 1e-3]}}, seeds=2)
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    directory = tuning_module.plan_trial(tuning, study.ask(tuning.space.distributions()))
    assert [load_config(directory / f"seed{k}" / "config.yaml").train.seed for k in (0, 1)] == [0, 1]
    result = trial_worker.run_trial(directory)
    frozen = study.get_trials(deepcopy=False)[0]
    assert sorted(frozen.intermediate_values) == [2, 4, 6, 8, 10, 12]
    assert result["value"] == pytest.approx(np.mean([run["objective"] for run in result["runs"]]))
    assert frozen.value == pytest.approx(result["value"])


# ------------------------------------------------------------------ constraints


def test_a_trial_that_breaks_a_constraint_is_infeasible_reported_and_never_best(tmp_path):
    """recall >= 2 cannot hold: the trial completes with its value, Optuna holds how far it broke the bound, and
    the report lists it as infeasible with the score while best.yaml is not written."""
    from dcgan_cli.tune import report
    from dcgan_cli.tune.constraints import parse

    tuning = tuning_in(tmp_path / "study", constraints=(parse("recall >= 2"), parse("precision >= 0")))
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    directory = tuning_module.plan_trial(tuning, study.ask(tuning.space.distributions()))
    result = trial_worker.run_trial(directory)
    recall = result["runs"][0]["scores"]["recall"]
    assert result["status"] == "complete" and result["feasible"] is False and 0 <= recall <= 1
    assert [item["met"] for item in result["constraints"]] == [False, True]
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen.constraints["recall >= 2"] == pytest.approx(2 - recall) and frozen.constraints["precision >= 0"] <= 0
    rows, summary = report.write(tuning, study)
    assert rows[0].state == "infeasible" and rows[0].value == pytest.approx(result["value"])
    assert "1 infeasible" in summary[0] and "No trial has completed yet." in summary
    assert not (tuning.root / "best.yaml").exists()
    text = (tuning.root / "report.md").read_text()
    assert "## Infeasible trials" in text and "recall >= 2; precision >= 0" in text
    with open(tuning.root / "trials.csv", newline="") as file:
        assert float(next(csv.DictReader(file))["recall >= 2"]) == pytest.approx(recall)


def test_the_best_trial_is_the_best_feasible_one(tmp_path):
    """The lowest objective broke a bound: the report, --confirm and Optuna all take the best feasible trial."""
    from dcgan_cli.tune import report
    from dcgan_cli.tune.constraints import parse

    tuning = tuning_in(tmp_path / "study", constraints=(parse("recall >= 0.5"),))
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    for value, violation in ((1.0, 0.1), (2.0, -0.1), (3.0, -0.2)):
        trial = study.ask(tuning.space.distributions())
        trial.set_constraint("recall >= 0.5", violation)
        study.tell(trial, value)
    rows, summary = report.write(tuning, study)
    assert [row.state for row in rows] == ["infeasible", "complete", "complete"]
    assert report.best(rows).number == 1 and study.best_trial.number == 1
    assert "Best: trial 1" in summary[1] and "trial 1 of" in (tuning.root / "best.yaml").read_text()


def test_constraints_are_checked_before_anything_and_kept_by_the_study(tmp_path):
    space = space_file(tmp_path / "space.yaml")
    for text, message in (("recall > 0.4", "write SCORE >= NUMBER"), ("variety >= 1", "'variety' is not a score"),
                          ("recall >= high", "write SCORE >= NUMBER")):
        result = invoke(*tune_args(tmp_path / "a", space, "--constraint", text))
        assert result.exit_code == 2 and message in result.output and repr(text) in result.output
        assert not (tmp_path / "a").exists()
    report = invoke("tune", "--report", tmp_path / "a", "--constraint", "recall >= 0.4")
    assert report.exit_code == 2 and "keeps the constraints it was started with" in report.output
    from dcgan_cli.tune.constraints import parse

    tuning_module.prepare(tuning_in(tmp_path / "b", constraints=(parse("recall>=0.40"),)))
    assert tuning_module.load(tmp_path / "b").constraints == (parse("recall >= 0.4"),)
    with pytest.raises(tuning_module.TuneError, match="constraints"):
        tuning_module.prepare(tuning_in(tmp_path / "b"))
    plan = tmp_path / "c" / tuning_module.PLAN
    tuning_module.prepare(tuning_in(tmp_path / "c"))
    old = {key: value for key, value in json.loads(plan.read_text()).items() if key != "constraints"}
    plan.write_text(json.dumps(old))  # a study from before constraints existed continues
    tuning_module.prepare(tuning_in(tmp_path / "c"))
    assert tuning_module.load(tmp_path / "c").constraints == ()


def test_a_study_begun_before_a_config_key_existed_continues_and_reports(tmp_path):
    """The committed CIFAR-10 study predates model.base_size: its plan and its journal's identity read the new key
    at its default, so --report (and the same command) still take it as the same study."""
    committed = Path(__file__).resolve().parents[1] / "docs" / "studies" / "cifar10"
    restored = tmp_path / "cifar10"
    shutil.copytree(committed, restored, ignore=shutil.ignore_patterns("confirm*", "*.png", "*.jpg"))
    assert "base_size" not in (restored / tuning_module.PLAN).read_text()
    result = invoke("tune", "--report", restored)
    assert result.exit_code == 0, result.output
    assert "Best: trial 59" in result.output
    tuning = tuning_module.load(restored)
    tuning_module.prepare(tuning)  # the plan there is this study


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A 4-trial study run with --jobs 2."""
    root = tmp_path_factory.mktemp("tune") / "study"
    space = space_file(root.parent / "space.yaml")
    process = dcgan(*tune_args(root, space, "--trials", "4", "--jobs", "2"), cwd=root.parent)
    out, err = process.communicate(timeout=600)
    return root, process.returncode, out, err


@pytest.mark.e2e
def test_tiny_study_runs_four_trials_two_at_once_and_reports(tiny_study):
    root, code, out, err = tiny_study
    assert code == 0, err
    assert "study wall time" in err and "for 4 trials" in err and "Trials: 4 (4 complete)" in out
    for name in ("report.md", "trials.csv", "best.yaml", "samples.png", "history.png", "importances.png",
                 "slice.png", "parallel.png", "intermediate.png", tuning_module.JOURNAL, tuning_module.PLAN):
        assert (root / name).is_file(), name
    with open(root / "trials.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["state"] for row in rows] == ["complete"] * 4 and len({row["hacks.learning_rate"] for row in rows}) == 4
    text = (root / "report.md").read_text()
    assert "## Top 5 trials" in text and "## Parameter importances" in text and "![slice](slice.png)" in text
    for k in range(4):
        trial = root / "trials" / f"{k:04d}"
        result = json.loads((trial / tuning_module.RESULT).read_text())
        assert result["status"] == "complete" and (trial / "checkpoints" / "step_000006").is_dir()
        assert result["value"] == pytest.approx(result["runs"][0]["objective"])
        assert load_config(trial / "config.yaml").train.seed == 0


@pytest.mark.e2e
def test_a_study_restored_from_its_small_files_reports_without_its_run_directories(tiny_study, tmp_path):
    """What docs/studies/ keeps of a study outlives its run directories; its report must still be written."""
    root, code, _, err = tiny_study
    assert code == 0, err
    restored = tmp_path / "restored"
    restored.mkdir()
    for name in (tuning_module.PLAN, tuning_module.JOURNAL, "base.yaml", "space.yaml"):
        shutil.copy(root / name, restored / name)
    for trial in (root / "trials").iterdir():
        (restored / "trials" / trial.name).mkdir(parents=True)
        for name in trial.glob("*.json"):
            shutil.copy(name, restored / "trials" / trial.name / name.name)
    result = invoke("tune", "--report", restored)
    assert result.exit_code == 0, result.output
    assert "Trials: 4 (4 complete)" in result.output and (restored / "report.md").is_file()
    assert not (restored / "samples.png").exists()  # no grid survived to draw


def test_a_report_over_forty_keys_stays_readable_and_its_importances_repeat(tmp_path):
    """The presets' spaces have 40 keys: the importances plot grows a row per key, the slice and parallel plots keep
    the 8 most important (forty side by side were 9,400 pixels wide), and fANOVA's numbers are the same each time."""
    import optuna
    from PIL import Image

    from dcgan_cli.config import ConfigError
    from dcgan_cli.tune import report

    configs = DIGITS.parent
    tuning = dataclasses.replace(tuning_in(tmp_path / "study"), base=load_config(configs / "mnist.yaml"),
                                 space=load_space(configs / "spaces" / "mnist.yaml"))
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    rng = np.random.default_rng(0)
    while sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) < 12:
        trial = study.ask(tuning.space.distributions())
        try:
            tuning.space.apply(tuning.base, tuning.space.values(trial.params))
        except ConfigError:  # a combination the config refuses, as the study marks it
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, 10 + 5 * float(trial.params["hacks.beta_1"]) + float(rng.uniform()))
    report.write(tuning, study)
    first = (tuning.root / "report.md").read_text()
    report.write(tuning, study)
    assert (tuning.root / "report.md").read_text() == first
    assert "The slice and parallel-coordinate plots show the 8 most important keys." in first
    with Image.open(tuning.root / "slice.png") as image:
        assert image.width < 3000
    with Image.open(tuning.root / "importances.png") as image:
        assert image.height > 40 * 25  # a readable row per key


@pytest.mark.e2e
def test_best_yaml_is_the_best_trials_full_config_and_trains(tiny_study, tmp_path):
    root, code, _, err = tiny_study
    assert code == 0, err
    with open(root / "trials.csv", newline="") as file:
        best = min(csv.DictReader(file), key=lambda row: float(row["value"]))
    cfg = load_config(root / "best.yaml")
    assert cfg.hacks.learning_rate == pytest.approx(float(best["hacks.learning_rate"]), rel=1e-5)
    assert cfg.output.run_dir is None and cfg.train.steps == 6
    trained = invoke("train", "--config", root / "best.yaml", "--set", f"output.run_dir={tmp_path / 'run'}",
                     "--set", "train.steps=2")
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "checkpoints" / "step_000002").is_dir()


@pytest.mark.e2e
def test_confirm_trains_the_best_and_the_base_on_fresh_seeds(tiny_study):
    root, code, _, err = tiny_study
    assert code == 0, err
    process = dcgan("tune", "--confirm", root, "--seeds", "2", "--jobs", "2", cwd=root.parent)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "train.seed 1000..1001" in err
    best = load_config(root / "best.yaml")
    for variant in ("base", "tuned"):
        for k in (0, 1):
            cfg = load_config(root / "confirm" / "variants" / variant / f"seed{k}" / "config.yaml")
            assert cfg.train.seed == 1000 + k
            expected = best if variant == "tuned" else load_config(root / tuning_module.BASE)
            assert cfg.hacks.learning_rate == expected.hacks.learning_rate
            assert cfg.train.ema_decay == expected.train.ema_decay
    line = next(line for line in out.splitlines() if "fresh seeds" in line)
    assert "train.seed 1000, 1001" in line and re.search(r"CI [-+]\d", line)
    assert line.startswith(("Confirmed", "Not confirmed"))
    assert line in (root / "report.md").read_text()


@pytest.mark.e2e
def test_killed_study_continues_without_redoing_finished_trials(tmp_path):
    root = tmp_path / "study"
    space = space_file(tmp_path / "space.yaml")
    sets = [*SETS, "train.steps=120", "output.checkpoint_every=10", "output.eval_every=40", "output.sample_every=120"]
    args = tune_args(root, space, "--trials", "2", "--pruner", "none", sets=sets)
    env, gate = holding(tmp_path, os.path.join("trials", "0001"))  # trial 1 waits after a checkpoint
    process = dcgan(*args, cwd=tmp_path, env=env)

    def training_midway() -> list[Path]:
        return [path for path in root.glob("trials/*/checkpoints/step_*")
                if not (path.parent.parent / tuning_module.RESULT).exists()]

    deadline = time.monotonic() + 1200
    while not (list(root.glob("trials/*/result.json")) and training_midway()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    gate.touch()
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130 and "run the same command again to continue" in err
    done = {path: path.stat().st_mtime_ns for path in root.glob("trials/*/result.json")}
    assert len(done) == 1 and training_midway()

    partial = invoke("tune", "--report", root)
    assert partial.exit_code == 0, partial.output
    assert "1 complete, 1 running or interrupted" in partial.output
    assert "Trials: 2" in (root / "report.md").read_text()

    again = dcgan(*args, cwd=tmp_path, env=env)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "2 of 2 trials there already" in err and "for 1 trials" in err
    assert {path: path.stat().st_mtime_ns for path in done} == done  # the finished trial was not redone
    results = [json.loads(path.read_text()) for path in sorted(root.glob("trials/*/result.json"))]
    assert [result["status"] for result in results] == ["complete"] * 2
    assert "stopped by SIGTERM" in (root / "trials" / "0001" / "log.txt").read_text()  # then resumed


@pytest.mark.e2e
def test_two_processes_on_one_journal_share_the_trials(tmp_path):
    """The first process's trial waits after a checkpoint (conftest.holding) until the second process has planned
    a trial of its own, however slow either starts: both then run trials, and no trial runs twice."""
    root = tmp_path / "study"
    space = space_file(tmp_path / "space.yaml")
    env, gate = holding(tmp_path, os.path.join("trials", "0000"))
    sets = [*SETS, "train.steps=40", "output.eval_every=20", "output.sample_every=40", "output.checkpoint_every=20"]
    args = tune_args(root, space, "--trials", "3", "--pruner", "none", sets=sets)
    first = dcgan(*args, cwd=tmp_path, env=env)
    while not (root / "trials" / "0000" / tuning_module.TRIAL).is_file():
        assert first.poll() is None, first.communicate()
        time.sleep(0.1)
    second = dcgan(*args, cwd=tmp_path, env=env)
    while not (root / "trials" / "0001" / tuning_module.TRIAL).is_file():
        assert second.poll() is None, second.communicate()
        time.sleep(0.1)
    gate.touch()
    outcomes = [process.communicate(timeout=600) for process in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outcomes
    ran = [int(re.search(r"for (\d+) trials", err).group(1)) for _, err in outcomes]
    results = sorted(root.glob("trials/*/result.json"))
    assert sum(ran) == len(results) and min(ran) >= 1 and len(results) in (3, 4)  # both asked at once: one extra
    assert all(json.loads(path.read_text())["status"] == "complete" for path in results)
    import optuna

    study = optuna.load_study(study_name="study", storage=tuning_module.open_storage(f"journal:{root / 'journal.log'}"))
    assert sorted(t.number for t in study.get_trials()) == list(range(len(results)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials())


HOLD = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
        "print('held', flush=True); input()")


def test_a_trial_planned_by_a_live_process_is_no_orphan_before_its_worker_starts(tmp_path):
    """A process joining the study while another has planned a trial whose worker has not taken the trial's
    lock yet leaves that trial alone; once the planner is gone, the trial is an orphan to resume."""
    tuning = tuning_in(tmp_path / "study")
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    directory = tuning_module.plan_trial(tuning, study.ask(tuning.space.distributions()))
    planner = subprocess.Popen([sys.executable, "-c", HOLD, str(directory / tuning_module.PLANNER_LOCK)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert planner.stdout.readline() == "held\n"
        assert tune_runner.orphans(tuning, study) == []
    finally:
        planner.communicate("")
    found = tune_runner.orphans(tuning, study)
    assert [(job.number, job.directory) for job in found] == [(0, directory)]
    found[0].held.release()


def test_a_moved_study_reads_the_journal_beside_it(tmp_path):
    tuning = tuning_in(tmp_path / "here")
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    trial = study.ask(tuning.space.distributions())
    directory = tuning_module.plan_trial(tuning, trial)
    assert json.loads((directory / tuning_module.TRIAL).read_text())["storage"] == "journal:../../journal.log"
    study.tell(trial, 12.5)
    (tmp_path / "here").rename(tmp_path / "there")
    moved = tuning_module.load(tmp_path / "there")
    assert moved.storage is None and moved.storage_url() == f"journal:{(tmp_path / 'there' / 'journal.log').resolve()}"
    assert [t.value for t in tuning_module.optuna_study(moved).get_trials()] == [12.5]
    tuning_module.prepare(moved)  # continuing it there is the same study
    reported = invoke("tune", "--report", tmp_path / "there")
    assert reported.exit_code == 0 and "Best: trial 0, FD 12.500" in reported.output
    assert not (tmp_path / "here").exists()


def test_a_confirmation_with_set_changes_both_configs_in_its_own_directory(tmp_path):
    tuning = tuning_in(tmp_path / "study")
    values = {"hacks.learning_rate": 5e-4, "train.ema_decay": 0.95}
    plain = tuning_module.confirmation_study(tuning, values, seeds=3)
    longer = tuning_module.confirmation_study(tuning, values, seeds=3, overrides=("train.steps=12",))
    assert plain.root.name == "confirm" and longer.root.name == "confirm-train.steps=12"
    assert plain.base.train.steps == 6 and longer.base.train.steps == 12
    for confirm in (plain, longer):
        configs = {(run.variant, run.seed): confirm.config(confirm.variant(run.variant), run.seed)
                   for run in confirm.runs()}
        assert {cfg.train.seed for cfg in configs.values()} == {1000, 1001, 1002}
        assert configs[("tuned", 0)].hacks.learning_rate == 5e-4 and configs[("base", 0)].train.ema_decay == 0.0
    with pytest.raises(tuning_module.TuneError, match="keeps the searched keys"):
        tuning_module.confirmation_study(tuning, values, seeds=3, overrides=("hacks.learning_rate=1e-3",))
    with pytest.raises(tuning_module.TuneError, match="train.step"):
        tuning_module.confirmation_study(tuning, values, seeds=3, overrides=("train.step=12",))


def test_a_database_storage_holds_the_study_and_refuses_another_under_its_name(tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    tuning = tuning_in(tmp_path / "here", sampler="tpe", storage=url, name="digits")
    tuning_module.prepare(tuning)
    study = tuning_module.optuna_study(tuning)
    trial = study.ask(tuning.space.distributions())
    spec = json.loads((tuning_module.plan_trial(tuning, trial) / tuning_module.TRIAL).read_text())
    assert spec["storage"] == url and not (tmp_path / "here" / tuning_module.JOURNAL).exists()
    study.tell(trial, 7.0)
    # Another machine: its own directory and data path, the same study in the database.
    elsewhere = dataclasses.replace(tuning, root=tmp_path / "there",
                                    base=load_config(DIGITS, [*SETS, "data.path=/elsewhere"]))
    assert [t.value for t in tuning_module.optuna_study(elsewhere).get_trials()] == [7.0]
    other = dataclasses.replace(tuning, root=tmp_path / "third", seeds=2)
    with pytest.raises(tuning_module.TuneError, match="another one .*seeds"):
        tuning_module.optuna_study(other)
