"""Typed run configuration: one frozen dataclass per YAML section and the one strict loader.

The loader reads YAML files and `--set SECTION.KEY=VALUE` overrides the same way, checks every value against its
field, and reports every problem at once as a `ConfigError` before anything is built or written.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from dcgan_cli.files import one_line


class ConfigError(ValueError):
    """One or more problems with a config, each a line naming the key path."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def setting(default: Any, *, choices: tuple | None = None, low: float | None = None,
            high: float | None = None, high_open: bool = False) -> Any:
    """A dataclass field with its default and the checks the loader applies to a user's value."""
    return field(default=default, metadata={"choices": choices, "low": low, "high": high, "high_open": high_open})


DATASETS = ("digits", "folder", "mnist", "fashion_mnist", "cifar10", "npz", "npy")
FEATURE_SPACES = ("domain", "rotation", "inception")  # what scores can be measured in (evaluate/features.py)
NEEDS_PATH = ("folder", "npz", "npy")
AUGMENT_POLICY = ("color", "translation", "cutout")  # DiffAugment's operation groups (Zhao et al. 2020's policy)


@dataclass(frozen=True)
class DataConfig:
    name: str = setting("digits", choices=DATASETS)  # which dataset (see docs/datasets.md)
    path: str | None = setting(None)  # folder, npz, npy: the image folder or array file; mnist, fashion_mnist,
    #                                   cifar10: local dataset files, so nothing is downloaded
    limit: int | None = setting(None, low=1)  # use only N images (see subset); null = all
    subset: str = setting("first", choices=("first", "balanced"))  # which `limit` images: the first N, or the
    #                                           first of each class in turn (needs class labels)
    labels: bool = setting(False)  # load the class labels too, and refuse a dataset that has none
    holdout: int = setting(0, low=0)  # real images kept out of training, on which the monitor's d_overfits rule
    #                                   compares D's output with its output on training images; 0 = none
    cache_dir: str | None = setting(None)  # decoded-folder cache; null = $XDG_CACHE_HOME/dcgan-cli or ~/.cache/dcgan-cli


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = setting(16, low=8, high=1024)  # side of the square images; G's base side is this halved while even and > 4
    channels: int = setting(1, choices=(1, 3))  # 1 = grey, 3 = RGB
    latent_dim: int = setting(100, low=1)  # length of G's input vector z
    g_filters: int = setting(64, low=1)  # G's filters in its last hidden block; doubled per block toward the base
    d_filters: int = setting(64, low=1)  # D's filters in its first block; doubled per block toward the base
    max_filters: int = setting(512, low=1)  # cap on the doubled filter counts of both networks
    kernel_size: int = setting(4, low=1)  # side of every convolution kernel (DCGAN reference 4, paper 5)
    g_activation: str = setting("relu", choices=("relu", "leaky_relu"))  # G's hidden activation (paper: relu)
    bn_momentum: float = setting(0.9, low=0.0, high=1.0, high_open=True)  # BatchNorm moving-average momentum (PyTorch's 0.1)
    bn_epsilon: float = setting(1e-5, low=0.0)  # BatchNorm variance epsilon (PyTorch's default)
    d_bn_in_g_update: str = setting("batch", choices=("batch", "moving"))  # D's BN statistics in the G update


@dataclass(frozen=True)
class HacksConfig:
    strided_conv: bool = setting(True)  # 1 D downsamples by Conv2D stride 2; off: Conv2D stride 1 + MaxPooling2D
    transposed_conv: bool = setting(True)  # 2 G upsamples by Conv2DTranspose stride 2; off: UpSampling2D + Conv2D
    leaky_relu: bool = setting(True)  # 3 LeakyReLU in D (and G if model.g_activation: leaky_relu); off: ReLU
    leaky_slope: float = setting(0.2, low=0.0, high=1.0)  # LeakyReLU negative slope
    batch_norm: bool = setting(True)  # 4 BatchNormalization between conv and activation; off: none
    gaussian_init: bool = setting(True)  # 5 weights ~ N(0, init_stddev); off: Keras' GlorotUniform
    init_stddev: float = setting(0.02, low=0.0)  # standard deviation of the Gaussian init
    adam: bool = setting(True)  # 6 Adam(learning_rate, beta_1) for D and G; off: Keras' Adam(1e-3, beta_1=0.9)
    learning_rate: float = setting(2e-4, low=0.0)  # Adam learning rate when adam is on
    beta_1: float = setting(0.5, low=0.0, high=1.0, high_open=True)  # Adam beta_1 when adam is on
    scale_images: bool = setting(True)  # 7 pixels in [-1, 1] and G ends in tanh; off: [0, 1] and sigmoid
    gaussian_latent: bool = setting(True)  # 8 z ~ N(0, 1); off: z ~ U(-1, 1)
    separate_batches: bool = setting(True)  # 9 D updates on an all-real then an all-fake batch; off: one mixed batch
    label_smoothing: bool = setting(True)  # 10 real labels ~ U(real_label_range); off: hard 1 and 0
    real_label_range: tuple[float, float] = setting((0.7, 1.2))  # range of smoothed real labels
    smooth_fake: bool = setting(False)  # also smooth fake labels (two-sided); false = one-sided (Salimans et al.)
    fake_label_range: tuple[float, float] = setting((0.0, 0.3))  # range of smoothed fake labels when smooth_fake
    noisy_labels: bool = setting(True)  # 11 flip each D label with probability flip_probability; off: unchanged
    flip_probability: float = setting(0.05, low=0.0, high=1.0)  # chance that one D label is flipped
    ttur: bool = setting(False)  # 12 two time-scale update rule: D and G at their own learning rates; off: both
    #                              at learning_rate (Adam's default 1e-3 with adam off)
    d_learning_rate: float = setting(4e-4, low=0.0)  # D's learning rate when ttur is on
    g_learning_rate: float = setting(1e-4, low=0.0)  # G's learning rate when ttur is on
    train_d_more: bool = setting(False)  # 13 d_steps D updates (each on its own batches) per G update; off: 1
    d_steps: int = setting(2, low=1)  # D's updates per G update when train_d_more is on
    instance_noise: bool = setting(False)  # 14 Gaussian noise on D's inputs, real and fake, annealed to 0; off: none
    instance_noise_std: float = setting(0.1, low=0.0)  # its standard deviation at step 0, in the model's pixel range
    instance_noise_steps: int = setting(1500, low=1)  # the step by which it has fallen linearly to 0
    diff_augment: bool = setting(False)  # 20 DiffAugment's colour, translation and cutout on every D input, real and
    #                                      fake, in D's and G's updates; off: none
    diff_augment_policy: tuple[str, ...] = setting(AUGMENT_POLICY, choices=AUGMENT_POLICY)  # which of its
    #                                      operations hacks 20 and 23 apply: color, translation, cutout
    g_dropout: bool = setting(False)  # 15 dropout after G's hidden blocks, in training and sampling; off: none
    g_dropout_rate: float = setting(0.5, low=0.0, high=1.0, high_open=True)  # the share of units it zeroes
    spectral_norm: bool = setting(False)  # 16 D's convolutions and final Dense divided by their largest singular
    #                                       value (one power iteration per step); off: plain layers
    hinge_loss: bool = setting(False)  # 17 hinge loss on D's raw scores; off: binary cross-entropy on them
    r1_penalty: bool = setting(False)  # 18 R1 gradient penalty on real images in D's loss (train.loop: compiled);
    #                                    off: none
    r1_gamma: float = setting(10.0, low=0.0)  # the penalty's weight gamma (gamma / 2 times the squared gradient norm)
    r1_every: int = setting(1, low=1)  # lazy regularisation: the penalty every this many steps, weighted by it
    minibatch_std: bool = setting(False)  # 19 D sees the batch's mean standard deviation as an extra feature map
    #                                       after its last block; off: no such feature
    class_conditional: bool = setting(False)  # 21 G and D see each image's class (needs data.labels: true);
    #                                           off: neither sees a class
    conditioning: str = setting("projection", choices=("projection", "auxiliary"))  # D's use of the class:
    #                                           projection (Miyato & Koyama 2018) or an auxiliary classifier (AC-GAN)
    aux_weight: float = setting(1.0, low=0.0)  # the auxiliary classifier's cross-entropy weight in D's and G's losses
    g_conditioning: str = setting("batch_norm", choices=("batch_norm", "concat"))  # G's use of the class:
    #                                           class-conditional BatchNorm gains and biases, or an embedding
    #                                           concatenated to z
    class_draw: str = setting("uniform", choices=("uniform", "frequency"))  # fake images' classes: uniform, or as
    #                                           often as in the data
    replay: bool = setting(False)  # 22 D's fake batches take replay_fraction of their images from a buffer of
    #                                past fakes; off: only the step's own fakes
    replay_size: int = setting(1024, low=1)  # past fakes the buffer holds (on the device, in the checkpoints)
    replay_fraction: float = setting(0.5, low=0.0, high=1.0)  # the share of each fake batch taken from the buffer
    adaptive_augment: bool = setting(False)  # 23 hack 20's operations each applied with a probability p that
    #                                          adapts to D's overfitting (ADA); off: none (hack 20: always)
    ada_target: float = setting(0.6, low=0.0, high=1.0)  # p rises while r_t = E[sign(D's raw score on reals)] is
    #                                          above this, and falls while it is below
    ada_interval: int = setting(4, low=1)  # steps over which r_t is measured; p moves once per interval
    ada_kimg: float = setting(100.0, low=0.0)  # thousands of real images over which p can go from 0 to 1
    lecam: bool = setting(False)  # 24 LeCam: D's scores on reals pulled toward the moving average of its scores on
    #                               fakes, and the other way round (Tseng et al. 2021); off: none
    lecam_weight: float = setting(0.01, low=0.0)  # the regulariser's weight in D's loss
    lecam_decay: float = setting(0.99, low=0.0, high=1.0, high_open=True)  # the moving averages' decay per step


@dataclass(frozen=True)
class TrainConfig:
    steps: int = setting(3000, low=1)  # training steps; each step is one D update and one G update
    batch_size: int = setting(64, low=1)  # real images per step (and as many fakes)
    seed: int = setting(0, low=0, high=2**32 - 1)  # seeds the initial weights and each step's draws (on the device)
    loop: str = setting("train_on_batch", choices=("train_on_batch", "compiled"))  # the split train_on_batch
    #                                     loop, or the same mathematics as one compiled function per step
    jit_compile: str = setting("auto", choices=("auto", "on", "off"))  # TensorFlow, compiled loop: XLA for the
    #                                     step; auto = on with a GPU, off on a CPU (oneDNN's kernels are faster)
    mixed_precision: str = setting("off", choices=("off", "bfloat16", "float16"))  # compute dtype of the layers;
    #                                     variables, losses and D's raw score stay float32; float16 adds loss scaling
    device_data_fraction: float = setting(0.25, low=0.0, high=1.0)  # keep the uint8 dataset on the device
    #                                     when it takes at most this share of its memory (RAM on a CPU), so a step
    #                                     gathers its batch there; 0 = stream each step's uint8 batch
    ema_decay: float = setting(0.0, low=0.0, high=1.0, high_open=True)  # keep an exponential moving average of
    #                                     G's weights and BN statistics, updated every step, for grids, sample,
    #                                     evaluate and export (--raw: the trained weights); 0 = off
    distribution: str = setting("off", choices=("off", "data_parallel"))  # data_parallel: split each batch over
    #                                     all local devices (JAX: keras.distribution.DataParallel; TF: MirroredStrategy)


@dataclass(frozen=True)
class OutputConfig:
    run_dir: str | None = setting(None)  # run directory; null = runs/<config file name> (made unique)
    sample_every: int = setting(500, low=1)  # write samples/step_NNNNNN.png every this many steps (and at the end)
    checkpoint_every: int = setting(1000, low=1)  # write checkpoints/step_NNNNNN/ every this many steps (and at the end)
    keep_checkpoints: int = setting(3, low=1)  # how many of the newest checkpoints to keep
    log_every: int = setting(50, low=1)  # append a line to metrics.jsonl every this many steps (and at the end)
    n_samples: int = setting(64, low=1)  # images in each sample grid, drawn from one fixed latent batch
    progress: bool = setting(True)  # show the progress bar
    eval_every: int = setting(0, low=0)  # score G every this many steps (and at the end) on fixed latents, keep
    #                                      the best as checkpoints/best; 0 = off
    eval_samples: int = setting(1000, low=10)  # images scored at each eval_every, from one fixed latent set
    eval_features: str = setting("auto", choices=("auto", *FEATURE_SPACES))  # the score's feature space: auto =
    #                                      domain where the data has class labels, else rotation (no labels)
    eval_min_skill: float = setting(0.35, low=0.0, high=1.0)  # refuse domain scores when the classifier's
    #                                      held-out accuracy (its 95% lower bound) is less than this far from
    #                                      chance (0) to perfect (1); auto then scores in rotation features
    eval_min_accuracy: float = setting(0.0, low=0.0, high=1.0)  # also refuse domain scores when the classifier's
    #                                      held-out accuracy is below this; 0 = no such floor
    tensorboard: bool = setting(False)  # also log scalars and the sample grids for TensorBoard in tensorboard/
    #                                      (pip install "dcgan-cli[tensorboard]")


MONITOR_ACTIONS = ("warn", "stop", "rollback")


@dataclass(frozen=True)
class MonitorConfig:
    action: str = setting("warn", choices=MONITOR_ACTIONS)  # on a trip: warn (a line and an event), stop
    #                                  (checkpoint, exit code 3), rollback (to the last healthy checkpoint)
    check_every: int = setting(100, low=0)  # probe G's fixed-latent samples and both gradient norms every this
    #                                  many steps (collapse and gradient rules); 0 = never
    d_wins: bool = setting(True)  # rule: D wins, D(G(z)) at its floor or G's gradient norm near 0, for
    #                                  d_wins_logs logs in a row (what D does, not its loss, which the labels move)
    d_wins_margin: float = setting(0.02, low=0.0, high=1.0)  # ... D(G(z)) less than this above the lowest its
    #                                  labels allow (hacks 10-11: flip_probability x the mean real label)
    d_wins_grad_norm: float = setting(1e-3, low=0.0)  # ... or G's gradient norm below this
    d_wins_logs: int = setting(3, low=1)  # ... for this many consecutive logs (output.log_every apart)
    g_rising: bool = setting(True)  # rule: G's loss rising steadily over the last g_rising_logs logs
    g_rising_logs: int = setting(20, low=3)  # ... the window, in logs
    g_rising_min: float = setting(1.0, low=0.0)  # ... by at least this much over the window (Theil-Sen slope)
    g_rising_tau: float = setting(0.7, low=0.0, high=1.0)  # ... and steadily: Kendall's tau with the step >= this
    collapse: bool = setting(True)  # rule: mode collapse (diversity of the fixed-latent samples, modes covered)
    collapse_diversity: float = setting(0.5, low=0.0)  # ... the samples' mean pairwise distance below this share
    #                                  of the real images'
    collapse_after: int = setting(500, low=0)  # ... judged after this step (G's first samples are all alike)
    collapse_checks: int = setting(2, low=1)  # ... at this many checks in a row
    collapse_mode_drop: int = setting(3, low=1)  # ... or (output.eval_every) the modes covered this many below
    #                                  the run's best so far
    d_overfits: bool = setting(True)  # rule: D rates its training images above real ones it never saw (needs
    #                                  data.holdout)
    d_overfits_gap: float = setting(0.35, low=0.0, high=1.0)  # ... D's mean output on training images minus that on
    #                                  the held-out ones above this
    d_overfits_checks: int = setting(3, low=1)  # ... at this many checks in a row (monitor.check_every apart)
    d_overfits_after: int = setting(500, low=0)  # ... judged after this step
    grad_norm: bool = setting(True)  # rule: D's or G's gradient norm above max_grad_norm
    max_grad_norm: float = setting(1000.0, low=0.0)  # ... the bound (global L2 norm of the loss's gradient)
    rollback_lr_factor: float = setting(0.5, low=0.0, high=1.0)  # rollback: multiply D's learning rate by this
    max_rollbacks: int = setting(3, low=0)  # rollback: at most this many per run, then stop


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    hacks: HacksConfig = field(default_factory=HacksConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads `1e-4` as a float (PyYAML's YAML 1.1 rules read it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, *, source: str) -> Any:
    """Parse YAML text safely (no code runs); a syntax error becomes a ConfigError naming `source`."""
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: not valid YAML: {one_line(error, limit=400)}"]) from None


# Keys that earlier versions had, and why they went. A config this tool wrote then (a run's, a checkpoint's, a
# study's) still loads, without them; a user's file or --set that gives one is told why.
RETIRED = {
    "monitor.d_wins_loss": "the d_wins rule now judges D(G(z)) and G's gradient norm (monitor.d_wins_margin, "
                           "monitor.d_wins_grad_norm), not D's loss, which the label hacks move; remove the key",
    "monitor.d_wins_output": "D(G(z)) cannot fall below the share of flipped fake labels, so the d_wins rule now "
                             "judges it from that floor up (monitor.d_wins_margin); remove the key",
}


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), *, saved: bool = False) -> Config:
    """Read a config file (or only defaults), apply `SECTION.KEY=VALUE` overrides, and check everything. `saved`:
    the file is one this tool wrote (config.yaml of a run, a checkpoint or a study), whose RETIRED keys are
    dropped."""
    problems: list[str] = []
    raw = _read_file(Path(path), problems) if path is not None else {}
    raw = _apply_overrides(raw, overrides, problems)
    config = _build(raw, problems, saved=saved)
    if problems:
        raise ConfigError(problems)
    return config


def with_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """`config` with `SECTION.KEY=VALUE` overrides applied and everything checked again, as load_config does."""
    problems: list[str] = []
    changed = _build(_apply_overrides(to_dict(config), overrides, problems), problems)
    if problems:
        raise ConfigError(problems)
    return changed


def problems_of(config: Config) -> list[str]:
    """The problems of a config built by replacing values (ablation variants), which involve more than one value."""
    return _cross_checks(config)


def checked_value(path: str, value: Any) -> Any:
    """`value` for the key at SECTION.KEY as the loader's own check of that key accepts it (converted to its type),
    without cross-checks; ConfigError with the loader's one-line problem."""
    section, key = _known_path(path)
    problems: list[str] = []
    built = _build_section(section, {key: value}, problems)
    if problems:
        raise ConfigError(problems)
    return getattr(built, key)


def value_type(path: str) -> Any:
    """The type hint of the key at SECTION.KEY (bool, int, float, str, a tuple range, or an optional); ConfigError
    naming an unknown key, with a suggestion as the loader gives it."""
    section, key = _known_path(path)
    return typing.get_type_hints(SECTIONS[section])[key]


def _known_path(path: str) -> tuple[str, str]:
    section, _, key = path.partition(".")
    if section not in SECTIONS or not key or "." in key:
        raise ConfigError([f"{path}: unknown key; expected SECTION.KEY with a section of {', '.join(SECTIONS)}"
                           f"{_suggest(section, SECTIONS)}. Received: {path!r}"])
    if key not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        raise ConfigError([f"{path}: unknown key{_suggest_key(key, section)}"])
    return section, key


def _read_file(path: Path, problems: list[str]) -> dict:
    """The file's top-level mapping; {} (with the problem recorded) when it cannot be read or is not a mapping."""
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{path}: cannot read the config file ({error.__class__.__name__}). Received: {str(path)!r}")
        return {}
    except ConfigError as error:
        problems.extend(error.problems)
        return {}
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}). Received: {show_value(raw)}")
        return {}
    return raw


def _apply_overrides(raw: dict, overrides: Iterable[str], problems: list[str]) -> dict:
    """Merge `SECTION.KEY=VALUE` strings into a copy of the raw mapping; values are YAML scalars."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in raw.items()}
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            problems.append(f"--set {override}: expected SECTION.KEY=VALUE, e.g. hacks.batch_norm=false. "
                            f"Received: {override!r}")
            continue
        try:
            value = parse_yaml(text, source=f"--set {key}")
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        section, name = parts
        if key.strip() in RETIRED:
            problems.append(_retired(key.strip(), repr(text.strip())))
            continue
        target = merged.setdefault(section, {})
        if isinstance(target, dict):
            target[name] = value
    return merged


def _retired(path: str, shown: str) -> str:
    """The problem of a RETIRED key given by a user: what replaced it."""
    return f"{path}: no longer a setting: {RETIRED[path]}. Received: {shown}"


def _build(raw: dict, problems: list[str], *, saved: bool = False) -> Config:
    """Turn the raw mapping into a Config, appending every problem found to `problems` (`saved`: see
    load_config)."""
    sections = {}
    for section, value in raw.items():
        if section not in SECTIONS:
            problems.append(f"{section}: unknown section{_suggest(str(section), SECTIONS)}")
        elif value is not None and not isinstance(value, dict):
            problems.append(f"{section}: expected a mapping of settings. Received: {show_value(value)}")
        else:
            sections[section] = _build_section(section, value or {}, problems, saved=saved)
    config = Config(**sections)
    problems.extend(_cross_checks(config))
    return config


def _build_section(section: str, values: dict, problems: list[str], *, saved: bool = False) -> Any:
    """Check one section's keys and values; invalid values fall back to defaults so checking can go on."""
    cls = SECTIONS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    accepted = {}
    for key, value in values.items():
        path = f"{section}.{key}"
        if path in RETIRED:
            if not saved:
                problems.append(_retired(path, show_value(value)))
            continue
        if key not in fields:
            problems.append(f"{path}: unknown key{_suggest_key(str(key), section)}")
            continue
        try:
            accepted[key] = _check_value(value, hints[key], fields[key].metadata)
        except ValueError as error:
            problems.append(f"{path}: {error}. Received: {show_value(value)}")
    return cls(**accepted)


def _check_value(value: Any, hint: Any, checks: dict) -> Any:
    """Return `value` converted to the field's type, or raise ValueError saying what was expected."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if hint is str or hint == (str | None):
        if value is None and hint != str:
            return None
        choices = checks.get("choices")
        if isinstance(value, bool) and choices and {"on", "off"} & set(choices):  # YAML 1.1: bare on/off are booleans
            value = "on" if value else "off"
        if not isinstance(value, str) or (choices and value not in choices):
            expected = f"one of {', '.join(choices)}" if choices else "a string"
            hint_text = _suggest(str(value), choices) if choices and isinstance(value, str) else ""
            raise ValueError(f"expected {expected}{hint_text}")
        return value
    if hint == (int | None):
        return None if value is None else _check_value(value, int, checks)
    if hint is int or hint is float:
        number = _number(value, integer=hint is int)
        choices = checks.get("choices")
        if choices and number not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}")
        _check_range(number, checks, integer=hint is int)
        return number
    if hint == tuple[str, ...]:
        return _words(value, checks["choices"])
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError("expected a range [low, high]")
        low, high = (_number(item, integer=False) for item in value)
        if low > high:
            raise ValueError("expected a range [low, high] with low <= high")
        return (low, high)
    raise TypeError(f"no check for type {hint!r}")


def _words(value: Any, choices: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty list of distinct words from `choices`, in the order of `choices` (so that [cutout, color] and
    [color, cutout] are one value)."""
    expected = f"expected a non-empty list of {', '.join(choices)}"
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(item, str) for item in value):
        raise ValueError(expected)
    unknown = [item for item in value if item not in choices]
    if unknown:
        raise ValueError(expected + _suggest(unknown[0], choices))
    if len(set(value)) != len(value):
        raise ValueError(f"{expected}, each once")
    return tuple(choice for choice in choices if choice in value)


def _number(value: Any, *, integer: bool) -> int | float:
    """An int (or float) from a YAML scalar; booleans and non-finite floats are refused."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {kind}")
    if integer:
        if isinstance(value, float):
            raise ValueError("expected an integer")
        return value
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return float(value)


def _check_range(number: float, checks: dict, *, integer: bool) -> None:
    """Raise ValueError when `number` lies outside the field's [low, high] (or [low, high))."""
    low, high, high_open = checks.get("low"), checks.get("high"), checks.get("high_open")
    kind = "an integer" if integer else "a number"
    if high is None:
        if low is not None and number < low:
            raise ValueError(f"expected {kind} >= {_plain(low)}")
        return
    bracket = ")" if high_open else "]"
    if number < low or number > high or (high_open and number == high):
        raise ValueError(f"expected {kind} in [{_plain(low)}, {_plain(high)}{bracket}")


def _plain(number: float) -> str:
    """1024 -> '1024', 0.5 -> '0.5', 4294967295 -> '4294967295'."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _cross_checks(config: Config) -> list[str]:
    """Problems that involve more than one value."""
    problems = []
    if config.data.name in NEEDS_PATH and config.data.path is None:
        problems.append(f"data.path: required when data.name is {config.data.name}. Received: None")
    if config.hacks.r1_penalty and config.train.loop != "compiled":
        problems.append("hacks.r1_penalty: needs train.loop: compiled; the train_on_batch loop's Keras calls cannot "
                        "differentiate D with respect to its input images. Received: true")
    if config.hacks.class_conditional and not config.data.labels:
        problems.append("hacks.class_conditional: needs data.labels: true (the classes G and D are given come from "
                        "the data). Received: true")
    if config.hacks.class_conditional and config.hacks.g_conditioning == "batch_norm" and not config.hacks.batch_norm:
        problems.append("hacks.g_conditioning: batch_norm puts the class into G's BatchNorm layers, and "
                        "hacks.batch_norm is off; use concat. Received: batch_norm")
    if config.hacks.replay and config.hacks.replay_size < config.train.batch_size:
        problems.append(f"hacks.replay_size: the buffer must hold at least one batch (train.batch_size "
                        f"{config.train.batch_size}). Received: {config.hacks.replay_size}")
    if config.hacks.adaptive_augment and config.hacks.diff_augment:
        problems.append("hacks.adaptive_augment: applies hack 20's operations with an adaptive probability, and "
                        "hacks.diff_augment applies them always; turn one off. Received: true")
    if config.hacks.adaptive_augment and config.hacks.ada_kimg <= 0:
        problems.append("hacks.ada_kimg: expected a number of thousands of images above 0. "
                        f"Received: {config.hacks.ada_kimg}")
    size = config.model.image_size
    if size % 2:
        problems.append("model.image_size: expected an even size (G doubles its base at least once). "
                        f"Received: {size}")
    return problems


def _suggest(word: str, candidates: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest candidate, or ''."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _suggest_key(key: str, section: str) -> str:
    """Suggest a key of this section, or the full path where the key belongs to another section."""
    local = _suggest(key, (f.name for f in dataclasses.fields(SECTIONS[section])))
    if local:
        return local
    for other, cls in SECTIONS.items():
        if key in {f.name for f in dataclasses.fields(cls)}:
            return f"; did you mean '{other}.{key}'?"
    return ""


def show_value(value: Any) -> str:
    """A short, readable rendering of a user's value for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_dict(config: Config) -> dict:
    """The config as plain YAML-ready data (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        return value
    return plain(dataclasses.asdict(config))


def to_yaml(config: Config) -> str:
    """The fully resolved config as YAML text, in section and field order."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


def replace_value(config: Config, path: str, value: Any) -> Config:
    """A copy of `config` with the one value at `SECTION.KEY` replaced (unchecked: for values the code sets)."""
    section, key = path.split(".")
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{key: value})})


# The values that fix the networks' layers and weight shapes: a checkpoint only loads into the same architecture.
ARCHITECTURE = (
    "model.image_size", "model.channels", "model.latent_dim", "model.g_filters", "model.d_filters",
    "model.max_filters", "model.kernel_size", "model.g_activation", "hacks.strided_conv", "hacks.transposed_conv",
    "hacks.leaky_relu", "hacks.batch_norm", "hacks.scale_images", "hacks.minibatch_std",
    "hacks.spectral_norm", "hacks.g_dropout",
)
# ... and with hack 21 on (left out when off, so checkpoints written before it keep their hash).
CONDITIONAL_ARCHITECTURE = ("hacks.class_conditional", "hacks.conditioning", "hacks.g_conditioning")


def flatten(config: Config) -> dict[str, Any]:
    """{"section.key": value} for every value of the config."""
    return {f"{section}.{key}": value for section, values in to_dict(config).items() for key, value in values.items()}


def differences(old: Config, new: Config, *, ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) for every value that differs, in config order."""
    before, after = flatten(old), flatten(new)
    return [(path, before[path], after[path]) for path in before
            if path not in ignore and before[path] != after[path]]
