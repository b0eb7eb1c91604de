"""train.mixed_precision: auto picks bfloat16 where the device computes it natively and float32 elsewhere, a run
writes the precision it used into its config.yaml and metrics, bfloat16 on a CPU that emulates it warns once, and
screens (dcgan ablate, dcgan tune) default to auto while their confirmations train in float32."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from dcgan_cli import backend
from dcgan_cli.cli import main
from dcgan_cli.config import load_config
from dcgan_cli.machine import Cpu
from dcgan_cli.tune import study as tuning_module
from dcgan_cli.tune.space import parse_space

NATIVE = Cpu(model="a CPU with AVX-512 BF16", flags=frozenset({"avx2", "avx512_bf16"}), architecture="x86_64",
             system="Linux")
EMULATED = Cpu(model="a CPU without", flags=frozenset({"avx2"}), architecture="x86_64", system="Linux")
pytestmark = pytest.mark.skipif(not backend.on_cpu(), reason="the CPU's flags decide only where no GPU is seen")


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


@pytest.mark.parametrize("found, resolved", [(NATIVE, "bfloat16"), (EMULATED, "off")])
def test_auto_is_bfloat16_where_the_cpu_computes_it_natively_else_float32(monkeypatch, found, resolved):
    monkeypatch.setattr(backend, "this_cpu", lambda: found)
    assert backend.resolve_precision("auto") == resolved
    for setting in ("off", "bfloat16", "float16"):
        assert backend.resolve_precision(setting) == setting


def test_bfloat16_on_a_cpu_that_emulates_it_is_one_warning_with_the_measured_slowdown(monkeypatch):
    monkeypatch.setattr(backend, "this_cpu", lambda: EMULATED)
    warning = backend.emulated_bfloat16("bfloat16")
    assert warning.startswith("warning: train.mixed_precision") and "\n" not in warning
    assert f"float32 trained {EMULATED.bfloat16_slowdown:g}x faster" in warning and "without AVX-512" in warning
    assert warning.endswith("Received: bfloat16")
    assert backend.emulated_bfloat16("off") is None and backend.emulated_bfloat16("float16") is None
    monkeypatch.setattr(backend, "this_cpu", lambda: NATIVE)
    assert backend.emulated_bfloat16("bfloat16") is None


@pytest.mark.parametrize("found, resolved", [(NATIVE, "bfloat16"), (EMULATED, "off")])
def test_a_run_writes_the_precision_auto_chose_into_its_config_and_metrics(monkeypatch, tmp_path, tiny_overrides,
                                                                            found, resolved):
    monkeypatch.setattr(backend, "this_cpu", lambda: found)
    run = tmp_path / "run"
    (tmp_path / "tiny.yaml").write_text("{}\n")
    args = ["train", "--config", tmp_path / "tiny.yaml", "--run-dir", run]
    for item in [*tiny_overrides, "train.mixed_precision=auto", "train.steps=2"]:
        args += ["--set", item]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert load_config(run / "config.yaml").train.mixed_precision == resolved
    saved = yaml.safe_load((run / "checkpoints" / "step_000002" / "config.yaml").read_text())
    assert saved["train"]["mixed_precision"] == resolved  # a resumed run keeps it
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["precision"] for record in records if "images_per_s" in record] == [resolved]
    shown = invoke("report", run)
    assert ("mixed bfloat16" if resolved == "bfloat16" else "float32") in shown.output


def test_asking_for_bfloat16_on_such_a_cpu_trains_and_prints_the_warning_once(monkeypatch, tmp_path, tiny_overrides):
    monkeypatch.setattr(backend, "this_cpu", lambda: EMULATED)
    (tmp_path / "tiny.yaml").write_text("{}\n")
    args = ["train", "--config", tmp_path / "tiny.yaml", "--run-dir", tmp_path / "run"]
    for item in [*tiny_overrides, "train.mixed_precision=bfloat16", "train.steps=2"]:
        args += ["--set", item]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: train.mixed_precision")]
    assert len(warnings) == 1 and f"{EMULATED.bfloat16_slowdown:g}x" in warnings[0]
    assert load_config(tmp_path / "run" / "config.yaml").train.mixed_precision == "bfloat16"


def test_a_command_default_stands_in_for_the_schemas_unless_the_file_or_a_set_names_the_key(tmp_path):
    screen = ("train.mixed_precision=auto",)
    plain, named = tmp_path / "plain.yaml", tmp_path / "named.yaml"
    plain.write_text("train: {steps: 10}\n")
    named.write_text("train: {steps: 10, mixed_precision: float16}\n")
    assert load_config(plain).train.mixed_precision == "off"
    assert load_config(plain, defaults=screen).train.mixed_precision == "auto"
    assert load_config(named, defaults=screen).train.mixed_precision == "float16"
    assert load_config(plain, ["train.mixed_precision=off"], defaults=screen).train.mixed_precision == "off"
    assert load_config(None, defaults=screen).train.mixed_precision == "auto"


def test_an_ablation_screens_in_auto_unless_told_and_a_confirmation_trains_in_float32(tmp_path, tiny_overrides):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"train": {"steps": 2}}))
    for sets, expected in (([], "auto"), (["train.mixed_precision=off"], "off")):
        root = tmp_path / f"study-{expected}"
        args = ["ablate", "--config", config, "--factors", "batch_norm", "--seeds", "1", "--run-dir", root, "--plan"]
        for item in [*tiny_overrides, *sets]:
            args += ["--set", item]
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert load_config(root / "base.yaml").train.mixed_precision == expected
    # A study begun in float32 (as every study began before auto) names the key to --set to continue it.
    args = ["ablate", "--config", config, "--factors", "batch_norm", "--seeds", "1", "--run-dir", tmp_path / "study-off",
            "--plan"]
    for item in tiny_overrides:
        args += ["--set", item]
    refused = invoke(*args)
    assert refused.exit_code == 2 and "train.mixed_precision: 'off' there, 'auto' here" in refused.output
    base = load_config(None, [*tiny_overrides, "train.mixed_precision=auto"])
    tuning = tuning_module.Tuning(
        root=tmp_path / "tune", base=base, space=parse_space({"hacks.beta_1": {"choice": [0.0, 0.5]}}, source="s"),
        seeds=1, objective="final", sampler="random", pruner="none", storage=None, name="study",
        evaluation={"count": 50, "features": "domain", "seed": 0})
    confirm = tuning_module.confirmation_study(tuning, {"hacks.beta_1": 0.0}, seeds=2)
    assert confirm.base.train.mixed_precision == "off"
    kept = tuning_module.confirmation_study(tuning, {"hacks.beta_1": 0.0}, seeds=2,
                                            overrides=("train.mixed_precision=bfloat16",))
    assert kept.base.train.mixed_precision == "bfloat16"
