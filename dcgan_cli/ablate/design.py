"""What an ablation varies: the factors (the eleven hacks and D's BatchNorm statistics in the G update, then the
stabilisers after them, hacks 12 on, and the moving average of G's weights), their "on" and "off" values, and the
variants each design makes of a base config.

A factor is refused where the base cannot vary it: switching it would change nothing (a LeakyReLU whose slope is 0
is a ReLU), so its runs would only measure noise under a misleading name.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from typing import Any, Callable

from dcgan_cli.config import Config, differences, flatten, problems_of, replace_value

DESIGNS = ("leave-one-out", "one-at-a-time", "together", "factorial")
FACTORIAL_LIMIT = 6  # factorial designs of more factors (2^7 = 128 variants and up) need --yes


class AblationError(ValueError):
    """An ablation that cannot be run as asked; the message names the factor, the option or the directory."""


@dataclass(frozen=True)
class Factor:
    """One switch an ablation can flip: its config path, its "on" (the DCGAN/ganhacks practice) and "off" values,
    and a check that says why a config cannot vary it (None when it can)."""

    name: str
    path: str
    on: Any
    off: Any
    inert: Callable[[Config], str | None] = lambda cfg: None

    def word(self, value: Any) -> str:
        """'on'/'off' for a switch, the value itself otherwise (d_bn_in_g_update: 'batch'/'moving')."""
        return ("on" if value else "off") if isinstance(self.on, bool) else str(value)

    def switched(self, value: Any) -> Any:
        """The other side of `value`: off where it is on (any value but "off": an EMA decay of 0.99 is on), else
        the factor's "on"."""
        return self.off if value != self.off else self.on


def _slope_zero(cfg: Config) -> str | None:
    return "hacks.leaky_slope is 0, so LeakyReLU is a ReLU" if cfg.hacks.leaky_slope == 0 else None


def _adam_default(cfg: Config) -> str | None:
    h = cfg.hacks
    same = h.learning_rate == 1e-3 and h.beta_1 == 0.9
    return "hacks.learning_rate 1e-3 and beta_1 0.9 are Keras' default Adam, its 'off' side" if same else None


def _hard_ranges(cfg: Config) -> str | None:
    h = cfg.hacks
    hard_real = tuple(h.real_label_range) == (1.0, 1.0)
    hard_fake = not h.smooth_fake or tuple(h.fake_label_range) == (0.0, 0.0)
    return "hacks.real_label_range is [1, 1], so smoothed labels are hard ones" if hard_real and hard_fake else None


def _no_flips(cfg: Config) -> str | None:
    return "hacks.flip_probability is 0, so no label is ever flipped" if cfg.hacks.flip_probability == 0 else None


def _no_batch_norm(cfg: Config) -> str | None:
    return "D has no BatchNorm (hacks.batch_norm is off)" if not cfg.hacks.batch_norm else None


def _same_rates(cfg: Config) -> str | None:
    h = cfg.hacks
    rate = h.learning_rate if h.adam else 1e-3
    same = h.d_learning_rate == rate and h.g_learning_rate == rate
    return "hacks.d_learning_rate and g_learning_rate equal the shared rate, its 'off' side" if same else None


def _one_d_step(cfg: Config) -> str | None:
    return "hacks.d_steps is 1, one D update per G update either way" if cfg.hacks.d_steps == 1 else None


def _noiseless(cfg: Config) -> str | None:
    return "hacks.instance_noise_std is 0, so no noise is added" if cfg.hacks.instance_noise_std == 0 else None


def _rate_zero(cfg: Config) -> str | None:
    return "hacks.g_dropout_rate is 0, so no unit is dropped" if cfg.hacks.g_dropout_rate == 0 else None


def _r1_weightless(cfg: Config) -> str | None:
    return "hacks.r1_gamma is 0, so the penalty is 0" if cfg.hacks.r1_gamma == 0 else None


def _unlabelled(cfg: Config) -> str | None:
    return "data.labels is false, so there are no classes for G and D to see" if not cfg.data.labels else None


def _nothing_replayed(cfg: Config) -> str | None:
    return "hacks.replay_fraction is 0, so no past fake is shown" if cfg.hacks.replay_fraction == 0 else None


def _lecam_weightless(cfg: Config) -> str | None:
    return "hacks.lecam_weight is 0" if cfg.hacks.lecam_weight == 0 else None


FACTORS: dict[str, Factor] = {f.name: f for f in (
    Factor("strided_conv", "hacks.strided_conv", True, False),
    Factor("transposed_conv", "hacks.transposed_conv", True, False),
    Factor("leaky_relu", "hacks.leaky_relu", True, False, _slope_zero),
    Factor("batch_norm", "hacks.batch_norm", True, False),
    Factor("gaussian_init", "hacks.gaussian_init", True, False),
    Factor("adam", "hacks.adam", True, False, _adam_default),
    Factor("scale_images", "hacks.scale_images", True, False),
    Factor("gaussian_latent", "hacks.gaussian_latent", True, False),
    Factor("separate_batches", "hacks.separate_batches", True, False),
    Factor("label_smoothing", "hacks.label_smoothing", True, False, _hard_ranges),
    Factor("noisy_labels", "hacks.noisy_labels", True, False, _no_flips),
    Factor("d_bn_in_g_update", "model.d_bn_in_g_update", "batch", "moving", _no_batch_norm),
    Factor("ttur", "hacks.ttur", True, False, _same_rates),
    Factor("train_d_more", "hacks.train_d_more", True, False, _one_d_step),
    Factor("instance_noise", "hacks.instance_noise", True, False, _noiseless),
    Factor("g_dropout", "hacks.g_dropout", True, False, _rate_zero),
    Factor("spectral_norm", "hacks.spectral_norm", True, False),
    Factor("diff_augment", "hacks.diff_augment", True, False),
    Factor("hinge_loss", "hacks.hinge_loss", True, False),
    Factor("r1_penalty", "hacks.r1_penalty", True, False, _r1_weightless),
    Factor("minibatch_std", "hacks.minibatch_std", True, False),
    Factor("class_conditional", "hacks.class_conditional", True, False, _unlabelled),
    Factor("replay", "hacks.replay", True, False, _nothing_replayed),
    Factor("adaptive_augment", "hacks.adaptive_augment", True, False),
    Factor("lecam", "hacks.lecam", True, False, _lecam_weightless),
    Factor("ema", "train.ema_decay", 0.999, 0.0),
)}
# --factors all: the eleven hacks and D's BN statistics; --factors new: the stabilisers after them (hacks 12 on) and
# the moving average of G's weights
GROUPS = {"all": tuple(FACTORS)[:12], "new": tuple(FACTORS)[12:]}


@dataclass(frozen=True)
class Variant:
    """One configuration of the study: its directory name and the (config path, value) pairs that make it from
    the base config."""

    name: str
    changes: tuple[tuple[str, Any], ...]

    def apply(self, base: Config) -> Config:
        cfg = base
        for path, value in self.changes:
            cfg = replace_value(cfg, path, value)
        return cfg

    def describe(self, base: Config) -> str:
        """What this variant changes in `base`: 'hacks.batch_norm: on -> off; ...', or 'none'."""
        return change_text(base, self.apply(base))


def change_text(before: Config, after: Config) -> str:
    """The values that differ from `before` to `after`: 'hacks.batch_norm: on -> off; ...', or 'none'."""
    return "; ".join(f"{path}: {_word(path, old)} -> {_word(path, new)}"
                     for path, old, new in differences(before, after)) or "none"


def _word(path: str, value: Any) -> str:
    factor = next((f for f in FACTORS.values() if f.path == path), None)
    return factor.word(value) if factor else str(value)


def parse_factors(text: str) -> tuple[list[Factor], bool]:
    """The factors named in --factors ('all', 'new', or names/config paths separated by commas) and whether a
    group was asked for. An unknown name is an AblationError with the closest known name."""
    if text.strip() in GROUPS:
        return [FACTORS[name] for name in GROUPS[text.strip()]], True
    by_path = {f.path: f for f in FACTORS.values()}
    chosen: list[Factor] = []
    for word in (w.strip() for w in text.split(",")):
        factor = FACTORS.get(word) or by_path.get(word)
        if factor is None:
            match = difflib.get_close_matches(word, list(FACTORS) + list(by_path), n=1, cutoff=0.6)
            hint = f"; did you mean '{match[0]}'?" if match else f"; known factors: all, new, {', '.join(FACTORS)}"
            raise AblationError(f"--factors: unknown factor{hint} Received: {word!r}")
        if factor not in chosen:
            chosen.append(factor)
    return chosen, False


def _live(factors: list[Factor], cfg: Config, *, everything: bool, where: str) -> tuple[list[Factor], list[str]]:
    """The factors that `cfg` can vary. One it cannot is an error when named, and left out with a note when it came
    from --factors all."""
    live, notes = [], []
    for factor in factors:
        reason = factor.inert(cfg)
        if reason is None:
            live.append(factor)
        elif everything:
            notes.append(f"left out {factor.name}: {reason} in {where}, so switching it changes nothing")
        else:
            raise AblationError(f"--factors: {factor.name} cannot be varied in {where}: {reason}, so switching it "
                                f"changes nothing; drop it from --factors or change the base config. "
                                f"Received: {factor.name!r}")
    return live, notes


def variants(base: Config, factors: list[Factor], *, design: str, everything: bool = False,
             allow_large: bool = False) -> tuple[list[Variant], str, list[Factor], list[str]]:
    """The variants of a design over the factors, the name of the one every other is compared with, the factors
    varied, and notes on those left out."""
    values = flatten(base)
    if design == "leave-one-out":
        live, notes = _live(factors, base, everything=everything, where="the base config")
        flipped = [(f, f.switched(values[f.path])) for f in live]
        return ([Variant("base", ())] + [Variant(f"{f.name}-{f.word(v)}", ((f.path, v),)) for f, v in flipped],
                "base", live, notes)
    if design == "one-at-a-time":
        off = tuple((f.path, f.off) for f in factors if values[f.path] != f.off)
        live, notes = _live(factors, Variant("all-off", off).apply(base), everything=everything,
                            where="the all-off config")

        def alone(f: Factor) -> Variant:
            on = ((f.path, f.on),) if values[f.path] == f.off else ()
            return Variant(f"{f.name}-only", tuple((p, v) for p, v in off if p != f.path) + on)

        return [Variant("all-off", off)] + [alone(f) for f in live], "all-off", live, notes
    if design == "together":
        live, notes = _live(factors, base, everything=everything, where="the base config")
        switched = [f for f in live if values[f.path] != f.off]
        if not switched:
            raise AblationError(f"--design together: every factor named is off in the base config already, so "
                                f"the base and all-off are the same; name the factors the base turns on. Received: "
                                f"{', '.join(f.name for f in factors)}")
        off = tuple((f.path, f.off) for f in switched)
        return [Variant("all-off", off), Variant("base", ())], "all-off", switched, notes
    if design != "factorial":
        raise AblationError(f"--design: expected one of {', '.join(DESIGNS)}. Received: {design!r}")
    if len(factors) > FACTORIAL_LIMIT and not allow_large:
        raise AblationError(f"--design factorial: {len(factors)} factors make {2 ** len(factors)} variants (times "
                            f"the seeds); name at most {FACTORIAL_LIMIT} with --factors, or pass --yes to run them "
                            f"all. Received: {len(factors)} factors")
    live, notes = _live(factors, base, everything=everything, where="the base config")
    by_path = {f.path: f for f in live}
    made, seen = [], set()
    for combination in itertools.product(*[(values[f.path], f.switched(values[f.path])) for f in live]):
        changes = tuple((f.path, v) for f, v in zip(live, combination) if v != values[f.path])
        cfg = Variant("", changes).apply(base)
        refused = problems_of(cfg)
        if refused:  # two switches that exclude each other (DiffAugment and adaptive augmentation)
            notes.append(f"left out {'+'.join(by_path[p].name for p, _ in changes)}: {refused[0]}")
            continue
        # A factor another one makes inert (D's BN statistics without BN) gives a duplicate of a variant made already.
        effective = tuple(sorted((p, v) for p, v in changes if by_path[p].inert(cfg) is None))
        if effective in seen:
            continue
        seen.add(effective)
        name = "+".join(f"{by_path[p].name}-{by_path[p].word(v)}" for p, v in changes) or "base"
        made.append(Variant(name, changes))
    return made, "base", live, notes
