"""The tune entry point in-process on real glomeruli tiles, with tiny UNets.

One module-wide study runs five queued trials that end complete, pruned, failed (a
patch size the UNet cannot pool) and failed with a NaN objective. Further tests interrupt a
search, or leave a trial of a dead worker behind, and resume.
"""

from __future__ import annotations

import json
import math
import time

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from mlproject import tune
from tests.e2e.conftest import TINY_CONFIG
from tracking import tuning

pytestmark = pytest.mark.slow

# val_loss rather than val_f1, because a diverged UNet still scores a finite val_f1
# of 0 while its val_loss is NaN.
SEARCH_SPACE = """
objective: {metric: val_loss, direction: minimize}
sampler: {type: random, seed: 0}
pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 0}
params:
  train.learning_rate: {type: float, low: 1.0e-12, high: 1.0e+30, log: true}
  data.patch_size: {type: categorical, choices: [64, 65]}
"""
# The seed is fixed, so every trial starts from the same weights. Pruning starts once a
# trial is complete, at its val_loss.
QUEUED = [
    {"train.learning_rate": 1e-2, "data.patch_size": 64},  # complete
    {"train.learning_rate": 1e-12, "data.patch_size": 64},  # learns nothing: pruned after epoch 1
    {"train.learning_rate": 1e-2, "data.patch_size": 65},  # fails: a 65 px patch cannot be pooled
    {"train.learning_rate": 1e30, "data.patch_size": 64},  # fails: val_loss is NaN
    {"train.learning_rate": 1e-2, "data.patch_size": 64},  # complete: as trial 0, so never worse
]
COMPLETE, PRUNED, BAD_PATCH, NAN = (0, 4), 1, 2, 3


def subset(aidpath, folder, names=("10003", "10014", "10025", "10063", "10064", "10102", "10103", "10133")):
    """Link eight AIDPATH tiles and masks into ``folder``: enough for three splits, quick to read."""
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True)
        for name in names:
            (folder / kind / f"{name}.png").symlink_to(aidpath / kind / f"{name}.png")
    return folder


def tune_args(folder, labelled_dir, study_name, n_trials, search_space=None):
    args = [
        "--target", "segment", "--n-trials", str(n_trials), "--storage", f"sqlite:///{folder / 'optuna.db'}",
        "--study-name", study_name, "--config", str(TINY_CONFIG), "--epochs", "2", "--labelled-dir", str(labelled_dir),
    ]
    if search_space is not None:
        args += ["--search-space", str(search_space)]
    return args


def trial_runs(study):
    client = MlflowClient()
    return {trial.number: client.get_run(trial.user_attrs[tuning.RUN_ID_ATTR]) for trial in study.get_trials() if tuning.RUN_ID_ATTR in trial.user_attrs}


@pytest.fixture(scope="module")
def search(tmp_path_factory, aidpath):
    """Run one study of the queued trials and return (study, parent run, trial runs)."""
    folder = tmp_path_factory.mktemp("search")
    labelled = subset(aidpath, folder / "labelled")
    space = folder / "space.yaml"
    space.write_text(SEARCH_SPACE)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        storage = f"sqlite:///{folder / 'optuna.db'}"
        study = optuna.create_study(storage=storage, study_name="queued", direction="minimize")
        for params in QUEUED:
            study.enqueue_trial(params)

        tune.main(tune_args(folder, labelled, "queued", len(QUEUED), space))

        study = optuna.load_study(study_name="queued", storage=storage)
        parent = MlflowClient().get_run(study.user_attrs[tuning.PARENT_RUN_ATTR])
        yield study, parent, trial_runs(study)
        mlflow.set_tracking_uri(None)


def test_trials_nest_under_one_parent(search):
    study, parent, runs = search
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tuning.ROLE_TAG] == "parent"
    assert parent.data.tags["tune.complete"] == "true"
    assert sorted(runs) == list(range(len(QUEUED)))
    children = MlflowClient().search_runs([parent.info.experiment_id], f"tags.`{tuning.PARENT_TAG}` = '{parent.info.run_id}'")
    assert sorted(int(run.data.tags[tuning.TRIAL_TAG]) for run in children) == list(range(len(QUEUED)))
    for number, run in runs.items():
        assert run.data.params["train.learning_rate"] == str(QUEUED[number]["train.learning_rate"])


def test_complete_trials_log_epoch_metrics(search):
    study, _, runs = search
    client = MlflowClient()
    for number in COMPLETE:
        assert study.trials[number].state == TrialState.COMPLETE
        assert runs[number].info.status == "FINISHED"
        assert runs[number].data.tags[tuning.STATE_TAG] == "COMPLETE"
        history = client.get_metric_history(runs[number].info.run_id, "val_loss")
        assert [metric.step for metric in history] == [0, 1]
        assert study.trials[number].value == min(metric.value for metric in history)


def test_pruned_trial_ends_killed(search):
    study, _, runs = search
    run = runs[PRUNED]
    assert study.trials[PRUNED].state == TrialState.PRUNED
    assert run.info.status == "KILLED"
    assert run.data.tags[tuning.STATE_TAG] == "PRUNED"
    assert run.data.tags[tuning.PRUNED_TAG] == "true"
    history = MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert [metric.step for metric in history] == [0]


def test_failed_trial_ends_failed(search):
    study, _, runs = search
    run = runs[BAD_PATCH]
    assert study.trials[BAD_PATCH].state == TrialState.FAIL
    assert run.info.status == "FAILED"
    assert run.data.tags[tuning.STATE_TAG] == "FAIL"
    assert "patch_size=65" in run.data.tags["error"]
    assert study.trials[NAN + 1].state == TrialState.COMPLETE, "the search goes on after failed trials"


def test_nan_objective_never_best(search):
    study, parent, runs = search
    run = runs[NAN]
    assert study.trials[NAN].state == TrialState.FAIL
    assert run.info.status == "FAILED"
    assert "val_loss is nan" in run.data.tags["error"]
    assert parent.data.tags["best_trial"] == "0", "the earliest of equal trials"
    assert math.isfinite(parent.data.metrics["best_val_loss"])
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/tuning/trials.json"))
    assert [entry["state"] for entry in table] == ["COMPLETE", "PRUNED", "FAIL", "FAIL", "COMPLETE"]
    assert table[NAN]["value"] is None


def test_best_model_registered(search):
    _, parent, runs = search
    best_run = runs[int(parent.data.tags["best_trial"])]
    client = MlflowClient()
    (version,) = client.search_model_versions("name='unet-glomeruli'")
    assert version.run_id == best_run.info.run_id
    assert version.tags["tune_study"] == "queued"
    assert version.tags["source_run_id"] == best_run.info.run_id
    assert float(version.tags["best_val_loss"]) == pytest.approx(parent.data.metrics["best_val_loss"], rel=1e-5)
    assert "test_f1" in best_run.data.metrics
    assert parent.data.tags["registered_model_version"] == str(version.version)


def test_parent_logs_summary(search):
    _, parent, _ = search
    assert float(parent.data.tags["best.train.learning_rate"]) == 1e-2
    assert parent.data.metrics["n_trials_complete"] == 2
    assert parent.data.metrics["n_trials_pruned"] == 1
    assert parent.data.metrics["n_trials_failed"] == 2
    paths = {artifact.path for artifact in MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/optimization_history.png", "figures/param_importances.png", "figures/intermediate_values.png"} <= paths


def test_resume_after_interrupt(tracking_store, tmp_path, aidpath, monkeypatch):
    labelled = subset(aidpath, tmp_path / "labelled")
    args = tune_args(tmp_path, labelled, "resumed", 1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    # Ctrl-C while trial 0 reads its images.
    train_segmentation = tune.train_segmentation
    monkeypatch.setattr(tune, "train_segmentation", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tune.main(args)
    monkeypatch.setattr(tune, "train_segmentation", train_segmentation)

    study = optuna.load_study(study_name="resumed", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    client = MlflowClient()
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
    assert client.get_run(parent_id).info.status == "KILLED"
    interrupted = trial_runs(study)[0]
    assert interrupted.info.status == "KILLED"
    assert interrupted.data.tags[tuning.INTERRUPTED_TAG] == "true"

    tune.main(args)

    study = optuna.load_study(study_name="resumed", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params == study.trials[0].params
    runs = trial_runs(study)
    assert runs[1].data.tags["tune.retry_of"] == "0"
    for run in runs.values():
        assert run.data.tags[tuning.PARENT_TAG] == parent_id
    workers = client.search_runs([runs[0].info.experiment_id], f"tags.`{tuning.ROLE_TAG}` = 'worker'")
    assert [worker.data.tags[tuning.PARENT_TAG] for worker in workers] == [parent_id]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_trials_complete"] == 1
    assert parent.data.tags["registered_model_version"] == "1"


def test_stale_trial_retried(tracking_store, tmp_path, aidpath, monkeypatch):
    labelled = subset(aidpath, tmp_path / "labelled")
    monkeypatch.setattr(tuning, "HEARTBEAT_INTERVAL_S", 1)
    monkeypatch.setattr(tuning, "GRACE_PERIOD_S", 2)
    storage = tuning.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")

    # A worker that dies mid-trial: its parent and trial runs stay RUNNING, and its trial
    # stops sending heartbeats.
    client = MlflowClient()
    dead_parent = client.create_run("0", run_name="dead-worker")
    study = optuna.create_study(storage=storage, study_name="stale", direction="maximize")
    study.set_user_attr(tuning.PARENT_RUN_ATTR, dead_parent.info.run_id)
    trial = study.ask()
    learning_rate = trial.suggest_float("train.learning_rate", 1e-4, 1e-2, log=True)
    dead_trial = client.create_run("0", run_name="trial-000", tags={tuning.PARENT_TAG: dead_parent.info.run_id})
    trial.set_user_attr(tuning.RUN_ID_ATTR, dead_trial.info.run_id)
    storage.record_heartbeat(trial._trial_id)  # private id: the public Trial has no other handle
    time.sleep(3)

    tune.main(tune_args(tmp_path, labelled, "stale", 1))

    study = optuna.load_study(study_name="stale", storage=storage)
    assert [trial.state for trial in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].params["train.learning_rate"] == learning_rate
    dead = client.get_run(dead_trial.info.run_id)
    assert dead.info.status == "KILLED"
    assert dead.data.tags[tuning.INTERRUPTED_TAG] == "true"
    retry = client.get_run(study.trials[1].user_attrs[tuning.RUN_ID_ATTR])
    assert retry.data.tags[tuning.PARENT_TAG] == dead_parent.info.run_id
    assert retry.data.tags["tune.retry_of"] == "0"
    assert client.get_run(dead_parent.info.run_id).info.status == "FINISHED"


def test_pretrain_target_registers_encoder(tracking_store, tmp_path, multistain_patches):
    args = [
        "--target", "pretrain", "--n-trials", "1", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--study-name", "encoder",
        "--config", str(TINY_CONFIG), "--epochs", "2", "--data-dir", str(multistain_patches), "--stain", "16",
    ]
    tune.main(args)

    study = optuna.load_study(study_name="encoder", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    version = MlflowClient().get_model_version_by_alias("unet-encoder-simclr", "champion")
    assert version.run_id == trial.user_attrs[tuning.RUN_ID_ATTR]
    assert version.tags["stains"] == "16"
    assert float(version.tags["best_val_loss"]) == pytest.approx(trial.value, rel=1e-5)
    run = MlflowClient().get_run(version.run_id)
    assert run.data.tags["entry_point"] == "pretrain"
    assert "method.projection_head.hidden_units" in run.data.params


BAD_PARAMETERS = [
    (["--target", "udagan"], "cannot be tuned"),
    (["--epochs", "2", "--search-space", "{space}"], "train.epochs is both set by a parameter and searched"),
    (["--n-trials", "0"], "at least 1 trial"),
    (["--labelled-dir", "{missing}"], "missing"),
    (["--target", "pretrain", "--method", "hrcsco"], "trains in stages"),
]


def test_bad_parameters_fail_before_study(tracking_store, tmp_path, aidpath):
    labelled = subset(aidpath, tmp_path / "labelled")
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.epochs: {type: int, low: 1, high: 3}\n")
    client = MlflowClient()
    for extra, message in BAD_PARAMETERS:
        args = ["--labelled-dir", str(labelled), "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"]
        args += [value.format(space=space, missing=tmp_path / "missing") for value in extra]
        with pytest.raises(SystemExit) as exit_info:
            tune.main(args)
        assert exit_info.value.code == 2, extra
        run = client.search_runs(["0"], order_by=["attributes.start_time DESC"], max_results=1)[0]
        assert run.info.status == "FAILED", extra
        assert message in run.data.tags["error"], extra
    assert not (tmp_path / "optuna.db").exists()


def test_register_as_none_skips_registry(tmp_path, aidpath):
    labelled = subset(aidpath, tmp_path / "labelled")
    args = tune.parse_args(["--labelled-dir", str(labelled), "--register-as", "none"])
    assert tune.prepare_job(args).register_as is None
    args = tune.parse_args(["--labelled-dir", str(labelled)])
    assert tune.prepare_job(args).register_as == "unet-glomeruli"
    args = tune.parse_args(["--target", "pretrain", "--data-dir", str(tmp_path), "--method", "simclr"])
    assert tune.prepare_job(args).register_as == "unet-encoder-simclr"
