"""Optuna searches whose trials are nested MLflow runs.

A study has one parent run and one child run per trial. The parent is the run of the
worker that created the study. Its id is stored in the study's user attributes, so
every worker that joins the study and every later resume nest their trials under it.
Trial runs end with these statuses:

* a complete trial: FINISHED, tag ``tune.state=COMPLETE``;
* a pruned trial: KILLED, tags ``tune.state=PRUNED`` and ``tune.pruned=true``;
* a failed trial: FAILED, tag ``tune.state=FAIL`` and the message as ``error``; an
  objective that is NaN or infinite at any epoch fails the trial;
* an interrupted trial (Ctrl-C, SIGTERM, or a worker that stopped sending heartbeats):
  KILLED with ``tune.state=FAIL`` and ``tune.interrupted=true``. Its parameters are
  queued again, so a resumed search runs them first.

The Optuna study lives in its own database (an RDB storage: SQLite or PostgreSQL),
never in MLflow's.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import mlflow
import optuna
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from tracking.figures import close
from tracking.runs import log_params_once
from tracking.search_space import Objective

logger = logging.getLogger(__name__)

# Run tags written by the search. The UI filters on them, for example
# tags.`tune.state` = 'PRUNED'.
STATE_TAG = "tune.state"
PRUNED_TAG = "tune.pruned"
INTERRUPTED_TAG = "tune.interrupted"
STUDY_TAG = "tune.study_name"
STORAGE_TAG = "tune.storage"
ROLE_TAG = "tune.role"
TRIAL_TAG = "tune.trial_number"
WORKER_TAG = "tune.worker_run_id"
PARENT_TAG = "mlflow.parentRunId"

# Optuna attributes that link the study and its trials to MLflow runs.
PARENT_RUN_ATTR = "mlflow_parent_run_id"
RUN_ID_ATTR = "mlflow_run_id"
RETRY_HISTORY_ATTR = "retry_history"
RETRY_OF_ATTR = "failed_trial"

# A running trial records a heartbeat every HEARTBEAT_INTERVAL_S. A trial silent for
# GRACE_PERIOD_S belongs to a worker that died, and the next worker to check fails it.
HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
# An interrupted trial is queued again at most this many times.
MAX_RETRY = 2
# MLflow's limit on a tag value (MLflow 3.17.2).
_MAX_TAG_LENGTH = 5000
# Attempts to open a storage whose tables another worker creates at the same moment.
_TABLE_CREATION_ATTEMPTS = 3


@contextmanager
def silence_experimental_warnings():
    """Run Optuna features marked experimental (heartbeats, stale-trial checks, plots) quietly.

    Optuna 5.1 warns on every use of them, and its own optimize loop silences the same
    warning around its stale-trial check. Other warnings still show.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


class NonFiniteObjectiveError(ArithmeticError):
    """The objective metric became NaN or infinite, so the trial fails."""


class ObjectiveMetricError(LookupError):
    """The objective metric is not among the metrics a trial reports per epoch."""


class StudyStorageError(ValueError):
    """An Optuna storage URL that cannot be opened, with the fix."""


class PruningCallback(keras.callbacks.Callback):
    """Report the objective metric to an Optuna trial after every epoch and prune on request.

    Place it after the callbacks that add metrics (such as ``F1FromIoU``) and after the
    tracking callbacks, so a pruned trial's last epoch is still logged. A NaN or
    infinite value raises NonFiniteObjectiveError instead of being reported.
    """

    def __init__(self, trial: optuna.Trial, monitor: str):
        super().__init__()
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ObjectiveMetricError(
                f"Objective metric {self.monitor!r} is not among the epoch metrics {', '.join(sorted(logs))}. "
                "Set objective.metric in the search space to one of them."
            )
        value = float(logs[self.monitor])
        if not math.isfinite(value):
            raise NonFiniteObjectiveError(
                f"{self.monitor} is {value} at epoch {epoch + 1}, so trial {self.trial.number} failed. "
                "Training diverged: narrow the learning-rate range of the search space if this repeats."
            )
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"Trial {self.trial.number} pruned at epoch {epoch + 1} with {self.monitor}={value:.4g}.")


# Storage


def default_storage_url(tracking_uri: str) -> str:
    """Return ``sqlite:///<folder>/optuna.db`` beside MLflow's SQLite file, else in the working folder."""
    from sqlalchemy.engine import make_url

    folder = Path.cwd()
    if tracking_uri.startswith("sqlite:"):
        database = make_url(tracking_uri).database
        if database and database != ":memory:":
            folder = Path(database).expanduser().resolve().parent
    else:
        logger.info(
            "MLflow tracks to %s, so the Optuna study is kept in %s/optuna.db. "
            "Pass storage=postgresql://... to share a study between machines.", tracking_uri, folder,
        )
    return f"sqlite:///{folder / 'optuna.db'}"


def display_url(url: str) -> str:
    """Return the storage URL with its password masked, for logs and tags."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise StudyStorageError(
            f"Storage {url!r} is not a database URL: use sqlite:///path/optuna.db or postgresql://user@host:port/database."
        ) from None


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, max_retry: int | None = None,
) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage with heartbeats, creating its tables on first use.

    A trial whose worker stops sending heartbeats fails after ``grace_period`` seconds.
    Its MLflow run is then closed and its parameters are queued again, at most
    ``max_retry`` times.
    Unset arguments take the module's HEARTBEAT_INTERVAL_S, GRACE_PERIOD_S and MAX_RETRY.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    heartbeat_interval = heartbeat_interval or HEARTBEAT_INTERVAL_S
    grace_period = grace_period or GRACE_PERIOD_S
    max_retry = MAX_RETRY if max_retry is None else max_retry
    masked_url = display_url(url)
    if make_url(url).password:
        logger.warning(
            "The storage URL %s contains a password. MLflow logs entry-point parameters as given, "
            "so pass the password through PGPASSWORD or ~/.pgpass instead.", masked_url,
        )

    attempt = 1
    while True:
        try:
            with silence_experimental_warnings():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=StaleTrialHandler(max_retry),
                )
        except (IntegrityError, ProgrammingError) as error:
            # Workers that open a new database at the same moment all try to create
            # Optuna's tables, and all but one fail. The tables exist on the next attempt.
            if attempt >= _TABLE_CREATION_ATTEMPTS:
                raise StudyStorageError(f"Creating Optuna's tables in {masked_url} failed {attempt} times: {error}.") from None
            logger.info(
                "Another worker is creating Optuna's tables in %s, so attempt %d of %d failed. Retrying.",
                masked_url, attempt, _TABLE_CREATION_ATTEMPTS,
            )
            time.sleep(attempt)
            attempt += 1
        except (SQLAlchemyError, ImportError) as error:
            raise StudyStorageError(f"Optuna storage {masked_url} could not be opened: {error}. Check that the database runs and the URL is right.") from None


# Trials and their retries


def queue_retry(study: optuna.Study, trial: FrozenTrial, max_retry: int = MAX_RETRY) -> bool:
    """Queue ``trial``'s parameters as a new waiting trial, or return False after ``max_retry`` retries.

    The new trial records the trial numbers it replaces under the system attributes
    that Optuna's own retry callback uses (``failed_trial``, ``retry_history``).
    """
    history = [*trial.system_attrs.get(RETRY_HISTORY_ATTR, []), trial.number]
    if len(history) > max_retry:
        logger.warning("Trial %d was already retried %d times; it is not queued again.", trial.number, len(history) - 1)
        return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={RETRY_OF_ATTR: history[0], RETRY_HISTORY_ATTR: history},
        )
    )
    logger.info("Queued the parameters of trial %d again: %s", trial.number, trial.params)
    return True


def close_trial_run(run_id: str, status: str, tags: dict[str, str], client: MlflowClient | None = None) -> None:
    """Tag a trial's run and end it with ``status`` unless it has already ended."""
    client = client or MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        logger.warning("Trial run %s could not be read, so it was left as it is: %s", run_id, error)
        return
    if run.info.status != "RUNNING":
        return
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status)


class StaleTrialHandler:
    """Close the MLflow run of a trial whose worker died, and queue its parameters again."""

    def __init__(self, max_retry: int | None = None):
        self.max_retry = MAX_RETRY if max_retry is None else max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        logger.warning("Trial %d sent no heartbeat for the grace period, so its worker is taken as dead and the trial failed.", trial.number)
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            close_trial_run(run_id, "KILLED", {STATE_TAG: "FAIL", INTERRUPTED_TAG: "true", "error": "The worker stopped sending heartbeats."})
        queue_retry(study, trial, self.max_retry)


@dataclass(frozen=True)
class Progress:
    """Trial counts of a study, where ``counted`` is the number that counts toward ``n_trials``."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    counted: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


@dataclass(frozen=True)
class WorkerOutcome:
    """End state of a worker's loop: the study's counts, and whether its own trial finished last.

    ``finished_last`` is False when the worker's last act was waiting for trials of
    other workers, so the worker of the study's last trial is the one to register.
    """

    progress: Progress
    finished_last: bool


def study_progress(study: optuna.Study) -> Progress:
    """Count a study's trials by state.

    Every trial counts toward ``n_trials`` except a failed trial whose parameters were
    queued again, because its retry counts in its place.
    """
    trials = study.get_trials(deepcopy=False)
    replaced = {number for trial in trials for number in trial.system_attrs.get(RETRY_HISTORY_ATTR, [])}
    states = [trial.state for trial in trials]
    return Progress(
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        running=states.count(TrialState.RUNNING),
        waiting=states.count(TrialState.WAITING),
        counted=sum(1 for trial in trials if trial.number not in replaced),
    )


def best_trial(study: optuna.Study, objective: Objective) -> FrozenTrial | None:
    """Return the complete trial with the best finite value (the earliest on ties), or None."""
    best = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.value is not None and objective.is_better(trial.value, None if best is None else best.value):
            best = trial
    return best


# Parent and trial runs


@dataclass(frozen=True)
class ParentRun:
    """The MLflow run that contains a study's trials as child runs."""

    run_id: str
    experiment_id: str
    study_name: str


def _find_parent_by_tags(client: MlflowClient, experiment_id: str, study_name: str, storage_label: str) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study_name}' and tags.`{ROLE_TAG}` = 'parent'",
        max_results=50,
    )
    matching = [run for run in runs if run.data.tags.get(STORAGE_TAG) == storage_label]
    return matching[0].info.run_id if matching else None


def attach_parent_run(
    study: optuna.Study, created: bool, worker_run_id: str, storage_label: str, client: MlflowClient | None = None, wait_s: float = 30.0,
) -> ParentRun:
    """Return the study's parent run, making ``worker_run_id`` the parent when there is none.

    A worker that created the study becomes the parent. A worker that joined a study
    without trials waits up to ``wait_s`` for the creator to record its run. Without a
    recorded run, a worker looks for a run tagged with the study, and otherwise adopts
    its own run. A joining worker's own run is nested under the parent too, so the UI
    shows one tree per study.
    """
    client = client or MlflowClient()
    worker = client.get_run(worker_run_id)
    parent_id = None
    if not created:
        parent_id = _wait_for_parent(study, wait_s if not study.get_trials(deepcopy=False) else 0.0)
    if parent_id is None and not created:
        parent_id = _find_parent_by_tags(client, worker.info.experiment_id, study.study_name, storage_label)
    if parent_id is not None:
        try:
            parent = client.get_run(parent_id)
        except MlflowException:
            logger.warning("The study's parent run %s no longer exists; this worker's run %s becomes the parent.", parent_id, worker_run_id)
            parent_id = None
        else:
            if parent.info.lifecycle_stage == "deleted":
                logger.warning("The study's parent run %s is deleted; this worker's run %s becomes the parent.", parent_id, worker_run_id)
                parent_id = None

    if parent_id is None or parent_id == worker_run_id:
        study.set_user_attr(PARENT_RUN_ATTR, worker_run_id)
        for key, value in {ROLE_TAG: "parent", STUDY_TAG: study.study_name, STORAGE_TAG: storage_label}.items():
            client.set_tag(worker_run_id, key, value)
        logger.info("Run %s is the parent run of study %s.", worker_run_id, study.study_name)
        return ParentRun(worker_run_id, worker.info.experiment_id, study.study_name)

    if parent.info.experiment_id != worker.info.experiment_id:
        logger.warning(
            "This worker's run is in experiment %s and the study's parent run in experiment %s, so trials go to the parent's.",
            worker.info.experiment_id, parent.info.experiment_id,
        )
    if study.user_attrs.get(PARENT_RUN_ATTR) != parent_id:
        study.set_user_attr(PARENT_RUN_ATTR, parent_id)
    for key, value in {ROLE_TAG: "worker", STUDY_TAG: study.study_name, STORAGE_TAG: storage_label, PARENT_TAG: parent_id}.items():
        client.set_tag(worker_run_id, key, value)
    if parent.info.status != "RUNNING":
        # A resumed search: show the parent as running again until the study is done.
        client.update_run(parent_id, status="RUNNING")
    logger.info("Joined study %s; trials are nested under its parent run %s.", study.study_name, parent_id)
    return ParentRun(parent_id, parent.info.experiment_id, study.study_name)


def _wait_for_parent(study: optuna.Study, wait_s: float) -> str | None:
    deadline = time.monotonic() + wait_s
    while True:
        parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if parent_id or time.monotonic() >= deadline:
            return parent_id
        time.sleep(1.0)


class TrialRuns:
    """Run each trial of a study as a child run of the study's parent run.

    ``objective(train_trial)`` wraps a function that samples parameters from an Optuna
    trial, trains with the new child run active, and returns the objective value.
    """

    def __init__(self, parent: ParentRun, target: str, client: MlflowClient | None = None, worker_run_id: str | None = None):
        self.parent = parent
        self.target = target
        self.worker_run_id = worker_run_id or parent.run_id
        self.client = client or MlflowClient()
        self.current_trial: int | None = None

    def objective(self, train_trial: Callable[[optuna.Trial], float]) -> Callable[[optuna.Trial], float]:
        def objective(trial: optuna.Trial) -> float:
            return self.run_trial(trial, train_trial)

        return objective

    def run_trial(self, trial: optuna.Trial, train_trial: Callable[[optuna.Trial], float]) -> float:
        self.current_trial = trial.number
        tags = {
            PARENT_TAG: self.parent.run_id,
            STUDY_TAG: self.parent.study_name,
            TRIAL_TAG: str(trial.number),
            ROLE_TAG: "trial",
            WORKER_TAG: self.worker_run_id,
            "entry_point": self.target,
        }
        retry_of = _frozen(trial.study, trial.number).system_attrs.get(RETRY_OF_ATTR)
        if retry_of is not None:
            tags["tune.retry_of"] = str(retry_of)
        run = self.client.create_run(self.parent.experiment_id, run_name=f"trial-{trial.number:03d}", tags=tags)
        trial.set_user_attr(RUN_ID_ATTR, run.info.run_id)
        logger.info("Trial %d of study %s runs as %s.", trial.number, self.parent.study_name, run.info.run_id)

        with mlflow.start_run(run_id=run.info.run_id, nested=True):
            try:
                value = float(train_trial(trial))
                if not math.isfinite(value):
                    raise NonFiniteObjectiveError(f"Trial {trial.number} returned the objective value {value}, but a trial's value must be finite.")
            except optuna.TrialPruned as pruned:
                self._end(trial, "KILLED", {STATE_TAG: "PRUNED", PRUNED_TAG: "true", "tune.pruned_reason": str(pruned)})
                raise
            except KeyboardInterrupt:
                message = "Interrupted by Ctrl-C or SIGTERM, so the search queues the trial's parameters again."
                self._end(trial, "KILLED", {STATE_TAG: "FAIL", INTERRUPTED_TAG: "true", "error": message})
                raise
            except Exception as error:
                # Tag and end the run, then let Optuna decide whether the search goes on.
                self._end(trial, "FAILED", {STATE_TAG: "FAIL", "error": f"{type(error).__name__}: {error}"[:_MAX_TAG_LENGTH]})
                raise
            self._end(trial, "FINISHED", {STATE_TAG: "COMPLETE"})
        return value

    def _end(self, trial: optuna.Trial, status: str, tags: dict[str, str]) -> None:
        log_params_once(trial.params)
        mlflow.set_tags(tags)
        mlflow.end_run(status)


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    catch: tuple[type[Exception], ...],
    trial_runs: TrialRuns,
    poll_s: float = 5.0,
    max_retry: int | None = None,
) -> WorkerOutcome:
    """Run trials until the study counts ``n_trials``, then wait for other workers' trials.

    Trials that raise one of ``catch`` fail and the search goes on, while other errors
    stop this worker. Waiting lets this worker run the trials that a dead worker leaves
    behind, once their heartbeats are stale. On Ctrl-C the current trial's parameters
    are queued again before the interrupt propagates.
    """
    # NOTE: two workers that check the count at the same moment may both start a
    # trial, so a shared study can end with up to (workers - 1) trials over n_trials.
    announced_wait = waited = False
    while True:
        with silence_experimental_warnings():
            optuna.storages.fail_stale_trials(study)
        progress = study_progress(study)
        if progress.waiting or progress.counted < n_trials:
            try:
                study.optimize(objective, n_trials=1, catch=catch, gc_after_trial=True)
            except KeyboardInterrupt:
                _queue_interrupted_trial(study, trial_runs.current_trial, MAX_RETRY if max_retry is None else max_retry)
                raise
            waited = False
            continue
        if not progress.running:
            return WorkerOutcome(progress, finished_last=not waited)
        if not announced_wait:
            logger.info("No trials left to start; waiting for %d trial(s) running in other workers.", progress.running)
            announced_wait = True
        waited = True
        time.sleep(poll_s)


def _frozen(study: optuna.Study, number: int) -> FrozenTrial | None:
    # Optuna 5 keeps system attributes on frozen trials only.
    return next((trial for trial in study.get_trials(deepcopy=False) if trial.number == number), None)


def _queue_interrupted_trial(study: optuna.Study, number: int | None, max_retry: int) -> None:
    trial = None if number is None else _frozen(study, number)
    if trial is not None and trial.state == TrialState.FAIL:
        queue_retry(study, trial, max_retry)


# Study summary on the parent run


def _plot(name: str, plot: Callable, study: optuna.Study, **kwargs):
    try:
        with silence_experimental_warnings():
            axes = plot(study, **kwargs)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        logger.warning("Figure %s was not drawn: %s", name, error)
        return None
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    figure = first.figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    return figure


def study_figures(study: optuna.Study, objective: Objective) -> dict[str, object]:
    """Draw the optimisation history, parameter importances and per-epoch values of a study."""
    from optuna.visualization import matplotlib as optuna_plots

    trials = study.get_trials(deepcopy=False)
    figures = {}
    if any(trial.state == TrialState.COMPLETE for trial in trials):
        figures["figures/optimization_history.png"] = _plot(
            "optimization history", optuna_plots.plot_optimization_history, study, target_name=objective.metric,
        )
        figures["figures/param_importances.png"] = _plot(
            "parameter importances", optuna_plots.plot_param_importances, study, target_name=objective.metric,
        )
    if any(trial.intermediate_values for trial in trials):
        figures["figures/intermediate_values.png"] = _plot("intermediate values", optuna_plots.plot_intermediate_values, study)
    return {path: figure for path, figure in figures.items() if figure is not None}


def trials_table(study: optuna.Study) -> list[dict]:
    """Return one entry per trial: number, state, value, params, run id and retry links."""
    table = []
    for trial in study.get_trials(deepcopy=False):
        table.append({
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value if trial.value is not None and math.isfinite(trial.value) else None,
            "params": trial.params,
            "run_id": trial.user_attrs.get(RUN_ID_ATTR),
            "retry_of": trial.system_attrs.get(RETRY_OF_ATTR),
            "last_epoch": max(trial.intermediate_values) + 1 if trial.intermediate_values else None,
        })
    return table


def log_study_summary(study: optuna.Study, parent: ParentRun, objective: Objective, client: MlflowClient | None = None) -> FrozenTrial | None:
    """Log the best value and parameters, trial counts, figures and a trial table to the parent.

    Returns the best trial, or None when no trial is complete. Metrics take the number
    of finished trials as their step, so the UI plots the best value over the search.
    """
    client = client or MlflowClient()
    progress = study_progress(study)
    best = best_trial(study, objective)
    timestamp = int(time.time() * 1000)
    metrics = [
        Metric("n_trials_complete", progress.complete, timestamp, progress.finished),
        Metric("n_trials_pruned", progress.pruned, timestamp, progress.finished),
        Metric("n_trials_failed", progress.failed, timestamp, progress.finished),
    ]
    if best is not None:
        metrics.append(Metric(f"best_{objective.metric}", best.value, timestamp, progress.finished))
        tags = {
            "best_trial": str(best.number),
            "best_run_id": best.user_attrs.get(RUN_ID_ATTR, ""),
            "best_params": json.dumps(best.params)[:_MAX_TAG_LENGTH],
            **{f"best.{name}": str(value) for name, value in best.params.items()},
        }
        for key, value in tags.items():
            client.set_tag(parent.run_id, key, value)
    client.log_batch(parent.run_id, metrics=metrics, synchronous=True)
    client.log_text(parent.run_id, json.dumps(trials_table(study), indent=2), "tuning/trials.json")
    for path, figure in study_figures(study, objective).items():
        client.log_figure(parent.run_id, figure, path)
        close(figure)

    if best is None:
        logger.warning("Study %s has no complete trial yet: %s", study.study_name, progress)
    else:
        logger.info(
            "Study %s: best %s %.4f in trial %d with %s; %d complete, %d pruned, %d failed.",
            study.study_name, objective.metric, best.value, best.number, best.params, progress.complete, progress.pruned, progress.failed,
        )
    return best


def finish_parent_run(parent: ParentRun, worker_run_id: str, complete: bool, client: MlflowClient | None = None) -> None:
    """Mark a parent run that another worker owns FINISHED once the study is complete."""
    client = client or MlflowClient()
    client.set_tag(parent.run_id, "tune.complete", str(complete).lower())
    if complete and parent.run_id != worker_run_id:
        client.set_terminated(parent.run_id, RunStatus.to_string(RunStatus.FINISHED))


__all__ = [
    "NonFiniteObjectiveError", "ObjectiveMetricError", "StudyStorageError", "PruningCallback",
    "default_storage_url", "display_url", "open_storage", "queue_retry", "close_trial_run", "StaleTrialHandler",
    "Progress", "WorkerOutcome", "study_progress", "best_trial", "ParentRun", "attach_parent_run", "TrialRuns", "run_worker",
    "study_figures", "trials_table", "log_study_summary", "finish_parent_run",
]
