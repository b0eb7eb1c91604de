"""A tuning study: its directory and its Optuna study, whose storage several processes or machines share.

    D/tune.json           what defines the study (base config, space, seeds, objective, sampler, pruner, how runs
                          are scored) and where Optuna keeps its trials (the storage, the study's name)
    D/base.yaml, D/space.yaml
    D/journal.log         Optuna's journal (JournalStorage), unless --storage names a database
    D/trials/<n>/         trial n: trial.json, then one ordinary run directory per seed (the trial's directory
                          itself with one seed, seed<k>/ with more), log.txt, and result.json last
    D/confirm/            `dcgan tune --confirm`: the base against the best on fresh seeds (an ablation study);
                          with --set, D/confirm-KEY=VALUE/ (e.g. the full length of runs tuned short)

Seed k of every trial trains with train.seed = base seed + k, so trials differ only in their parameters and a
pruner compares like with like. Nothing here starts Keras.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dcgan_cli import config as config_module
from dcgan_cli.ablate.study import claim, plan_run, read_study, upgraded
from dcgan_cli.config import Config, ConfigError
from dcgan_cli.files import write_atomically
from dcgan_cli.tune.constraints import Constraint, ConstraintError, parse
from dcgan_cli.tune.space import Space, SpaceError, parse_space, word

PLAN = "tune.json"
BASE = "base.yaml"
SPACE = "space.yaml"
JOURNAL = "journal.log"
TRIALS = "trials"
TRIAL = "trial.json"  # in each trial's directory: what its worker needs
RESULT = "result.json"  # in each trial's directory, written last
TRIAL_LOCK = ".trial.lock"  # held by the trial's worker (its seeds' runs hold their own .lock)
PLANNER_LOCK = ".planner.lock"  # held by the tune process that planned or resumed the trial, until it is done
CONFIRM = "confirm"
FORMAT = 1
IDENTITY_ATTR = "dcgan_tune"  # the study's user attribute that holds its identity, for processes that join it
START_ATTR = "start_from"  # an enqueued trial's user attribute: the config file it was started from
OBJECTIVES = ("final", "best", "tail")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
LOCAL_KEYS = ("data.path", "output.run_dir")  # may differ between machines that share a study through a database


class TuneError(ValueError):
    """A tuning study that cannot start or continue; the message names what and why."""


_KIND = {"kind": "tuning study", "article": "a", "version": FORMAT, "error": TuneError}


@dataclass(frozen=True)
class Tuning:
    """Everything that defines a tuning study; `evaluation` says how each run is scored (as in an ablation)."""

    root: Path
    base: Config
    space: Space
    seeds: int
    objective: str
    sampler: str
    pruner: str
    storage: str | None  # a database URL; None: the journal in root
    name: str
    evaluation: dict
    constraints: tuple[Constraint, ...] = ()  # bounds on other final scores (--constraint)

    def identity(self) -> dict[str, Any]:
        """What must match for a directory's (or a storage's) study to be continued; no constraints are null, as
        a study from before they existed reads."""
        return {"format": FORMAT, "base": config_module.to_dict(self.base), "space": self.space.to_dict(),
                "seeds": self.seeds, "objective": self.objective, "sampler": self.sampler, "pruner": self.pruner,
                "evaluation": self.evaluation,
                "constraints": self.constraint_texts() or None}

    def constraint_texts(self) -> list[str]:
        """The --constraint bounds as the study's files and its report write them."""
        return [c.text() for c in self.constraints]

    def storage_url(self) -> str:
        """The storage to open: the database URL, or journal:<absolute path of the journal in root>."""
        return self.storage or f"journal:{(self.root / JOURNAL).resolve()}"

    def trial_directory(self, number: int) -> Path:
        return self.root / TRIALS / f"{number:04d}"

    def run_directories(self, trial: Path) -> list[Path]:
        return [trial] if self.seeds == 1 else [trial / f"seed{k}" for k in range(self.seeds)]

    def config(self, values: dict[str, Any], seed: int, directory: Path) -> Config:
        """A trial's config for seed k: the drawn values on the base (ConfigError when their combination fails
        the config's cross-checks), train.seed shifted by k, its own run directory, no progress bar."""
        cfg = self.space.apply(self.base, values)
        cfg = config_module.replace_value(cfg, "train.seed", self.base.train.seed + seed)
        cfg = config_module.replace_value(cfg, "output.progress", False)
        return config_module.replace_value(cfg, "output.run_dir", str(directory))


def open_storage(url: str):
    """Optuna's storage for a trial.json storage URL: a journal file, or a database (RDBStorage)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return optuna.storages.RDBStorage(url)


def sampler(name: str, *, seed: int):
    """TPE (with the constant liar, so parallel trials spread out) or random search, seeded."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def pruner(name: str, *, steps: int, seeds: int, eval_every: int):
    """The median rule (after 4 trials, not before a third of a run) or Hyperband over the evaluations; none."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=steps // 3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=steps * seeds)
    return optuna.pruners.NopPruner()


def optuna_study(tuning: Tuning):
    """The study in its storage, created with its identity the first time; TuneError when the storage holds
    another study under this name. This process's sampler is seeded by process_seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = open_storage(tuning.storage_url())
        study = optuna.create_study(
            storage=storage, study_name=tuning.name, direction="minimize", load_if_exists=True,
            pruner=pruner(tuning.pruner, steps=tuning.base.train.steps, seeds=tuning.seeds,
                          eval_every=tuning.base.output.eval_every))
    except ImportError as error:
        raise TuneError(f"--storage: this database needs a driver that is not installed ({error}). "
                        f"Received: {_safe(tuning.storage_url())}") from None
    except Exception as error:  # SQLAlchemy's and the journal's errors have no common base outside Optuna
        raise TuneError(f"--storage: cannot open the study's storage ({error.__class__.__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''}). Received: "
                        f"{_safe(tuning.storage_url())}") from None
    mine = _shared_identity(tuning.identity())
    saved = study.user_attrs.get(IDENTITY_ATTR)
    if saved is None:
        study.set_user_attr(IDENTITY_ATTR, mine)
        # The first trial is the base itself, as far as the space holds its values: the study then measures what
        # it is trying to beat, and the sampler starts from it. Processes starting together enqueue it once.
        study.enqueue_trial(tuning.space.drawn(tuning.base), skip_if_exists=True)
    else:  # a study begun before some config keys (or constraints) existed reads them at their defaults
        saved = _shared_identity(upgraded(saved))
        differing = [key for key in mine if saved.get(key) != mine[key]]
        if differing:
            raise TuneError(f"--storage: the study {tuning.name!r} there is another one (its "
                            f"{', '.join(differing)} differ); continue it with the same options, or give "
                            f"--study-name. Received: {_safe(tuning.storage_url())}")
    study.sampler = sampler(tuning.sampler, seed=process_seed(tuning, len(study.get_trials(deepcopy=False))))
    return study


def start_from(study, tuning: Tuning, starts: dict[str, Config]) -> list[str]:
    """Enqueue each named config's values of the searched keys as a trial, after the base and once however often
    it is asked (a rerun, a joining process), so the sampler also begins beside a config known to be good, e.g. a
    preset found on other data. Returns a line for each config with keys whose value the space does not hold
    (the sampler draws those)."""
    notes = []
    for name, cfg in starts.items():
        params = tuning.space.drawn(cfg)
        outside = [param.path for param in tuning.space.params if param.path not in params]
        if outside:
            notes.append(f"--start-from {name}: the space does not hold its {', '.join(outside)}; the sampler "
                         "draws them")
        study.enqueue_trial(params, user_attrs={START_ATTR: name}, skip_if_exists=True)
    return notes


def _shared_identity(identity: dict) -> dict:
    """The identity as the storage keeps it: without what may differ between machines (the data's path, the
    run directory), as JSON would give it back."""
    base = {section: {key: value for key, value in values.items() if f"{section}.{key}" not in LOCAL_KEYS}
            for section, values in identity["base"].items()}
    return json.loads(json.dumps({**identity, "base": base}))


def _safe(url: str) -> str:
    """A storage URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}:***@{tail}"


def prepare(tuning: Tuning) -> None:
    """Write the plan into tuning.root, or check that the plan already there is this one."""
    root = tuning.root
    if claim(root / PLAN, _plan(tuning), **_KIND):
        return
    root.mkdir(parents=True, exist_ok=True)
    write_atomically(root / BASE, lambda file: file.write(config_module.to_yaml(tuning.base).encode()))
    write_atomically(root / SPACE, lambda file: file.write(
        yaml.safe_dump(tuning.space.to_dict(), sort_keys=False, default_flow_style=None).encode()))
    write_atomically(root / PLAN, lambda file: file.write((json.dumps(_plan(tuning), indent=1) + "\n").encode()))


def _plan(tuning: Tuning) -> dict:
    """tune.json: the identity, the database URL (null: the journal beside it, wherever the directory moves) and
    the study's name."""
    return {**tuning.identity(), "storage": tuning.storage, "name": tuning.name}


def load(root: str | Path) -> Tuning:
    """The study planned in `root` (for --report and --confirm)."""
    root = Path(root)
    saved, base = read_study(root, PLAN, **_KIND)
    try:
        space = parse_space(saved["space"], source=str(root / PLAN))
        constraints = tuple(parse(text) for text in saved.get("constraints") or [])
    except SpaceError as error:
        raise TuneError("; ".join(error.problems)) from None
    except ConstraintError as error:
        raise TuneError(f"{root / PLAN}: {error}") from None
    return Tuning(root=root, base=base, space=space, seeds=saved["seeds"], objective=saved["objective"],
                  sampler=saved["sampler"], pruner=saved["pruner"], storage=saved["storage"], name=saved["name"],
                  evaluation=saved["evaluation"], constraints=constraints)


def process_seed(tuning: Tuning, trials_so_far: int) -> int:
    """This process's sampler seed: from train.seed, the trials the study holds and the process id, so that
    processes joining one study do not draw the same parameters."""
    sequence = np.random.SeedSequence([tuning.base.train.seed, trials_so_far, os.getpid()])
    return int(sequence.generate_state(1)[0])


def plan_trial(tuning: Tuning, trial) -> Path:
    """Write trial n's directory: trial.json and each seed's config.yaml and run.json. ConfigError when the drawn
    combination fails the config's cross-checks (nothing is written then)."""
    values = tuning.space.values(trial.params)
    directory = tuning.trial_directory(trial.number)
    configs = [tuning.config(values, k, run) for k, run in enumerate(tuning.run_directories(directory))]
    changes = "; ".join(f"{path}: {word(value)}" for path, value in values.items())
    for k, (run, cfg) in enumerate(zip(tuning.run_directories(directory), configs)):
        plan_run(run, cfg, variant=f"trial {trial.number}", seed=k, changes=changes, evaluation=tuning.evaluation)
    # The storage's id of the trial, which a worker needs to rebuild it (optuna.trial.Trial(study, id)); Optuna
    # keeps it as _trial_id and gives it no public name. A journal is named relative to the trial's directory, so
    # the study moves (or is committed) without a path of the machine it ran on.
    spec = {"number": trial.number, "trial_id": trial._trial_id, "values": {p: _plain(v) for p, v in values.items()},
            "runs": [run.relative_to(directory).as_posix() for run in tuning.run_directories(directory)],
            "storage": tuning.storage or f"journal:../../{JOURNAL}", "name": tuning.name, "objective": tuning.objective,
            "pruner": tuning.pruner, "steps": tuning.base.train.steps, "eval_every": tuning.base.output.eval_every,
            "constraints": tuning.constraint_texts()}
    write_atomically(directory / TRIAL, lambda file: file.write((json.dumps(spec, indent=1) + "\n").encode()))
    trial.set_user_attr("directory", directory.relative_to(tuning.root).as_posix())
    return directory


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def trial_result(directory: Path) -> dict | None:
    """A trial's result.json, once its worker has finished it."""
    path = directory / RESULT
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def best_config(tuning: Tuning, values: dict[str, Any]) -> Config:
    """The base with the best trial's values, as a config to train from (best.yaml)."""
    return tuning.space.apply(tuning.base, values)


FRESH_SEEDS = 1000  # the confirmation trains with train.seed = base seed + 1000 + k: seeds no trial tuned on


def confirmation_study(tuning: Tuning, values: dict[str, Any], *, seeds: int, overrides: tuple[str, ...] = ()):
    """The base and the best as an ablation of two variants on fresh seeds, in D/confirm (D/confirm-KEY=VALUE
    with `overrides` on both, e.g. train.steps=3000 for runs tuned shorter); compared paired by seed over each
    run's last checkpoints (ablate/compare.py)."""
    from dcgan_cli.ablate.design import Variant
    from dcgan_cli.ablate.study import Study, extended

    if seeds > FRESH_SEEDS:
        raise TuneError(f"--seeds: at most {FRESH_SEEDS} for a confirmation. Received: {seeds}")
    searched = [o for o in overrides if o.partition("=")[0].strip() in values]
    if searched:
        raise TuneError(f"--set: the confirmation keeps the searched keys at the best trial's values. "
                        f"Received: {', '.join(searched)}")
    try:
        base = config_module.with_overrides(tuning.base, overrides)
    except ConfigError as error:
        raise TuneError("--set: " + "; ".join(error.problems)) from None
    if not any(o.partition("=")[0].strip() == "train.mixed_precision" for o in overrides):
        base = config_module.replace_value(base, "train.mixed_precision", "off")  # confirmed in float32
    base = config_module.replace_value(base, "train.seed", tuning.base.train.seed + FRESH_SEEDS)
    tuned = Variant("tuned", tuple((path, value) for path, value in values.items()))
    root = tuning.root / "-".join([CONFIRM, *(re.sub(r"[^A-Za-z0-9._=-]", "_", o.strip()) for o in overrides)])
    return extended(Study(root=root, design="confirm", factors=tuple(values), seeds=seeds,
                          variants=(Variant("base", ()), tuned), reference="base", base=base,
                          evaluation=tuning.evaluation))
