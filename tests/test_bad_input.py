"""Bad input everywhere ends in one clean line and exit code 2, never a traceback; resuming checks the config."""

from __future__ import annotations

import dataclasses
import shutil
import string

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcgan_cli.cli import main
from dcgan_cli.config import SECTIONS, Config, ConfigError, load_config

from conftest import TINY

KEYS = {section: [f.name for f in dataclasses.fields(cls)] for section, cls in SECTIONS.items()}
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.dates(),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
keys = st.one_of(st.sampled_from([key for names in KEYS.values() for key in names]), st.text(max_size=10),
                 st.integers(), st.none())
sections = st.one_of(st.sampled_from(list(SECTIONS)), st.text(max_size=8), st.integers())
configs = st.one_of(
    st.dictionaries(sections, st.one_of(st.dictionaries(keys, values, max_size=5), values), max_size=5),
    values,
)


def outcome(path, overrides=()) -> str:
    try:
        load_config(path, overrides)
        return "valid"
    except ConfigError as error:
        assert error.problems and all(isinstance(line, str) and line for line in error.problems)
        return "error"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=configs)
def test_any_yaml_structure_is_a_config_or_a_clean_error(tmp_path, raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    outcome(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=string.printable, max_size=200))
def test_any_text_file_is_a_config_or_a_clean_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    outcome(path)


@settings(max_examples=200, deadline=None)
@given(overrides=st.lists(st.text(alphabet=string.printable, max_size=40), max_size=4))
def test_any_set_override_is_a_config_or_a_clean_error(overrides):
    outcome(None, overrides)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=configs)
def test_the_cli_answers_exit_0_or_2_without_traceback(tmp_path, raw):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    result = CliRunner().invoke(main, ["config", "--config", str(path)])
    assert result.exit_code in (0, 2) and result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_valid_values_of_every_type_still_load():
    assert load_config(None, ["train.steps=1", "hacks.learning_rate=1e-3", "output.run_dir=null",
                              "data.limit=null", "data.limit=5"]) != Config()


@pytest.mark.parametrize("text, message", [
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("hacks:\n  - adam\n", "hacks: expected a mapping of settings. Received: ['adam']"),
    ("model: {image_size: [16]}\n", "model.image_size: expected an integer"),
    ("{{{{", "not valid YAML"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
])
def test_malformed_config_files_through_the_cli(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for command in (["config"], ["train"], ["summary"], ["data"]):
        result = CliRunner().invoke(main, [*command, "--config", str(path)])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """A tiny run trained once for the module: (its directory, its config file, its --set arguments)."""
    root = tmp_path_factory.mktemp("trained")
    sets = [arg for override in TINY for arg in ("--set", override)]
    path = root / "tiny.yaml"
    path.write_text("{}\n")
    result = CliRunner().invoke(main, ["train", "--config", str(path), "--run-dir", str(root / "run"), *sets])
    assert result.exit_code == 0, result.output
    return root / "run", path, sets


@pytest.fixture
def trained(trained_once, tmp_path):
    """A copy of the module's tiny run, for a test to damage or extend."""
    run, path, sets = trained_once
    return shutil.copytree(run, tmp_path / "run"), path, sets


@pytest.mark.parametrize("damage, message", [
    (lambda ckpt: (ckpt / "config.yaml").write_text("model: [broken\n"), "the checkpoint's config.yaml is unusable"),
    (lambda ckpt: (ckpt / "weights.npz").unlink(), "cannot load weights.npz"),
    (lambda ckpt: (ckpt / "weights.npz").write_bytes(b"PK\x03\x04 truncated"), "cannot load weights.npz"),
    (lambda ckpt: (ckpt / "config.yaml").write_text("model: {image_size: 32}\n"), "cannot load weights.npz"),
])
def test_a_corrupt_checkpoint_given_to_sample(trained, tmp_path, damage, message):
    run = trained[0]
    ckpt = run / "checkpoints" / "step_000004"
    damage(ckpt)
    result = CliRunner().invoke(main, ["sample", "--checkpoint", str(ckpt), "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "g.png").exists()


def test_resume_refuses_another_architecture_and_lists_other_changes(trained):
    run, path, sets = trained
    result = CliRunner().invoke(main, ["train", "--config", str(path), "--run-dir", str(run), "--resume", *sets,
                                       "--set", "model.g_filters=16", "--set", "hacks.batch_norm=false"])
    assert result.exit_code == 2
    assert ("cannot resume from step_000004 with another architecture (model.g_filters: 8 -> 16; "
            "hacks.batch_norm: True -> False)") in result.output

    result = CliRunner().invoke(main, ["train", "--resume", "--run-dir", str(run), "--set", "train.steps=6",
                                       "--set", "hacks.learning_rate=1e-4"])
    assert result.exit_code == 0, result.output
    assert "changed since step_000004: hacks.learning_rate: 0.0002 -> 0.0001" in result.output
    assert "changed since step_000004: train.steps: 4 -> 6" in result.output
    assert (run / "checkpoints" / "step_000006").is_dir()

    result = CliRunner().invoke(main, ["train", "--resume", "--run-dir", str(run)])
    assert result.exit_code == 0 and "already reached step_000006 of 6 steps" in result.output


@pytest.mark.parametrize("args, message", [
    (["train"], "give --config PATH, or --resume --run-dir DIR"),
    (["train", "--resume", "--run-dir", "nowhere"], "nothing to resume: no such run directory. Received: 'nowhere'"),
])
def test_train_without_what_it_needs(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output


def test_a_new_run_into_an_existing_run_points_at_resume(trained):
    run, path, sets = trained
    result = CliRunner().invoke(main, ["train", "--config", str(path), "--run-dir", str(run), *sets])
    assert result.exit_code == 2
    assert "already holds a run (newest checkpoint step_000004); continue it with --resume" in result.output


def test_an_unwritable_out_path_for_sample(trained, tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["sample", "--checkpoint", str(trained[0]), "--out",
                                       str(tmp_path / "file" / "grid.png")])
    assert result.exit_code == 2 and "cannot write" in result.output and "Traceback" not in result.output
