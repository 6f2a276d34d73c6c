"""Two tune workers share one Optuna study in PostgreSQL.

Needs a PostgreSQL database that the test may write to, named by
KIDNEY_SSL_TEST_POSTGRES_URL (for example postgresql://tune@127.0.0.1:5432/optuna, with
any password in PGPASSWORD). Without it the test is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import TINY_CONFIG
from tests.unit.test_tune import subset
from tracking import tuning

pytestmark = pytest.mark.integration

POSTGRES_URL_VARIABLE = "KIDNEY_SSL_TEST_POSTGRES_URL"
N_TRIALS = 4


@pytest.fixture
def postgres_url():
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: point it at an empty PostgreSQL database to run this test.")
    return url


def test_two_workers_share_study(tracking_store, tmp_path, aidpath, postgres_url):
    labelled = subset(aidpath, tmp_path / "labelled")
    study_name = f"two-workers-{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable, "-m", "mlproject.tune", "--target", "segment", "--n-trials", str(N_TRIALS), "--storage", postgres_url,
        "--study-name", study_name, "--config", str(TINY_CONFIG), "--epochs", "2", "--labelled-dir", str(labelled),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Create MLflow's tables first: two processes migrating one new SQLite file collide.
    MlflowClient().search_experiments()
    logs = [open(tmp_path / f"worker-{index}.log", "w") for index in range(2)]
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        codes = [worker.wait(timeout=900) for worker in workers]
    finally:
        for worker, log in zip(workers, logs):
            if worker.poll() is None:
                worker.kill()
            log.close()
    for index, code in enumerate(codes):
        assert code == 0, (tmp_path / f"worker-{index}.log").read_text()[-6000:]

    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    try:
        trials = study.get_trials()
        numbers = [trial.number for trial in trials]
        # Two workers may both start a trial when one is left, so the study can hold one extra.
        assert len(trials) in (N_TRIALS, N_TRIALS + 1)
        assert numbers == list(range(len(trials)))
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for trial in trials)

        client = MlflowClient()
        parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
        experiment_id = client.get_run(parent_id).info.experiment_id
        children = client.search_runs([experiment_id], f"tags.`{tuning.PARENT_TAG}` = '{parent_id}' and tags.`{tuning.ROLE_TAG}` = 'trial'")
        assert sorted(int(run.data.tags[tuning.TRIAL_TAG]) for run in children) == numbers
        assert sorted(run.info.run_id for run in children) == sorted(trial.user_attrs[tuning.RUN_ID_ATTR] for trial in trials)

        workers = client.search_runs([experiment_id], f"tags.`{tuning.STUDY_TAG}` = '{study_name}' and tags.`{tuning.ROLE_TAG}` != 'trial'")
        assert sorted(run.data.tags[tuning.ROLE_TAG] for run in workers) == ["parent", "worker"]
        worker_ids = {run.info.run_id for run in workers}
        assert {run.data.tags[tuning.WORKER_TAG] for run in children} == worker_ids, "both workers ran trials"
        assert client.get_run(parent_id).data.tags["tune.complete"] == "true"
    finally:
        optuna.delete_study(study_name=study_name, storage=postgres_url)
