"""Tuning glue without training: pruning callback, trial counts, and nested trial runs."""

from __future__ import annotations

import math
import threading
import time

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tracking import tuning
from tracking.search_space import Objective


def _trial(study, value, state=TrialState.COMPLETE, system_attrs=None):
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    study.add_trial(optuna.trial.create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"x": 0.5}, distributions={"x": distribution}, system_attrs=system_attrs or {},
    ))


def test_pruning_callback_reports_each_epoch():
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    trial = study.ask()
    callback = tuning.PruningCallback(trial, "val_loss")
    callback.on_epoch_end(0, {"val_loss": 0.8, "loss": 0.9})
    callback.on_epoch_end(1, {"val_loss": 0.7, "loss": 0.8})
    frozen = study.get_trials()[0]
    assert frozen.intermediate_values == {0: 0.8, 1: 0.7}


def test_pruning_callback_prunes():
    study = optuna.create_study(direction="minimize", pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    callback = tuning.PruningCallback(study.ask(), "val_loss")
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        callback.on_epoch_end(0, {"val_loss": 2.0})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_pruning_callback_rejects_non_finite(value):
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    callback = tuning.PruningCallback(trial, "val_f1")
    with pytest.raises(tuning.NonFiniteObjectiveError, match="epoch 3"):
        callback.on_epoch_end(2, {"val_f1": value})
    assert study.get_trials()[0].intermediate_values == {}


def test_pruning_callback_names_missing_metric():
    callback = tuning.PruningCallback(optuna.create_study().ask(), "val_f2")
    with pytest.raises(tuning.ObjectiveMetricError, match="loss, val_f1"):
        callback.on_epoch_end(0, {"val_f1": 0.5, "loss": 0.3})


def test_best_trial_follows_direction():
    study = optuna.create_study(direction="maximize")
    _trial(study, 0.2)
    _trial(study, 0.7)
    _trial(study, 0.7)
    _trial(study, None, TrialState.FAIL)
    _trial(study, None, TrialState.PRUNED)
    assert tuning.best_trial(study, Objective("val_f1", "maximize")).number == 1
    assert tuning.best_trial(study, Objective("val_loss", "minimize")).number == 0


def test_best_trial_none_without_complete():
    study = optuna.create_study()
    _trial(study, None, TrialState.FAIL)
    assert tuning.best_trial(study, Objective("val_loss", "minimize")) is None


def test_objective_never_prefers_nan():
    objective = Objective("val_f1", "maximize")
    assert not objective.is_better(math.nan, None)
    assert not objective.is_better(math.nan, 0.1)
    assert objective.is_better(0.2, 0.1)
    assert not Objective("val_loss", "minimize").is_better(0.2, 0.1)


def test_retried_trial_counts_once():
    study = optuna.create_study()
    _trial(study, 0.3)
    _trial(study, None, TrialState.FAIL)
    failed = study.get_trials()[1]
    assert tuning.queue_retry(study, failed, max_retry=2)
    progress = tuning.study_progress(study)
    assert (progress.complete, progress.failed, progress.waiting) == (1, 1, 1)
    assert progress.counted == 2

    retry = study.get_trials()[2]
    assert retry.params == failed.params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 1


def test_retry_stops_at_max_retry():
    study = optuna.create_study()
    _trial(study, None, TrialState.FAIL, system_attrs={"failed_trial": 0, "retry_history": [7, 8]})
    assert not tuning.queue_retry(study, study.get_trials()[0], max_retry=2)
    assert tuning.study_progress(study).counted == 1


def test_default_storage_beside_mlflow_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tuning.default_storage_url(f"sqlite:///{tmp_path}/store/mlflow.db") == f"sqlite:///{tmp_path}/store/optuna.db"
    assert tuning.default_storage_url("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert tuning.default_storage_url("http://127.0.0.1:5000") == f"sqlite:///{tmp_path}/optuna.db"


def test_display_url_masks_password():
    assert tuning.display_url("postgresql://tune:secret@127.0.0.1:5432/optuna") == "postgresql://tune:***@127.0.0.1:5432/optuna"
    with pytest.raises(tuning.StudyStorageError, match="not a database URL"):
        tuning.display_url("optuna.db")


def test_unreachable_storage_names_fix(tmp_path):
    with pytest.raises(tuning.StudyStorageError, match="Check that the database runs"):
        tuning.open_storage(f"sqlite:///{tmp_path}/missing/folder/optuna.db")


def test_storage_retries_table_creation_race(tmp_path, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    real_storage = optuna.storages.RDBStorage
    calls = []

    def racing_storage(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise IntegrityError("CREATE TYPE studydirection", {}, Exception("duplicate key value"))
        return real_storage(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing_storage)
    monkeypatch.setattr(tuning.time, "sleep", lambda seconds: None)
    storage = tuning.open_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert isinstance(storage, real_storage)
    assert len(calls) == 2


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One MLflow store and one Optuna storage for this module, because creating each takes seconds."""
    folder = tmp_path_factory.mktemp("tuning")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        yield tuning.open_storage(f"sqlite:///{folder / 'optuna.db'}")
        mlflow.set_tracking_uri(None)


@pytest.fixture
def nested(stores, request):
    """A new study, its parent run, and TrialRuns nesting under it."""
    study = optuna.create_study(storage=stores, study_name=request.node.name, direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    with mlflow.start_run() as parent_run:
        parent = tuning.attach_parent_run(study, True, parent_run.info.run_id, "sqlite:///optuna.db")
        yield study, parent, tuning.TrialRuns(parent, "segment")


def _child(study, number):
    run_id = study.get_trials()[number].user_attrs[tuning.RUN_ID_ATTR]
    return MlflowClient().get_run(run_id)


def test_trial_runs_nest_under_parent(nested):
    study, parent, trial_runs = nested
    study.optimize(trial_runs.objective(lambda trial: trial.suggest_float("train.learning_rate", 0.1, 0.2)), n_trials=2)
    for number in (0, 1):
        run = _child(study, number)
        assert run.data.tags[tuning.PARENT_TAG] == parent.run_id
        assert run.data.tags[tuning.TRIAL_TAG] == str(number)
        assert run.data.tags[tuning.STATE_TAG] == "COMPLETE"
        assert run.info.status == "FINISHED"
        assert "train.learning_rate" in run.data.params
    assert study.user_attrs[tuning.PARENT_RUN_ATTR] == parent.run_id
    assert mlflow.active_run().info.run_id == parent.run_id


def test_pruned_trial_run_killed(nested):
    study, _, trial_runs = nested

    def train(trial):
        trial.report(0.1, step=0)
        raise optuna.TrialPruned("below threshold")

    study.optimize(trial_runs.objective(train), n_trials=1)
    run = _child(study, 0)
    assert study.get_trials()[0].state == TrialState.PRUNED
    assert run.info.status == "KILLED"
    assert run.data.tags[tuning.STATE_TAG] == "PRUNED"
    assert run.data.tags[tuning.PRUNED_TAG] == "true"


def test_failed_trial_run_failed(nested):
    study, _, trial_runs = nested

    def train(trial):
        raise ValueError("patch_size=65 does not fit")

    study.optimize(trial_runs.objective(train), n_trials=2, catch=(ValueError,))
    for number in (0, 1):
        run = _child(study, number)
        assert study.get_trials()[number].state == TrialState.FAIL
        assert run.info.status == "FAILED"
        assert run.data.tags[tuning.STATE_TAG] == "FAIL"
        assert "patch_size=65" in run.data.tags["error"]


def test_nan_objective_fails_trial(nested):
    study, _, trial_runs = nested
    study.optimize(trial_runs.objective(lambda trial: 0.8), n_trials=1)
    study.optimize(trial_runs.objective(lambda trial: math.nan), n_trials=1, catch=(ArithmeticError,))
    assert study.get_trials()[1].state == TrialState.FAIL
    assert _child(study, 1).info.status == "FAILED"
    assert "must be finite" in _child(study, 1).data.tags["error"]
    assert tuning.best_trial(study, Objective("val_f1", "maximize")).number == 0


def test_interrupted_trial_run_killed(nested):
    study, _, trial_runs = nested

    def train(trial):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tuning.run_worker(study, trial_runs.objective(train), 1, (ValueError,), trial_runs)
    run = _child(study, 0)
    assert run.info.status == "KILLED"
    assert run.data.tags[tuning.INTERRUPTED_TAG] == "true"
    states = [trial.state for trial in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]


def test_summary_logged_to_parent(nested):
    study, parent, trial_runs = nested
    def train(trial):
        value = trial.suggest_float("x", 0.6, 0.9)
        trial.report(value, step=0)
        return value

    study.optimize(trial_runs.objective(train), n_trials=3)
    best = tuning.log_study_summary(study, parent, Objective("val_f1", "maximize"))
    client = MlflowClient()
    run = client.get_run(parent.run_id)
    assert run.data.metrics["best_val_f1"] == best.value
    assert run.data.tags["best_trial"] == str(best.number)
    assert float(run.data.tags["best.x"]) == best.params["x"]
    assert run.data.metrics["n_trials_complete"] == 3
    artifacts = {artifact.path for artifact in client.list_artifacts(parent.run_id, "figures")}
    assert artifacts == {"figures/optimization_history.png", "figures/param_importances.png", "figures/intermediate_values.png"}


def test_worker_runs_to_n_trials(nested):
    study, _, trial_runs = nested
    outcome = tuning.run_worker(study, trial_runs.objective(lambda trial: 0.7), 2, (ValueError,), trial_runs)
    assert [trial.state for trial in study.get_trials()] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert outcome.progress.counted == 2
    assert outcome.finished_last

    outcome = tuning.run_worker(study, trial_runs.objective(lambda trial: 0.7), 2, (ValueError,), trial_runs)
    assert len(study.get_trials()) == 2, "a finished study runs no more trials"
    assert outcome.finished_last


def test_worker_waits_for_other_worker(nested):
    study, _, trial_runs = nested
    other = study.ask()

    def finish_other_after_ours():
        while not any(trial.state == TrialState.COMPLETE for trial in study.get_trials()):
            time.sleep(0.1)
        # The worker checks the study right after its own trial, so by now it waits.
        time.sleep(1.0)
        study.tell(other, 0.9)

    finisher = threading.Thread(target=finish_other_after_ours)
    finisher.start()
    try:
        outcome = tuning.run_worker(study, trial_runs.objective(lambda trial: 0.7), 2, (ValueError,), trial_runs, poll_s=0.2)
    finally:
        finisher.join()
    assert [trial.state for trial in study.get_trials()] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert not outcome.finished_last, "the other worker's trial ended last"
