"""The report of a tuning study, from whatever trials have finished so far:

    report.md     the study, the best trial's values, the top trials, the parameters' importances, the plots, and
                  the confirmation on fresh seeds when `--confirm` has run
    trials.csv    one row per trial: its state, objective (per seed too), values, where it was pruned, its time,
                  and the score each --constraint bounds
    best.yaml     the best trial's config in full, ready for `dcgan train --config`
    history.png, importances.png, slice.png, parallel.png, intermediate.png   drawn by Optuna's matplotlib plots
    samples.png   each completed trial's final grid (its first seed), best first
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from dcgan_cli import config as config_module
from dcgan_cli.ablate import report as ablate_report
from dcgan_cli.ablate import study as ablate_study
from dcgan_cli.ablate.compare import CONFIDENCE, TAIL, Effect
from dcgan_cli.evaluate.features import PRIMARY, SCORE_NAMES
from dcgan_cli.files import write_atomically
from dcgan_cli.tune.space import word
from dcgan_cli.tune.study import CONFIRM, START_ATTR, Tuning, best_config, trial_result

TOP = 5
PLOTS = ("history", "importances", "slice", "parallel", "intermediate")
SHOWN = 8  # the slice and parallel-coordinate plots show the most important keys, at most this many
STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running or interrupted",
          "WAITING": "waiting"}
OBJECTIVE_WORDS = {"final": "the final generator's", "best": "the best training-time",
                   "tail": f"the mean of the last {TAIL} checkpoints'"}


@dataclass
class TrialRow:
    number: int
    state: str
    value: float | None
    values: dict  # the drawn config values
    result: dict | None  # result.json, where the trial's directory is on this machine
    directory: Path
    seconds: float | None
    note: str = ""  # why it failed or was refused; the --start-from config it began as

    def pruned_at(self) -> int | None:
        if self.state != "pruned" or not self.result:
            return None
        return self.result["runs"][-1].get("step")


@dataclass
class Confirmation:
    """The best against the base on fresh seeds (`--confirm`), as tuned or with `--set` changes on both."""

    changes: str  # what the confirmation changed in the study's base besides the seeds ("" for none)
    seeds: list[int]
    base: float
    tuned: float
    effect: Effect  # tuned - base, paired by seed

    @property
    def share(self) -> float:
        return -self.effect.difference / self.base if self.base else math.nan


def collect(tuning: Tuning, study) -> list[TrialRow]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        directory = tuning.trial_directory(trial.number)
        refused = trial.user_attrs.get("refused")
        state = "refused" if refused else STATES.get(trial.state.name, trial.state.name.lower())
        result = trial_result(directory)
        if state == "complete" and any(value > 0 for value in trial.constraints.values()):
            state = "infeasible"  # complete, but it breaks a --constraint: listed, never the best
        seconds = result.get("seconds") if result else (
            trial.duration.total_seconds() if trial.duration else None)
        started = trial.user_attrs.get(START_ATTR)
        note = "; ".join(part for part in (refused or (result or {}).get("message", ""),
                                           started and f"started from {started}") if part)
        rows.append(TrialRow(trial.number, state, trial.value if state in ("complete", "infeasible") else None,
                             tuning.space.values(trial.params), result, directory, seconds, note))
    return rows


def best(rows: list[TrialRow]) -> TrialRow | None:
    done = [row for row in rows if row.state == "complete"]
    return min(done, key=lambda row: row.value) if done else None


def confirmations(tuning: Tuning) -> list[Confirmation]:
    """Each confirmation study's comparison (D/confirm, then D/confirm-KEY=VALUE), once a seed has finished for
    both configs."""
    found = []
    for root in sorted(tuning.root.glob(f"{CONFIRM}*/{ablate_study.PLAN}")):
        confirm = ablate_report.collect(ablate_study.load(root.parent))
        by_name = {v.name: v for v in confirm.variants}
        base, tuned = by_name["base"].tails(), by_name["tuned"].tails()
        seeds = sorted(set(base) & set(tuned))
        if seeds:
            changes = "; ".join(f"{path} {word(new)}" for path, _, new in config_module.differences(
                tuning.base, confirm.study.base, ignore=("train.seed",)))
            found.append(Confirmation(changes, [confirm.study.base.train.seed + k for k in seeds],
                                      float(np.mean([base[k] for k in seeds])),
                                      float(np.mean([tuned[k] for k in seeds])), confirm.effects["tuned"]))
    return found


def write(tuning: Tuning, study) -> tuple[list[TrialRow], list[str]]:
    """Write every file of the report; return the rows and the report's lines on the best trial."""
    rows = collect(tuning, study)
    top = best(rows)
    if top is not None:
        cfg = config_module.replace_value(best_config(tuning, top.values), "output.run_dir", None)
        write_atomically(tuning.root / "best.yaml", lambda file: file.write(
            (f"# dcgan tune: trial {top.number} of {tuning.root}, objective {top.value:.4g}\n"
             + config_module.to_yaml(cfg)).encode()))
    _write_csv(tuning, rows)
    importances = _importances(study)
    shown = _shown(tuning, importances)
    drawn = _plots(tuning, study, rows, shown)
    _samples(tuning, rows)
    confirmed = confirmations(tuning)
    summary = _summary(tuning, rows, top, confirmed)
    text = "\n".join(_markdown(tuning, rows, top, drawn, confirmed, summary, importances, shown))
    write_atomically(tuning.root / "report.md", lambda file: file.write(text.encode()))
    return rows, summary


def _metric(tuning: Tuning) -> str:
    return SCORE_NAMES[PRIMARY[tuning.evaluation["features"]]][1]


def _summary(tuning: Tuning, rows: list[TrialRow], top: TrialRow | None,
             confirmed: list[Confirmation]) -> list[str]:
    metric = _metric(tuning)
    counts = {state: sum(row.state == state for row in rows) for state in dict.fromkeys(row.state for row in rows)}
    lines = [f"Trials: {len(rows)} ({', '.join(f'{n} {state}' for state, n in counts.items())})."]
    if top is None:
        return lines + ["No trial has completed yet."]
    lines.append(f"Best: trial {top.number}, {metric} {top.value:.3f}: "
                 + "; ".join(f"{path} {word(value)}" for path, value in top.values.items()) + ".")
    for confirmation in confirmed:
        effect = confirmation.effect
        interval = (f" [{CONFIDENCE:.0%} CI {effect.low:+.3f}, {effect.high:+.3f}]" if math.isfinite(effect.low)
                    else "")
        where = (f"on fresh seeds (train.seed {', '.join(map(str, confirmation.seeds))}"
                 + (f"; both with {confirmation.changes}" if confirmation.changes else "") + ")")
        scores = (f"the tuned config's {metric} (last {TAIL}) {confirmation.tuned:.3f} against the base's "
                  f"{confirmation.base:.3f}, {effect.difference:+.3f}{interval}")
        if effect.verdict == "helps":
            lines.append(f"Confirmed {where}: {scores} ({confirmation.share:.0%} lower).")
        else:
            lines.append(f"Not confirmed {where}: {scores}: {effect.verdict}; it does not beat the base.")
    return lines


def _markdown(tuning: Tuning, rows: list[TrialRow], top: TrialRow | None, drawn: dict[str, str],
              confirmed: list[Confirmation], summary: list[str], importances: dict[str, float],
              shown: list[str]) -> list[str]:
    base, metric = tuning.base, _metric(tuning)
    seconds = sum(row.seconds or 0 for row in rows)
    lines = [
        f"# Tuning: {len(tuning.space.params)} parameters, {len(rows)} trials",
        "",
        f"- Base: data {base.data.name}, {base.model.image_size}x{base.model.image_size}, {base.train.steps} steps "
        f"of batch {base.train.batch_size}; each trial trains {tuning.seeds} seed(s), train.seed "
        f"{base.train.seed}..{base.train.seed + tuning.seeds - 1}.",
        f"- Objective (lower is better): {OBJECTIVE_WORDS[tuning.objective]} {metric} in the "
        f"{tuning.evaluation['features']} features ({tuning.evaluation['count']:,} images for the final score"
        f"{', output.eval_samples for the training-time ones' if tuning.objective != 'final' else ''}), "
        "averaged over the seeds.",
        f"- Sampler {tuning.sampler}, pruner {tuning.pruner} on the training-time scores (every "
        f"{base.output.eval_every} steps); storage {tuning.storage or 'journal.log in this directory'}, study "
        f"{tuning.name!r}. Compute so far: {seconds / 60:.1f} min.",
        *([f"- Constraints, on the mean over the seeds of each run's final score: "
           f"{'; '.join(tuning.constraint_texts())}. A trial that breaks one is infeasible: listed below, "
           "never the best."] if tuning.constraints else []),
        "",
        "| parameter | searched |",
        "|---|---|",
        *[f"| {param.path} | {param.describe()} |" for param in tuning.space.params],
        "",
        "## Result",
        "",
        *[f"- {line}" for line in summary],
    ]
    if top is not None:
        lines += ["", "`best.yaml` holds the best trial's config in full: `dcgan train --config "
                  f"{tuning.root / 'best.yaml'}`.", "", f"## Top {TOP} trials", ""]
        lines += _top_table(tuning, rows)
    if any(row.state == "infeasible" for row in rows):
        lines += ["", "## Infeasible trials", ""] + _infeasible_table(tuning, rows)
    if importances:
        lines += ["", "## Parameter importances (fANOVA)", ""]
        lines += [f"- {path}: {share:.2f}" for path, share in importances.items()]
    if not confirmed and top is not None:
        lines += ["", f"Not confirmed yet: `dcgan tune --confirm {tuning.root} --seeds 3` retrains the best and the "
                  "base on fresh seeds."]
    lines += ["", "## Plots", ""]
    if len(shown) < len(tuning.space.params):
        lines += [f"The slice and parallel-coordinate plots show the {len(shown)} most important keys.", ""]
    for name in PLOTS:
        note = drawn.get(name)
        lines.append(f"![{name}]({name}.png)" if note == "" else f"- {name}: not drawn ({note})")
    lines += ["", "![final samples](samples.png)", ""]
    return lines


def _top_table(tuning: Tuning, rows: list[TrialRow]) -> list[str]:
    paths = [param.path for param in tuning.space.params]
    lines = [f"| trial | {_metric(tuning)} | {' | '.join(paths)} |", "|---|---|" + "---|" * len(paths)]
    for row in sorted((r for r in rows if r.state == "complete"), key=lambda r: r.value)[:TOP]:
        lines.append(f"| {row.number} | {row.value:.3f} | "
                     + " | ".join(word(row.values[path]) if path in row.values else "" for path in paths) + " |")
    return lines


def _infeasible_table(tuning: Tuning, rows: list[TrialRow]) -> list[str]:
    """The trials that completed but broke a constraint: their objective and each bounded score."""
    texts = tuning.constraint_texts()
    lines = [f"| trial | {_metric(tuning)} | {' | '.join(texts)} |", "|---|---|" + "---|" * len(texts)]
    for row in sorted((r for r in rows if r.state == "infeasible"), key=lambda r: r.value):
        found = _bounded(row)
        lines.append(f"| {row.number} | {row.value:.3f} | "
                     + " | ".join(f"{found[text]:.3f}" if text in found else "" for text in texts) + " |")
    return lines


def _bounded(row: TrialRow) -> dict[str, float]:
    """{constraint: the trial's value of its score} from result.json, where the trial has finished here."""
    return {item["constraint"]: item["value"] for item in (row.result or {}).get("constraints", [])}


def _evaluator():
    """fANOVA with a fixed seed: the report's numbers and its plot come from the same fit, the same each time."""
    import optuna

    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def _importances(study) -> dict[str, float]:
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, evaluator=_evaluator())
    except (ValueError, RuntimeError):  # fewer than two completed trials, or nothing varied
        return {}


def _write_csv(tuning: Tuning, rows: list[TrialRow]) -> None:
    paths = [param.path for param in tuning.space.params]
    texts = tuning.constraint_texts()
    columns = ["trial", "state", "value", *[f"seed{k}" for k in range(tuning.seeds)], *paths, *texts, "pruned_at",
               "seconds", "note", "directory"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        runs = (row.result or {}).get("runs", [])
        record = {"trial": row.number, "state": row.state, "value": row.value, "pruned_at": row.pruned_at(),
                  "seconds": row.seconds, "note": row.note, "directory": row.directory.as_posix(),
                  **{f"seed{run['seed']}": run.get("objective") for run in runs},
                  **{path: word(value) for path, value in row.values.items()}, **_bounded(row)}
        writer.writerow({key: "" if record.get(key) is None else record[key] for key in columns})
    write_atomically(tuning.root / "trials.csv", lambda file: file.write(buffer.getvalue().encode()))


def _shown(tuning: Tuning, importances: dict[str, float]) -> list[str]:
    """The keys of the slice and parallel plots: all of them, or beyond SHOWN keys the most important ones (forty
    side by side were unreadable)."""
    if len(tuning.space.params) > SHOWN and importances:
        return list(importances)[:SHOWN]
    return [param.path for param in tuning.space.params]


def _plots(tuning: Tuning, study, rows: list[TrialRow], shown: list[str]) -> dict[str, str]:
    """Optuna's plots as PNGs, the slice and parallel ones over the `shown` keys; {name: "" when drawn, else why
    not}."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    draw = {"history": optuna_plots.plot_optimization_history,
            "importances": partial(optuna_plots.plot_param_importances, evaluator=_evaluator()),
            "slice": partial(optuna_plots.plot_slice, params=shown),
            "parallel": partial(optuna_plots.plot_parallel_coordinate, params=shown),
            "intermediate": optuna_plots.plot_intermediate_values}
    complete = sum(row.state == "complete" for row in rows)
    drawn = {}
    for name in PLOTS:
        needed = 2 if name in ("importances", "parallel") else 1
        if complete < needed:
            drawn[name] = f"needs {needed} completed trial{'s' if needed > 1 else ''}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw[name](study)
        except (ValueError, RuntimeError) as error:
            drawn[name] = str(error).splitlines()[0] if str(error) else error.__class__.__name__
            continue
        figure = np.ravel(axes)[0].figure
        _fit(figure, name, params=len(shown if name in ("slice", "parallel") else tuning.space.params))
        ablate_report.save_figure(figure, tuning.root / f"{name}.png")
        plt.close(figure)
        drawn[name] = ""
    return drawn


def _fit(figure, name: str, *, params: int) -> None:
    """Room for every parameter's axis and its labels (ranges chosen from a list are long)."""
    width, height = figure.get_size_inches()
    if name == "slice":
        for axis in figure.axes:
            for label in axis.get_xticklabels():
                label.set_rotation(25)
                label.set_horizontalalignment("right")
    if name == "parallel":
        width = max(width, 2.4 * (params + 1) + 1.5)
    if name == "importances":
        height = max(height, 0.3 * params + 1.5)  # a bar and its label each; 40 keys overlapped at the default
    figure.set_size_inches(max(width, 8), max(height, 5))


def _samples(tuning: Tuning, rows: list[TrialRow]) -> None:
    metric = _metric(tuning)
    grids = []
    for row in sorted((r for r in rows if r.state == "complete" and r.result), key=lambda r: r.value):
        first = row.result["runs"][0]
        if first.get("grid"):
            grids.append((f"trial {row.number}: {metric} {row.value:.3f}",
                          row.directory / first["directory"] / first["grid"]))
    ablate_report.grid_sheet(grids, tuning.root / "samples.png", columns=6)
