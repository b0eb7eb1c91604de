"""The config's schema: one frozen dataclass per YAML section, each field with its default and the checks the
loader applies to a user's value (setting), and the sections of a Config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def setting(default: Any, *, choices: tuple | None = None, low: float | None = None,
            high: float | None = None, high_open: bool = False, retired: dict[str, str] | None = None) -> Any:
    """A dataclass field with its default and the checks the loader applies to a user's value (`retired`: values
    an earlier version took, each with what replaced it)."""
    return field(default=default, metadata={"choices": choices, "low": low, "high": high, "high_open": high_open,
                                            "retired": retired or {}})


DATASETS = ("digits", "folder", "mnist", "fashion_mnist", "cifar10", "npz", "npy")
FEATURE_SPACES = ("domain", "rotation", "fid")  # what scores can be measured in (evaluate/features.py)
RETIRED_SPACES = {"inception": "Keras' InceptionV3 features were retired for the standard network of published "
                               "FIDs: use fid (pip install \"dcgan-cli[fid]\")"}
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
    cache_dir: str | None = setting(None)  # decoded-folder cache; null = $XDG_CACHE_HOME/dcgan-cli or
    #                                        ~/.cache/dcgan-cli


@dataclass(frozen=True)
class ModelConfig:
    image_size: int = setting(16, low=8, high=1024)  # side of the square images; G's base side is this halved
    #                                                  while even and > 4
    channels: int = setting(1, choices=(1, 3))  # 1 = grey, 3 = RGB
    latent_dim: int = setting(100, low=1)  # length of G's input vector z
    g_filters: int = setting(64, low=1)  # G's filters in its last hidden block; doubled per block toward the base
    d_filters: int = setting(64, low=1)  # D's filters in its first block; doubled per block toward the base
    max_filters: int = setting(512, low=1)  # cap on the doubled filter counts of both networks
    base_size: int = setting(4, low=2)  # the depth: G's base side, and D's last, is image_size halved while even and
    #                                     above this (64 -> 4: four blocks; 8: three blocks, each network shallower)
    kernel_size: int = setting(4, low=1)  # side of every convolution kernel (DCGAN reference 4, paper 5)
    g_activation: str = setting("relu", choices=("relu", "leaky_relu"))  # G's hidden activation (paper: relu)
    bn_momentum: float = setting(0.9, low=0.0, high=1.0, high_open=True)  # BatchNorm moving-average momentum
    #                                                                       (Keras convention; PyTorch's 0.1)
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
    mixed_precision: str = setting("off", choices=("off", "auto", "bfloat16", "float16"))  # compute dtype of the
    #                                     layers; variables, losses and D's raw score stay float32; float16 adds loss
    #                                     scaling; auto = bfloat16 where the device computes it natively, else off
    device_data_fraction: float = setting(0.25, low=0.0, high=1.0)  # keep the uint8 dataset on the device
    #                                     when it takes at most this share of its memory (RAM on a CPU), so a step
    #                                     gathers its batch there; 0 = stream each step's uint8 batch
    ema_decay: float = setting(0.0, low=0.0, high=1.0, high_open=True)  # keep an exponential moving average of
    #                                     G's weights and BN statistics, updated every step, for grids, sample,
    #                                     evaluate and export (--raw: the trained weights); 0 = off
    distribution: str = setting("off", choices=("off", "data_parallel"))  # data_parallel: split each batch over


@dataclass(frozen=True)
class OutputConfig:
    run_dir: str | None = setting(None)  # run directory; null = runs/<config file name> (made unique)
    sample_every: int = setting(500, low=1)  # write samples/step_NNNNNN.png every this many steps (and at the end)
    checkpoint_every: int = setting(1000, low=1)  # write checkpoints/step_NNNNNN/ every this many steps (and at
    #                                               the end)
    keep_checkpoints: int = setting(3, low=1)  # how many of the newest checkpoints to keep
    log_every: int = setting(50, low=1)  # append a line to metrics.jsonl every this many steps (and at the end)
    n_samples: int = setting(64, low=1)  # images in each sample grid, drawn from one fixed latent batch
    progress: bool = setting(True)  # show the progress bar
    eval_every: int = setting(0, low=0)  # score G every this many steps (and at the end) on fixed latents, keep
    #                                      the best as checkpoints/best; 0 = off
    eval_samples: int = setting(1000, low=10)  # images scored at each eval_every, from one fixed latent set
    eval_features: str = setting("auto", choices=("auto", *FEATURE_SPACES), retired=RETIRED_SPACES)  # the
    #                                      score's feature space: auto = domain where the data has class labels,
    #                                      else rotation (no labels); fid: the standard network of published FIDs
    eval_min_skill: float = setting(0.35, low=0.0, high=1.0)  # refuse domain scores when the classifier's
    #                                      held-out accuracy (its 95% lower bound) is less than this far from
    #                                      chance (0) to perfect (1); auto then scores in rotation features
    eval_min_accuracy: float = setting(0.0, low=0.0, high=1.0)  # also refuse domain scores when the classifier's
    #                                      held-out accuracy is below this; 0 = no such floor
    tensorboard: bool = setting(False)  # also log scalars and the sample grids for TensorBoard in tensorboard/


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
