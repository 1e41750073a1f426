"""``kdlens tune``: search a space of config values with Optuna, on the distilled student's
validation metric, then re-run the best config on the test split over seeds.

Each trial is an ordinary run folder (``trials/<number>``) that trains the distilled student only
(its teacher is the seed's shared one; no hard-label twin, no test evaluation: the objective is a
validation metric, so the test split chooses nothing). Its validation metric is reported to the
pruner after every epoch. When the study holds ``--trials`` finished trials:

- ``trials.json`` / ``trials.csv``: every trial (state, value, parameters, epochs, folder);
- ``best.yaml``: the best trial's config, runnable as is with ``kdlens run --config``;
- ``best/seed_<s>/``: the best config re-run in full (scratch twin, test split, verdicts) for
  ``--seeds`` seeds, summarised in ``tune.json``;
- ``tune.html``: optimisation history, learning curves, parameter importances and the objective
  over each pair of parameters (Optuna's plots, the plotly library embedded: it opens offline).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from kdlens import distributed
from kdlens.config import RunConfig, load_config
from kdlens.errors import ConfigError
from kdlens.search import storage as st
from kdlens.search.folder import SearchFolder
from kdlens.search.launch import (
    builds,
    check_finished,
    check_runs,
    default_study_name,
    launch,
    unfinished,
)
from kdlens.search.space import Param, check_space, with_values
from kdlens.search.sweep import write_csv
from kdlens.search.trial import check_objective
from kdlens.search.worker import Job
from kdlens.utils import read_json, write_bytes_atomic

log = logging.getLogger("kdlens")

A = st.ATTR
PRUNERS = ("median", "none")
TRIAL_STAGES = ("teacher", "students")  # what the objective needs; the test split is not used


def run_tune(
    config_path: str | Path | None,
    space: dict[str, Param],
    trials: int,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    objective: str = "val_accuracy",
    pruner: str = "median",
    seeds: int = 3,
    progress: bool = False,
    teachers_dir: str | Path | None = None,
    tracking: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Run (or resume, or join) the search; writes the outputs above and returns tune.json."""
    if trials < 1:
        raise ConfigError(f"tune: --trials must be at least 1 (got {trials})")
    if workers < 1:
        raise ConfigError(f"tune: --workers must be at least 1 (got {workers})")
    if seeds < 0:
        raise ConfigError(f"tune: --seeds must be 0 (no re-run) or more (got {seeds})")
    if pruner not in PRUNERS:
        raise ConfigError(f"tune: --pruner {pruner!r}: expected one of {', '.join(PRUNERS)}")
    direction = check_objective(objective)
    if not space:
        raise ConfigError("tune: give at least one --space KEY=SPEC")
    overrides = list(overrides or [])
    base = load_config(config_path, overrides)
    check_space(base, space)
    folder = SearchFolder(out_dir)
    probes = [
        with_values(base, {p.key: v}) for p in space.values() if builds(p.key) for v in p.probes()
    ]
    check_runs([base, *probes], folder)
    name = study or default_study_name(out_dir)
    job = Job(
        kind="tune",
        folder=str(folder.path.resolve()),
        storage=storage,
        study=name,
        base=base.model_dump(mode="json"),
        space={k: p.spec for k, p in space.items()},
        objective=objective,
        pruner=pruner,
        trials=trials,
        teachers=str(Path(teachers_dir).resolve()) if teachers_dir else None,
        only=TRIAL_STAGES,
        twins=False,
        tracking=tracking,
        tracking_uri=tracking_uri,
        progress=progress,
    )
    wanted = st.search_attrs("tune", job.space, objective, job.base)
    done, crashed = launch(job, workers, direction, wanted)
    if done is None:  # not the main process under torchrun: it trains what rank 0 runs
        best = distributed.broadcast(None)
        if best is not None and seeds:
            rerun_best(best_config(base, best, job, folder), seeds, job, folder)
        return {}
    found = done.get_trials(deepcopy=False)
    table = trials_document(found, space, objective, direction, name)
    folder.write_json(folder.file("trials.json"), table)
    write_csv(csv_rows(table), folder.file("trials.csv"))
    document: dict[str, Any] = {
        "config": str(config_path) if config_path else None,
        "overrides": overrides,
        "study": name,
        "objective": table["objective"],
        "trials": table["counts"],
        "epochs": table["epochs"],
        "best": table["best"],
        "final": None,
    }
    if unfinished(found):
        document["note"] = (
            f"{unfinished(found)} trial(s) still queued or running elsewhere; the best config "
            "is re-run when all have finished: rerun this command then"
        )
    ready = not unfinished(found) and table["best"] is not None
    distributed.broadcast(table["best"]["params"] if ready else None)  # torchrun: all re-run
    if ready:
        best = best_config(base, table["best"]["params"], job, folder)
        write_best(best, folder.file("best.yaml"), table["best"])
        if seeds:
            document["final"] = rerun_best(best, seeds, job, folder)
    folder.write_json(folder.file("tune.json"), document)
    from kdlens.search.page import save_tune_page

    save_tune_page(table, document, folder.file("tune.html"))
    check_finished(crashed, found)
    return document


def trials_document(
    trials, space: dict[str, Param], objective: str, direction: str, study: str
) -> dict[str, Any]:
    """Every trial of the study as JSON (tune.html is drawn from it), and the best one."""
    from optuna.distributions import distribution_to_json
    from optuna.trial import TrialState

    retried = st.retried(trials)
    rows = []
    for t in trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": st.trial_params(t),
                "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                "epochs": t.user_attrs.get(A + "epochs"),
                "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                if t.datetime_complete and t.datetime_start
                else None,
                "folder": t.user_attrs.get(A + "folder"),
                "worker": t.user_attrs.get(A + "worker"),
                "error": t.user_attrs.get(A + "error"),
                "retry_of": t.user_attrs.get(A + "retry_of"),
                "queued_again": t.number in retried,
            }
        )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        pick = max if direction == "maximize" else min
        b = pick(complete, key=lambda t: t.value)
        best = {
            "number": b.number,
            "value": b.value,
            "params": dict(b.params),
            "folder": b.user_attrs.get(A + "folder"),
        }
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return {
        "study": study,
        "objective": {"model": "kd", "metric": objective, "direction": direction},
        "space": {k: p.spec for k, p in space.items()},
        "distributions": {k: distribution_to_json(p.distribution()) for k, p in space.items()},
        "counts": counts,
        "epochs": sum(r["epochs"] or 0 for r in rows),
        "best": best,
        "trials": rows,
    }


def csv_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trial: number, state, the objective (named by model and metric), parameters."""
    column = f"{table['objective']['model']}_{table['objective']['metric']}"
    return [
        {
            "number": t["number"],
            "state": t["state"],
            column: t["value"],
            **{k: t["params"].get(k) for k in table["space"]},
            "epochs": t["epochs"],
            "seconds": t["seconds"],
            "folder": t["folder"],
        }
        for t in table["trials"]
    ]


def best_config(
    base: RunConfig, params: dict[str, Any], job: Job, folder: SearchFolder
) -> RunConfig:
    """The best trial's config, with the teacher its trial distilled from (so it reruns to the
    same validation accuracy)."""
    from kdlens.search.teachers import with_shared_teacher

    return with_shared_teacher(with_values(base, params), job.teachers or folder.teachers)


def write_best(config: RunConfig, path: Path, best: dict[str, Any]) -> None:
    header = (
        f"# kdlens tune: the best of the trials (trial {best['number']}, "
        f"validation {best['value']:.6g}); rerun with kdlens run --config {path.name}\n"
        "# teacher.checkpoint is the teacher every trial of this seed shared; remove it to\n"
        "# train a new teacher from scratch.\n"
    )
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    write_bytes_atomic(path, (header + text).encode())


def rerun_best(config: RunConfig, seeds: int, job: Job, folder: SearchFolder) -> dict[str, Any]:
    """The best config, in full (scratch twin, test split, verdicts), for ``seeds`` seeds.

    Seed s uses that seed's shared teacher (the first seed's is the one the trials used). A seed
    whose run finished earlier is read, an interrupted one resumed.
    """
    from kdlens.evaluate.verdicts import mean_interval
    from kdlens.pipeline import run
    from kdlens.run import RunFolder
    from kdlens.search.teachers import with_shared_teacher
    from kdlens.tracking import create_tracker

    user_teacher = job.base["teacher"]["checkpoint"]
    runs = []
    for s in range(seeds):
        seed = config.seed + s
        path = folder.best_run(seed)
        run_folder = RunFolder(path)
        if distributed.broadcast(run_folder.metrics.is_file()):  # rank 0's files decide
            metrics = read_json(run_folder.metrics) if distributed.is_main() else {}
        else:
            seeded = with_values(config, {"seed": seed, "teacher.checkpoint": user_teacher})
            seeded = with_shared_teacher(seeded, job.teachers or folder.teachers, job.progress)
            tracker = (
                None
                if not distributed.is_main()
                else create_tracker(
                    job.tracking,
                    job.tracking_uri,
                    experiment=job.study,
                    run_name=f"tune {job.study} best seed {seed}",
                    tags={A + "study": job.study, A + "best_seed": str(seed), A + "search": "tune"},
                )
            )
            # Resuming needs every process to read the state: only a single process does.
            resume = distributed.world_size() == 1 and path.is_dir() and run_folder.is_run()
            log.info("best config, seed %d: %s %s", seed, "resuming" if resume else "running", path)
            metrics = run(
                seeded,
                path,
                overwrite=not resume,
                resume=resume,
                progress=job.progress,
                tracker=tracker,
            )
        if not metrics:  # torchrun: only the main process reports
            continue
        models, summary = metrics["models"], metrics.get("summary", {})
        runs.append(
            {
                "seed": seed,
                "dir": folder.relative(path),
                "kd_accuracy": models["kd"]["accuracy"],
                "scratch_accuracy": models["scratch"]["accuracy"],
                "teacher_accuracy": models["teacher"]["accuracy"],
                "kd_minus_scratch": summary.get("kd_minus_scratch"),
                "verdicts": summary.get("verdicts"),
            }
        )
    if not runs:
        return {}
    differences = [r["kd_minus_scratch"] for r in runs]
    return {
        "seeds": [r["seed"] for r in runs],
        "runs": runs,
        "kd_minus_scratch": mean_interval(differences),
        "verdict": verdict_text(mean_interval(differences), runs),
    }


def verdict_text(difference: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """One line: kd - scratch test accuracy over the seeds with its 95 % t-interval, and the
    seeds' own verdicts on kd when their metrics.json has them."""
    mean, ci, n = difference["mean"], difference["ci95"], difference["n"]
    text = f"kd - scratch test accuracy {100 * mean:+.2f} points over {n} seed(s)"
    if ci is not None:
        text += f" (95% t-interval over seeds {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f})"
    words = [seed_verdict(r) for r in runs]
    if any(words):
        text += "; verdicts: " + ", ".join(
            f"seed {r['seed']} {w}" for r, w in zip(runs, words, strict=True) if w
        )
    return text


def seed_verdict(run: dict[str, Any]) -> str | None:
    """The conclusion of a seed's kd-against-scratch verdict, when its metrics.json has one."""
    verdicts = run.get("verdicts")
    kd = verdicts.get("kd") if isinstance(verdicts, dict) else None
    return kd.get("conclusion") if isinstance(kd, dict) else None
