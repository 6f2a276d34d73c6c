"""CheckpointLogger against a real SQLite tracking store, with uploads in the background."""

from __future__ import annotations

import tempfile

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tracking.callbacks import CheckpointLogger
from tracking.runs import scratch_dir


class FailingUploadClient(MlflowClient):
    """A client whose artifact uploads fail, as a server that went away would."""

    def log_artifact(self, run_id, local_path, artifact_path=None):
        raise OSError(f"upload of {local_path} failed")


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")


def test_checkpoints_logged_and_best_restored(tracking_store, tmp_path):
    x, y = regression_data()
    model = tiny_model()
    with mlflow.start_run() as run:
        checkpoints = CheckpointLogger(run.info.run_id, tmp_path / "checkpoints")
        model.fit(x, y, validation_data=(x, y), epochs=4, batch_size=8, callbacks=[checkpoints], verbose=0)

    client = MlflowClient()
    logged = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert logged == {"checkpoints/last.weights.h5", "checkpoints/best.weights.h5"}
    finished = client.get_run(run.info.run_id)
    assert finished.data.metrics["best_val_loss"] == pytest.approx(checkpoints.best)
    assert finished.data.tags["best_epoch"] == str(checkpoints.best_epoch + 1)

    best = tiny_model()
    best.load_weights(tmp_path / "checkpoints" / "best.weights.h5")
    for restored, saved in zip(model.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(restored, saved)


def test_upload_failure_stops_training(tracking_store, tmp_path):
    x, y = regression_data()
    model = tiny_model()
    with mlflow.start_run() as run:
        checkpoints = CheckpointLogger(run.info.run_id, tmp_path / "checkpoints", client=FailingUploadClient())
        with pytest.raises(OSError, match="upload of .* failed"):
            model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=8, callbacks=[checkpoints], verbose=0)


def test_scratch_dir_removed_after_block(tmp_path, monkeypatch):
    # A tune search trains many runs in one process, so each run's checkpoints go at once.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch_dir("checkpoints-") as folder:
        (folder / "last.weights.h5").write_bytes(b"0" * 16)
        assert folder.parent == tmp_path
        assert folder.name.startswith("checkpoints-")
    assert not folder.exists()
