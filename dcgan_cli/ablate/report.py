"""The report of a study, from whatever runs have finished: results.csv (one row per run), report.md (each
variant's mean +- std over seeds, its difference from the reference with a 95% confidence interval and a verdict),
report.png (the scores as bars with error bars, sorted by effect) and samples.png (each variant's final grid).

Each run is scored by the mean of its last few scores (compare.py), and each variant is compared with the
reference paired by seed; a partial study is reported honestly: fewer seeds, wider intervals. A factorial's main
effects pool runs of different combinations, so they use Welch's t-test.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dcgan_cli.ablate.compare import CONFIDENCE, TAIL, Effect, paired, spread, tail, training_series, welch
from dcgan_cli.ablate.design import FACTORS, change_text
from dcgan_cli.ablate.study import Study, finished
from dcgan_cli.config import flatten
from dcgan_cli.evaluate.features import PRIMARY, SCORE_NAMES
from dcgan_cli.files import write_atomically
from dcgan_cli.training.monitor import METRICS

SCORES = ("frechet_distance", "modes_covered", "classes", "class_kl", "mean_confidence", "fid", "kid", "ndb", "bins",
          "ndb_k", "bins_covered", "precision", "recall")
FIRST_COLUMN = {"domain": ("modes_covered", "modes", 1), "rotation": ("bins_covered", "bins covered", 1),
                "fid": ("kid", "KID", 4)}  # the table's column after the verdict: key, heading, decimals
SPACE_WORDS = {"domain": "the domain classifier's features", "rotation": "the rotation network's features (no labels)",
               "fid": "the standard FID network's features"}
CSV_COLUMNS = ("variant", "seed", "train_seed", "status", "changes", "features", "tail_score", "tail_spread",
               *SCORES, "diversity", "collapsed", *METRICS, "step", "train_seconds", "directory")


@dataclass
class VariantSummary:
    """A variant's finished runs."""

    name: str
    changes: str
    planned: int
    results: list[dict] = field(default_factory=list)

    @property
    def scored(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "done"]

    def values(self, key: str) -> np.ndarray:
        return np.array([r["scores"][key] for r in self.scored if key in r["scores"]], dtype=np.float64)

    def tails(self) -> dict[int, float]:
        """Each scored run's score over its last checkpoints (compare.tail), by seed."""
        return {r["seed"]: float(np.mean(tail(r["series"], steps=r["step"]))) for r in self.scored}

    def spread(self) -> float:
        """The mean over runs of the spread of their last checkpoints' scores."""
        spreads = [spread(r["series"], steps=r["step"]) for r in self.scored]
        spreads = [value for value in spreads if math.isfinite(value)]
        return float(np.mean(spreads)) if spreads else math.nan

    def diverged(self) -> int:
        return sum(r["status"] == "diverged" for r in self.results)

    def collapsed(self) -> int:
        return sum(bool(r.get("collapsed")) for r in self.results)


@dataclass
class Report:
    study: Study
    features: str | None
    variants: list[VariantSummary]
    effects: dict[str, Effect]
    runs: list[dict]  # one row per planned run
    main_effects: dict[str, Effect] = field(default_factory=dict)  # factorial: "factor: on -> off" -> its effect

    @property
    def metric(self) -> tuple[str, str]:
        """The primary score's key and short name."""
        key = PRIMARY[self.features or "domain"]
        return key, SCORE_NAMES[key][1]

    def finished(self) -> int:
        return sum(len(v.results) for v in self.variants)

    def ordered(self) -> list[VariantSummary]:
        """The reference first, then by effect (most harmful change first), variants without one last."""
        def key(v: VariantSummary) -> tuple:
            if v.name == self.study.reference:
                return (0, 0.0)
            effect = self.effects.get(v.name)
            return (1, -effect.difference) if effect and math.isfinite(effect.difference) else (2, 0.0)
        return sorted(self.variants, key=key)


def collect(study: Study) -> Report:
    """Read every finished run's result.json."""
    reference_cfg = study.variant(study.reference).apply(study.base)
    summaries = {v.name: VariantSummary(v.name, change_text(reference_cfg, v.apply(study.base)), study.seeds)
                 for v in study.variants}
    rows, features = [], None
    for run in study.runs():
        result = finished(run)
        row = {"variant": run.variant, "seed": run.seed, "directory": str(run.directory), "status": "not finished"}
        if result is not None:
            if result["status"] == "done" and "series" not in result:  # written before runs kept their series
                result["series"] = _older_series(result, run.directory,
                                                 rescored=bool(study.evaluation.get("overrides")))
            summaries[run.variant].results.append({**result, "directory": run.directory})
            features = features or result.get("features")
            row.update({key: result.get(key) for key in ("train_seed", "status", "changes", "features", "diversity",
                                                         "collapsed", "step", "train_seconds")})
            row.update({key: value for key, value in result.get("scores", {}).items() if key in SCORES})
            row.update(result.get("losses", {}))
            if result["status"] == "done":
                row.update(tail_score=float(np.mean(tail(result["series"], steps=result["step"]))),
                           tail_spread=spread(result["series"], steps=result["step"]))
        rows.append(row)
    report = Report(study=study, features=features, variants=list(summaries.values()), effects={}, runs=rows)
    reference = summaries[study.reference]
    for summary in report.variants:
        if summary.name != study.reference:
            report.effects[summary.name] = _effect(summary, reference)
    if study.design == "factorial":
        report.main_effects = _main_effects(report)
    return report


def _older_series(result: dict, directory: Path, *, rescored: bool) -> list[list[float]]:
    """A result written before the worker kept its series: the run's training-time scores in the study's space
    (unless the study scored against other data than the runs trained on), else its final score alone."""
    key = PRIMARY[result["features"]]
    found = [] if rescored else training_series(directory, features=result["features"], key=key)
    return found or [[result["step"], result["scores"][key]]]


def _main_effects(report: Report) -> dict[str, Effect]:
    """Factorial designs: each factor's main effect, over every combination of the others: the runs with it
    switched from the base against the runs with it as in the base."""
    study, values = report.study, flatten(report.study.base)
    effects = {}
    for name in study.factors:
        factor = FACTORS[name]
        switched, kept = VariantSummary(name, "", 0), VariantSummary(name, "", 0)
        flipped = None
        for summary in report.variants:
            value = dict(study.variant(summary.name).changes).get(factor.path, values[factor.path])
            if value != values[factor.path]:
                flipped = value
            (switched if value != values[factor.path] else kept).results.extend(summary.results)
        if flipped is not None:
            label = f"{factor.path}: {factor.word(values[factor.path])} -> {factor.word(flipped)}"
            effects[label] = _effect(switched, kept, pair=False)
    return effects


def _effect(variant: VariantSummary, reference: VariantSummary, *, pair: bool = True) -> Effect:
    """The variant's tail score against the reference's, paired by seed (or Welch's t-test for pooled runs of
    different combinations); lower scores are better."""
    if variant.results and not variant.scored:
        return Effect(math.inf, math.inf, math.inf, "hurts (every run diverged)")
    a, b = variant.tails(), reference.tails()
    if pair:
        return paired(a, b)
    return welch(np.array(list(a.values())), np.array(list(b.values())))


def _mean_std(values: np.ndarray, digits: int) -> str:
    if len(values) == 0:
        return "-"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def _digits(report: Report) -> int:
    return 2 if report.metric[0] == "frechet_distance" else 4


def table(report: Report) -> list[str]:
    """The per-variant table in Markdown."""
    name, short = report.metric
    digits = _digits(report)
    first, heading, decimals = FIRST_COLUMN[report.features or "domain"]
    extra = (heading, "NDB", "precision", "recall")
    lines = [f"| variant | factors changed | runs | {short} (last {TAIL}) mean ± std | checkpoint spread | "
             f"Δ {short} vs {report.study.reference}, paired [{CONFIDENCE:.0%} CI] | verdict | final {short} | "
             f"{' | '.join(extra)} | collapsed |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(extra) + "---|"]
    for v in report.ordered():
        effect = report.effects.get(v.name)
        if v.name == report.study.reference:
            delta, verdict = "reference", ""
        elif effect is None or not math.isfinite(effect.difference):
            delta, verdict = "-", effect.verdict if effect else ""
        elif math.isfinite(effect.low):
            delta = f"{effect.difference:+.{digits}f} [{effect.low:+.{digits}f}, {effect.high:+.{digits}f}]"
            verdict = effect.verdict
        else:
            delta, verdict = f"{effect.difference:+.{digits}f}", effect.verdict
        cells = [_mean_std(v.values(first), decimals), _mean_std(v.values("ndb"), 1),
                 _mean_std(v.values("precision"), 3), _mean_std(v.values("recall"), 3)]
        runs = f"{len(v.results)}/{v.planned}" + (f" ({v.diverged()} diverged)" if v.diverged() else "")
        changes = v.changes.replace("|", "/")
        spread_text = f"{v.spread():.{digits}f}" if math.isfinite(v.spread()) else "-"
        lines.append(f"| {v.name} | {changes} | {runs} | {_mean_std(_tail_values(v), digits)} | {spread_text} | "
                     f"{delta} | {verdict} | {_mean_std(v.values(name), digits)} | {' | '.join(cells)} | "
                     f"{v.collapsed()}/{len(v.results)} |")
    return lines


def _tail_values(v: VariantSummary) -> np.ndarray:
    return np.array(list(v.tails().values()), dtype=np.float64)


def findings(report: Report) -> list[str]:
    """What mattered, in words: each variant whose change helps or hurts, then those within noise."""
    name, short = report.metric
    digits = _digits(report)
    reference = _tail_values(next(v for v in report.variants if v.name == report.study.reference))
    said, quiet = [], []
    for v in report.ordered():
        effect = report.effects.get(v.name)
        if effect is None:
            continue
        if effect.verdict in ("helps", "hurts"):
            move = "lowers" if effect.difference < 0 else "raises"
            share = f" ({abs(effect.difference) / reference.mean():.0%})" if len(reference) and reference.mean() else ""
            said.append(f"- **{v.name}** ({v.changes}) {move} the {short} by {abs(effect.difference):.{digits}f}"
                        f"{share} [{CONFIDENCE:.0%} CI {effect.low:+.{digits}f}, {effect.high:+.{digits}f}]: the "
                        f"change {effect.verdict}.")
        elif effect.verdict.startswith("hurts"):
            said.append(f"- **{v.name}** ({v.changes}): {effect.verdict}.")
        else:
            quiet.append(v.name)
    if quiet:
        said.append(f"- Within noise or not yet testable: {', '.join(quiet)}.")
    return said


def markdown(report: Report) -> str:
    study = report.study
    name, short = report.metric
    evaluation = study.evaluation
    space = SPACE_WORDS.get(report.features or "", "the default feature space")
    seconds = sum(r.get("train_seconds") or 0 for r in report.runs if r["status"] != "not finished")
    chance = len(report.effects) * (1 - CONFIDENCE)
    head = [
        f"# Ablation: {study.design}, {len(study.variants)} variants x {study.seeds} seeds",
        "",
        f"- Factors: {', '.join(study.factors)}; every variant is compared with **{study.reference}**.",
        f"- Base: data {study.base.data.name}, {study.base.model.image_size}x{study.base.model.image_size}, "
        f"{study.base.train.steps} steps of batch {study.base.train.batch_size}, train.loop "
        f"{study.base.train.loop}; seed k trains with train.seed {study.base.train.seed} + k.",
        f"- Score: {short} ({name}, lower is better) in {space}, averaged over each run's last {TAIL} scores from "
        "half-way on: its training-time scores (output.eval_every) where they are in this space, else its kept "
        f"checkpoints scored with {evaluation['count']:,} images each. The checkpoint spread is the standard "
        "deviation of those scores within a run (the mean over runs): how much one checkpoint's score wanders. "
        f"The final {short} is of {evaluation['count']:,} images of each run's final generator, as `dcgan "
        "evaluate` gives it; NDB (of its k-means bins of the real features, how many "
        "hold a share of the images that differs from the real one), precision and recall beside it. A run counts "
        "as collapsed when its images' mean pairwise distance falls below half the real images' or when it covers "
        "at most half of the classes (with labels) or of the NDB bins (without).",
        "- Verdict: the variants share their seeds, so each is compared with the reference seed by seed (a t "
        f"interval on the per-seed differences); the change **helps** or **hurts** when the {CONFIDENCE:.0%} "
        "confidence interval of the difference excludes 0, else it is **within noise**. Each interval is for one "
        f"comparison: of {len(report.effects)} changes that did nothing, about {chance:.1f} would still get a "
        "verdict by chance, so one whose interval ends near 0 deserves more seeds (--seeds).",
        f"- Runs finished: {report.finished()} of {len(report.runs)} (compute {seconds / 60:.1f} min).",
        "",
    ]
    main = []
    if report.main_effects:
        digits = _digits(report)
        main = ["", "## Main effects", "", "Each factor switched from the base against as in the base, over every "
                "combination of the others (all their runs pooled; Welch's t-test):", ""]
        for label, effect in report.main_effects.items():
            interval = (f" [{CONFIDENCE:.0%} CI {effect.low:+.{digits}f}, {effect.high:+.{digits}f}]"
                        if math.isfinite(effect.low) else "")
            main.append(f"- {label}: Δ {short} {effect.difference:+.{digits}f}{interval}: {effect.verdict}")
    return "\n".join(head + table(report) + ["", "## What the runs say", ""] + findings(report) + main +
                     ["", "![scores](report.png)", "", "![final samples](samples.png)", ""])


def write_csv(report: Report, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in report.runs:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in CSV_COLUMNS})
    write_atomically(path, lambda file: file.write(buffer.getvalue().encode()))


COLOURS = {"helps": "#2a9d4b", "hurts": "#d1495b", "reference": "#555555"}


def chart(report: Report, path: Path) -> None:
    """Horizontal bars of each variant's mean primary score and recall, error bars one std over seeds, sorted by
    effect, coloured by verdict."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    name, short = report.metric
    shown = [v for v in report.ordered() if len(v.values(name))]
    series = {name: _tail_values, "recall": lambda v: v.values("recall")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * max(len(shown), 2) + 1.6), sharey=True,
                             gridspec_kw={"width_ratios": [2, 1]})
    labels = [v.name for v in shown]
    colours = [COLOURS["reference"] if v.name == report.study.reference else
               COLOURS.get(report.effects[v.name].verdict, "#9aa5b1") for v in shown]
    for axis, key, title in ((axes[0], name, f"{short} (lower is better)"), (axes[1], "recall", "recall")):
        means = [series[key](v).mean() for v in shown]
        errors = [series[key](v).std(ddof=1) if len(series[key](v)) > 1 else 0.0 for v in shown]
        axis.barh(range(len(shown)), means, xerr=errors, color=colours, capsize=3)
        reference = next((v for v in shown if v.name == report.study.reference), None)
        if reference is not None:
            axis.axvline(series[key](reference).mean(), color=COLOURS["reference"], linestyle="--", linewidth=1)
        axis.set_title(title)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(shown)), labels)
    axes[0].invert_yaxis()
    fig.suptitle(f"{report.study.design}: mean ± std over seeds; green helps, red hurts, grey within noise")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def samples(report: Report, path: Path) -> None:
    """Each variant's final sample grid (its lowest finished seed), labelled, side by side."""
    grids = []
    for v in report.ordered():
        done = sorted((r for r in v.scored if r.get("grid")), key=lambda r: r["seed"])
        if done:
            first = done[0]
            score = first["scores"].get(report.metric[0])
            grids.append((f"{v.name}\nseed {first['seed']}: {report.metric[1]} {score:.{_digits(report)}f}",
                          first["directory"] / first["grid"]))
    grid_sheet(grids, path)


def grid_sheet(grids: list[tuple[str, Path]], path: Path, *, columns: int = 5) -> None:
    """Sample grids side by side, each under its title; a grid whose file is gone (a study restored from its result
    files, without its run directories' images) is left out, and nothing is written without one."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from PIL import Image

    grids = [(title, image_path) for title, image_path in grids if Path(image_path).is_file()]
    if not grids:
        return
    columns = min(columns, len(grids))
    rows = math.ceil(len(grids) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (title, image_path) in zip(axes.flat, grids):
        with Image.open(image_path) as image:
            axis.imshow(np.asarray(image.convert("RGB")))
        axis.set_title(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def save_figure(fig, path: Path) -> None:
    """A PNG of the figure, cropped to what it draws (labels that reach past the axes' area included)."""
    write_atomically(path, lambda file: fig.savefig(file, format="png", dpi=110, bbox_inches="tight"))


def write(study: Study) -> Report:
    """Write results.csv, report.md, report.png and samples.png into the study's directory."""
    report = collect(study)
    write_csv(report, study.root / "results.csv")
    write_atomically(study.root / "report.md", lambda file: file.write(markdown(report).encode()))
    if report.finished():
        chart(report, study.root / "report.png")
        samples(report, study.root / "samples.png")
    return report
