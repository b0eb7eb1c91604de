"""The config loader: defaults, strict keys, types, ranges, overrides, all problems at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dcgan_cli.config import SECTIONS, Config, ConfigError, load_config, replace_value, to_dict, to_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides)
    return caught.value.problems


def test_default_yaml_documents_every_key_at_its_default():
    raw = yaml.safe_load((CONFIGS / "default.yaml").read_text())
    for section, cls in SECTIONS.items():
        assert set(raw[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert load_config(CONFIGS / "default.yaml") == Config()
    lines = [line for line in (CONFIGS / "default.yaml").read_text().splitlines() if line.startswith("  ")]
    undocumented = [line for line in lines if ":" in line and "#" not in line]
    assert undocumented == []


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name):
    load_config(CONFIGS / name)


def test_all_eleven_hacks_default_to_on():
    hacks = Config().hacks
    switches = ["strided_conv", "transposed_conv", "leaky_relu", "batch_norm", "gaussian_init", "adam",
                "scale_images", "gaussian_latent", "separate_batches", "label_smoothing", "noisy_labels"]
    assert all(getattr(hacks, name) is True for name in switches)
    assert (hacks.leaky_slope, hacks.init_stddev, hacks.learning_rate, hacks.beta_1) == (0.2, 0.02, 2e-4, 0.5)
    assert (hacks.real_label_range, hacks.fake_label_range, hacks.flip_probability) == ((0.7, 1.2), (0.0, 0.3), 0.05)
    assert Config().model.bn_momentum == 0.9


def test_unknown_key_names_its_path_and_suggests(tmp_path):
    assert problems(tmp_path, "hacks:\n  leaky_rlu: true\n") == [
        "hacks.leaky_rlu: unknown key; did you mean 'leaky_relu'?"]


def test_a_retired_key_is_explained_to_a_user_and_dropped_from_a_saved_config(tmp_path):
    why = "the d_wins rule now judges D(G(z)) and G's gradient norm"
    [found] = problems(tmp_path, "monitor:\n  d_wins_loss: 0.2\n")
    assert found.startswith(f"monitor.d_wins_loss: no longer a setting: {why}") and found.endswith("Received: 0.2")
    with pytest.raises(ConfigError, match=r"monitor.d_wins_loss: no longer a setting: .*Received: '0.2'"):
        load_config(None, ["monitor.d_wins_loss=0.2"])
    saved = tmp_path / "saved.yaml"
    saved.write_text("monitor:\n  d_wins_loss: 0.3\n  d_wins_logs: 4\n")
    assert load_config(saved, saved=True).monitor.d_wins_logs == 4
    with pytest.raises(ConfigError, match="monitor.d_wins_loss: no longer a setting"):
        load_config(saved, ["monitor.d_wins_loss=0.2"], saved=True)


def test_key_in_the_wrong_section_suggests_the_right_path(tmp_path):
    assert problems(tmp_path, "hacks:\n  image_size: 32\n") == [
        "hacks.image_size: unknown key; did you mean 'model.image_size'?"]


def test_unknown_section_suggests(tmp_path):
    assert problems(tmp_path, "hack:\n  adam: false\n") == ["hack: unknown section; did you mean 'hacks'?"]


@pytest.mark.parametrize("text, expected", [
    ("train:\n  steps: many\n", "train.steps: expected an integer. Received: 'many'"),
    ("train:\n  steps: 2.5\n", "train.steps: expected an integer. Received: 2.5"),
    ("train:\n  steps: true\n", "train.steps: expected an integer. Received: True"),
    ("hacks:\n  batch_norm: 1\n", "hacks.batch_norm: expected true or false. Received: 1"),
    ("hacks:\n  learning_rate: fast\n", "hacks.learning_rate: expected a number. Received: 'fast'"),
    ("hacks:\n  learning_rate: .nan\n", "hacks.learning_rate: expected a finite number. Received: nan"),
    ("model:\n  g_activation: leakyrelu\n",
     "model.g_activation: expected one of relu, leaky_relu; did you mean 'leaky_relu'?. Received: 'leakyrelu'"),
    ("model:\n  channels: 2\n", "model.channels: expected one of 1, 3. Received: 2"),
    ("hacks:\n  real_label_range: 0.9\n", "hacks.real_label_range: expected a range [low, high]. Received: 0.9"),
    ("output:\n  run_dir: 5\n", "output.run_dir: expected a string. Received: 5"),
    ("hacks:\n  diff_augment_policy: cutout\n",
     "hacks.diff_augment_policy: expected a non-empty list of color, translation, cutout. Received: 'cutout'"),
    ("hacks:\n  diff_augment_policy: []\n",
     "hacks.diff_augment_policy: expected a non-empty list of color, translation, cutout. Received: []"),
    ("hacks:\n  diff_augment_policy: [colour]\n", "hacks.diff_augment_policy: expected a non-empty list of color, "
     "translation, cutout; did you mean 'color'?. Received: ['colour']"),
    ("hacks:\n  diff_augment_policy: [cutout, cutout]\n", "hacks.diff_augment_policy: expected a non-empty list "
     "of color, translation, cutout, each once. Received: ['cutout', 'cutout']"),
])
def test_wrong_type_names_path_expectation_and_value(tmp_path, text, expected):
    assert problems(tmp_path, text) == [expected]


@pytest.mark.parametrize("text, expected", [
    ("hacks:\n  flip_probability: 1.5\n", "hacks.flip_probability: expected a number in [0, 1]. Received: 1.5"),
    ("model:\n  bn_momentum: 1.0\n", "model.bn_momentum: expected a number in [0, 1). Received: 1.0"),
    ("train:\n  batch_size: 0\n", "train.batch_size: expected an integer >= 1. Received: 0"),
    ("model:\n  image_size: 4\n", "model.image_size: expected an integer in [8, 1024]. Received: 4"),
    ("train:\n  seed: 4294967296\n", "train.seed: expected an integer in [0, 4294967295]. Received: 4294967296"),
    ("hacks:\n  real_label_range: [1.2, 0.7]\n",
     "hacks.real_label_range: expected a range [low, high] with low <= high. Received: [1.2, 0.7]"),
    ("model:\n  image_size: 27\n",
     "model.image_size: expected an even size (G doubles its base at least once). Received: 27"),
])
def test_out_of_range_is_refused(tmp_path, text, expected):
    assert problems(tmp_path, text) == [expected]


def test_scientific_notation_reads_as_a_float(tmp_path):
    cfg = load_config(write(tmp_path, "hacks:\n  learning_rate: 1e-4\n  init_stddev: 2E-2\n"))
    assert cfg.hacks.learning_rate == 1e-4 and isinstance(cfg.hacks.learning_rate, float)
    assert cfg.hacks.init_stddev == 0.02
    assert load_config(None, ["hacks.learning_rate=5e-5"]).hacks.learning_rate == 5e-5


def test_a_policy_is_one_value_in_any_order_and_writes_back_as_a_list(tmp_path):
    cfg = load_config(write(tmp_path, "hacks:\n  diff_augment_policy: [cutout, color]\n"))
    assert cfg.hacks.diff_augment_policy == ("color", "cutout")
    assert load_config(None, ["hacks.diff_augment_policy=[color, cutout]"]) == cfg
    assert "diff_augment_policy: [color, cutout]" in to_yaml(cfg)


def test_integers_are_accepted_for_floats(tmp_path):
    assert load_config(write(tmp_path, "hacks:\n  flip_probability: 0\n")).hacks.flip_probability == 0.0


def test_set_overrides_file_values_and_parses_yaml_scalars(tmp_path):
    path = write(tmp_path, "train:\n  steps: 10\nhacks:\n  batch_norm: true\n")
    cfg = load_config(path, ["train.steps=500", "hacks.batch_norm=false", "output.run_dir=runs/x",
                             "hacks.real_label_range=[0.8, 1.0]"])
    assert cfg.train.steps == 500 and cfg.hacks.batch_norm is False
    assert cfg.output.run_dir == "runs/x" and cfg.hacks.real_label_range == (0.8, 1.0)


@pytest.mark.parametrize("override, expected", [
    ("train.steps", "--set train.steps: expected SECTION.KEY=VALUE, e.g. hacks.batch_norm=false. "
                    "Received: 'train.steps'"),
    ("steps=5", "--set steps=5: expected SECTION.KEY=VALUE, e.g. hacks.batch_norm=false. Received: 'steps=5'"),
    ("train.stepz=5", "train.stepz: unknown key; did you mean 'steps'?"),
    ("trian.steps=5", "trian: unknown section; did you mean 'train'?"),
])
def test_bad_set_is_reported(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert caught.value.problems == [expected]


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(tmp_path, "hacks:\n  leaky_rlu: true\n  flip_probability: 2\ntrain:\n  steps: x\n",
                     ["model.channels=4"])
    assert len(found) == 4
    assert [line.split(":")[0] for line in found] == [
        "hacks.leaky_rlu", "hacks.flip_probability", "train.steps", "model.channels"]


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "expected a mapping of sections (data, model, hacks, train, output, monitor). Received: ['a', 'b']"),
    ("model: 5\n", "model: expected a mapping of settings. Received: 5"),
    ("model: [1, 2\n", "not valid YAML"),
])
def test_malformed_files_get_one_clear_line(tmp_path, text, expected):
    (found,) = problems(tmp_path, text)
    assert expected in found


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value) and "Received:" in str(caught.value)


def test_empty_file_means_all_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n")) == Config()


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(None, ["hacks.adam=false", "model.image_size=32", "hacks.learning_rate=1e-5"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(path) == cfg
    assert to_dict(cfg)["hacks"]["real_label_range"] == [0.7, 1.2]


def test_replace_value_changes_one_value():
    cfg = replace_value(Config(), "hacks.batch_norm", False)
    assert cfg.hacks.batch_norm is False and cfg.hacks.adam is True and Config().hacks.batch_norm is True


def test_a_bare_off_means_the_choice_off(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  mixed_precision: off\n  distribution: off\n"))
    assert cfg.train.mixed_precision == "off" and cfg.train.distribution == "off"
    assert load_config(None, ["train.mixed_precision=off"]).train.mixed_precision == "off"
    assert problems(tmp_path, "train:\n  mixed_precision: on\n") == [
        "train.mixed_precision: expected one of off, auto, bfloat16, float16. Received: True"]
