"""An ablation study on disk: the plan and the runs' directories, each an ordinary training run.

    RUN/ablation.json                    the design, the factors, the variants, the seeds, how runs are scored
    RUN/base.yaml                        the resolved base config (with --set applied)
    RUN/variants/<variant>/seed<k>/      config.yaml and run.json written by the plan, then the run's own files
                                         (samples/, checkpoints/, metrics.jsonl), its log.txt and, last, result.json

A run is finished when its result.json exists, so running the same command again continues an interrupted study
where it stopped; the plan is only ever extended by more seeds, never silently changed.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcgan_cli import config as config_module
from dcgan_cli.ablate.design import AblationError, Variant
from dcgan_cli.config import Config, ConfigError, load_config
from dcgan_cli.files import write_atomically

PLAN = "ablation.json"
BASE = "base.yaml"
VARIANTS = "variants"
SPEC = "run.json"  # in each run's directory: what the worker needs besides config.yaml
RESULT = "result.json"  # in each run's directory, written last: the run is finished
LOG = "log.txt"  # in each run's directory: the worker's output
FORMAT = 1
_KIND = {"kind": "ablation", "article": "an", "version": FORMAT, "error": AblationError}  # for claim, read_plan


@dataclass(frozen=True)
class Run:
    """One variant trained with one seed (train.seed = base seed + k)."""

    variant: str
    seed: int
    directory: Path


@dataclass(frozen=True)
class Study:
    """Everything that defines an ablation; `evaluation` says how each run is scored (count, features, seed, and
    the --score-set overrides)."""

    root: Path
    design: str
    factors: tuple[str, ...]
    seeds: int
    variants: tuple[Variant, ...]
    reference: str  # the variant every other one is compared with
    base: Config
    evaluation: dict[str, Any]

    def config(self, variant: Variant, seed: int) -> Config:
        """The variant's config for seed k: its changes on the base, train.seed shifted by k, its own run
        directory, no progress bar (the study shows one over runs)."""
        cfg = variant.apply(self.base)
        cfg = config_module.replace_value(cfg, "train.seed", self.base.train.seed + seed)
        cfg = config_module.replace_value(cfg, "output.progress", False)
        return config_module.replace_value(cfg, "output.run_dir", str(self.directory(variant.name, seed)))

    def directory(self, variant: str, seed: int) -> Path:
        return self.root / VARIANTS / variant / f"seed{seed}"

    def runs(self) -> list[Run]:
        """Every run, seed-major (all variants of seed 0 first), so a partial study compares like with like."""
        return [Run(v.name, k, self.directory(v.name, k)) for k in range(self.seeds) for v in self.variants]

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def identity(self) -> dict[str, Any]:
        """What must match for a directory's study to be continued: all but the number of seeds."""
        return {"format": FORMAT, "design": self.design, "factors": list(self.factors),
                "variants": [{"name": v.name, "changes": [[p, value] for p, value in v.changes]}
                             for v in self.variants],
                "reference": self.reference, "base": config_module.to_dict(self.base),
                "evaluation": self.evaluation}


def finished(run: Run) -> dict | None:
    """The run's result, when it has finished (trained and scored, diverged, or pruned by a tuning study); None
    otherwise."""
    path = run.directory / RESULT
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") in ("done", "diverged", "pruned") else None


def extended(study: Study) -> Study:
    """The study with as many seeds as asked or as already planned in its directory, whichever is more: asking
    for fewer seeds never drops runs from a study."""
    if not (study.root / PLAN).is_file():
        return study
    saved = read_plan(study.root / PLAN, **_KIND).get("seeds", 0)
    return dataclasses.replace(study, seeds=saved) if isinstance(saved, int) and saved > study.seeds else study


def prepare(study: Study) -> list[Run]:
    """Write the plan into study.root (or check that the plan already there is this one) and each run's
    config.yaml and run.json; return the runs not finished yet."""
    root = study.root
    claim(root / PLAN, study.identity(), **_KIND)
    root.mkdir(parents=True, exist_ok=True)
    write_atomically(root / BASE, lambda file: file.write(config_module.to_yaml(study.base).encode()))
    write_atomically(root / PLAN, lambda file: file.write(
        (json.dumps({**study.identity(), "seeds": study.seeds}, indent=1) + "\n").encode()))
    pending = []
    for run in study.runs():
        if finished(run):
            continue
        variant = study.variant(run.variant)
        plan_run(run.directory, study.config(variant, run.seed), variant=variant.name, seed=run.seed,
                 changes=variant.describe(study.base), evaluation=study.evaluation)
        pending.append(run)
    return pending


def plan_run(directory: Path, cfg: Config, *, variant: str, seed: int, changes: str, evaluation: dict) -> None:
    """Write a run's config.yaml and run.json (what the worker needs besides the config)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / "config.yaml", lambda file: file.write(config_module.to_yaml(cfg).encode()))
    spec = {"variant": variant, "seed": seed, "train_seed": cfg.train.seed, "changes": changes,
            "evaluation": evaluation}
    write_atomically(directory / SPEC, lambda file: file.write((json.dumps(spec, indent=1) + "\n").encode()))


RETIRED_EVALUATION = ("inception_weights",)  # how runs were scored in earlier versions, no longer asked


def upgraded(saved: dict) -> dict:
    """A saved study identity as this version states it: config keys added since read at their defaults, and
    RETIRED_EVALUATION dropped, so a study begun earlier continues."""
    if isinstance(saved.get("base"), dict):
        saved = {**saved, "base": config_module.with_defaults(saved["base"])}
    if isinstance(saved.get("evaluation"), dict):
        saved = {**saved, "evaluation": {key: value for key, value in saved["evaluation"].items()
                                         if key not in RETIRED_EVALUATION}}
    return saved


def claim(plan: Path, identity: dict, *, kind: str, article: str, version: int, error: type[Exception]) -> bool:
    """Whether the study directory `plan` lies in already holds this study (the same `identity` keys); `error`
    when it holds another one, or anything else, so nothing is overwritten. `kind` names the study in messages
    ("ablation", with `article` "an")."""
    root = plan.parent
    if plan.is_file():
        saved = upgraded(read_plan(plan, kind=kind, article=article, version=version, error=error))
        differing = [key for key in identity if saved.get(key) != json.loads(json.dumps(identity[key]))]
        if differing:
            raise error(f"--run-dir: this directory holds another {kind} (its {', '.join(differing)} differ"
                        f"{_base_keys(saved.get('base'), identity.get('base'))}); continue it with the same options, "
                        f"or choose a new --run-dir. Received: {str(root)!r}")
        return True
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise error(f"--run-dir: this path holds something other than {article} {kind}; choose a new one so "
                    f"nothing is overwritten. Received: {str(root)!r}")
    return False


def _base_keys(saved, asked) -> str:
    """The config keys where a study's saved base and the one asked for now differ, with both values (at most 3),
    so that a --set that would continue it is plain; "" where the bases are not both configs."""
    if not isinstance(saved, dict) or not isinstance(asked, dict):
        return ""
    asked = json.loads(json.dumps(asked))
    keys = [f"{section}.{key}: {values.get(key)!r} there, {asked[section].get(key)!r} here"
            for section, values in saved.items() if isinstance(values, dict) and isinstance(asked.get(section), dict)
            for key in sorted(set(values) | set(asked[section])) if values.get(key) != asked[section].get(key)]
    return f"; base {'; '.join(keys[:3])}" if keys else ""


def read_plan(plan: Path, *, kind: str, article: str, version: int, error: type[Exception]) -> dict:
    """A study's plan (ablation.json, tune.json): a JSON mapping of this `version`, else `error`."""
    try:
        saved = json.loads(plan.read_text(encoding="utf-8"))
    except (OSError, ValueError) as reason:
        raise error(f"{plan}: not a readable {kind} plan ({reason.__class__.__name__}). "
                    f"Received: {str(plan.parent)!r}") from None
    if not isinstance(saved, dict) or saved.get("format") != version:
        raise error(f"{plan}: not {article} {kind} plan of this version. Received: {str(plan.parent)!r}")
    return saved


def read_study(root: Path, plan: str, *, kind: str, article: str, version: int,
               error: type[Exception]) -> tuple[dict, Config]:
    """A study directory's plan (read_plan) and its base config (base.yaml), else `error` saying what is wrong."""
    if not (root / plan).is_file():
        raise error(f"no {kind} here (no {plan}); give the --run-dir of a study. Received: {str(root)!r}")
    saved = upgraded(read_plan(root / plan, kind=kind, article=article, version=version, error=error))
    try:
        return saved, load_config(root / BASE, saved=True)
    except ConfigError as problem:
        raise error(f"{root / BASE}: {'; '.join(problem.problems)}") from None


def load(root: str | Path) -> Study:
    """The study planned in `root` (for --report and for a worker)."""
    root = Path(root)
    saved, base = read_study(root, PLAN, **_KIND)
    variants = tuple(Variant(v["name"], tuple((p, value) for p, value in v["changes"])) for v in saved["variants"])
    return Study(root=root, design=saved["design"], factors=tuple(saved["factors"]), seeds=int(saved["seeds"]),
                 variants=variants, reference=saved["reference"], base=base, evaluation=saved["evaluation"])


def commands(runs: list[Run], *, threads: int) -> list[str]:
    """One shell command per run (for a Slurm job array or GNU parallel): each trains and scores one run."""
    return [shlex.join(["dcgan", "ablate-run", str(run.directory), "--threads", str(threads)]) for run in runs]
