"""Two ``mlflow run -e tune`` workers share one Optuna study in the stack's PostgreSQL.

The workers track to the stack's authenticated MLflow server and keep the study in its
``optuna`` database, with the password in PGPASSWORD rather than in the logged URL.
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import TINY_CONFIG
from tests.integration.test_projects import project_environment
from tests.unit.test_tune import subset
from tracking import tuning

pytestmark = pytest.mark.integration

N_TRIALS = 4


def test_two_workers_share_study(server_env, tracking_stack, tmp_path, aidpath):
    labelled = subset(aidpath, tmp_path / "labelled")
    storage = make_url(tracking_stack.stack.optuna_storage_url)
    storage_without_password = URL.create(
        storage.drivername, username=storage.username, host=storage.host, port=storage.port, database=storage.database,
    ).render_as_string(hide_password=False)
    study_name = f"two-workers-{secrets.token_hex(4)}"
    experiment = f"tune-{secrets.token_hex(4)}"
    # Create the experiment first, because two workers creating it at once collide.
    client = MlflowClient(server_env.uri)
    experiment_id = client.create_experiment(experiment)

    env = {**project_environment(tracking_stack, experiment), "PGPASSWORD": storage.password}
    command = [
        sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "-e", "tune", "--env-manager", "local",
        "-P", f"n_trials={N_TRIALS}", "-P", f"storage={storage_without_password}", "-P", f"study_name={study_name}",
        "-P", f"config={TINY_CONFIG}", "-P", "epochs=2", "-P", f"labelled_dir={labelled}", "-P", "register_as=none",
    ]
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

    storage_url = storage.render_as_string(hide_password=False)
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    try:
        trials = study.get_trials()
        numbers = [trial.number for trial in trials]
        # Two workers may both start a trial when one is left, so the study can hold one extra.
        assert len(trials) in (N_TRIALS, N_TRIALS + 1)
        assert numbers == list(range(len(trials)))
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for trial in trials)

        parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
        children = client.search_runs([experiment_id], f"tags.`{tuning.PARENT_TAG}` = '{parent_id}' and tags.`{tuning.ROLE_TAG}` = 'trial'")
        assert sorted(int(run.data.tags[tuning.TRIAL_TAG]) for run in children) == numbers
        assert sorted(run.info.run_id for run in children) == sorted(trial.user_attrs[tuning.RUN_ID_ATTR] for trial in trials)

        workers = client.search_runs([experiment_id], f"tags.`{tuning.ROLE_TAG}` != 'trial'")
        assert sorted(run.data.tags[tuning.ROLE_TAG] for run in workers) == ["parent", "worker"]
        worker_ids = {run.info.run_id for run in workers}
        assert {run.data.tags[tuning.WORKER_TAG] for run in children} == worker_ids, "both workers ran trials"
        for run in workers:
            assert run.data.params["storage"] == storage_without_password, "no password in the logged storage URL"
        parent = client.get_run(parent_id)
        assert parent.data.tags["tune.complete"] == "true"
        assert parent.info.status == "FINISHED"
    finally:
        optuna.delete_study(study_name=study_name, storage=storage_url)
