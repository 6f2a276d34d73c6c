"""Keras callbacks that report to an MLflow run from outside the library."""

from __future__ import annotations

import logging
import math
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)


class MlflowMetricsLogger(keras.callbacks.Callback):
    """Log every epoch's metrics (``loss``, ``val_loss``, ``val_f1``, ...) with ``step=epoch``.

    Writes to an explicit run through a client, so it works whatever run is active.
    Non-finite values are skipped with a warning, because MLflow stores them but the
    UI cannot plot them. The learning rate is logged as ``learning_rate``.
    """

    def __init__(self, run_id: str, client: MlflowClient | None = None):
        super().__init__()
        self.run_id = run_id
        self.client = client or MlflowClient()

    def on_epoch_end(self, epoch, logs=None):
        import time

        timestamp = int(time.time() * 1000)
        metrics = []
        values = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in values:
            try:
                values["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            except (TypeError, ValueError):
                pass
        for key, value in values.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(number):
                logger.warning("Metric %s is %s at epoch %d; not logged.", key, number, epoch)
                continue
            metrics.append(Metric(key, number, timestamp, epoch))
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)


class CheckpointLogger(keras.callbacks.Callback):
    """Save weights each epoch and log them under ``checkpoints/``.

    ``checkpoints/last.weights.h5`` is the latest epoch (for resuming);
    ``checkpoints/best.weights.h5`` the epoch with the best ``monitor`` value: the
    lowest with ``mode="min"``, the highest with ``mode="max"``. The best weights are
    restored into the model when training ends.

    The weights are saved during ``on_epoch_end``, once per epoch, and their upload
    runs in a background thread while the next epoch trains. At most one upload is in
    flight, so the next save waits for it. An upload error is raised there or when
    training ends.
    """

    # Created at the first upload and shut down when training ends.
    _uploader: ThreadPoolExecutor | None = None
    _upload: Future | None = None

    def __init__(
        self, run_id: str, folder: Path, monitor: str = "val_loss", every: int = 1, client: MlflowClient | None = None,
        mode: str = "min",
    ):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"CheckpointLogger mode={mode!r} is invalid: use 'min' (for losses) or 'max' (for scores such as val_f1).")
        self.run_id = run_id
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.monitor = monitor
        self.mode = mode
        self.every = max(1, int(every))
        self.client = client or MlflowClient()
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None

    @property
    def best_path(self) -> Path:
        return self.folder / "best.weights.h5"

    def _wait_for_upload(self) -> None:
        if self._upload is not None:
            upload, self._upload = self._upload, None
            upload.result()

    def _upload_files(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), "checkpoints")

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get(self.monitor, math.nan))
        last = self.folder / "last.weights.h5"
        # The previous upload may still be reading the files about to be overwritten.
        self._wait_for_upload()
        self.model.save_weights(last)
        improved = math.isfinite(value) and (value < self.best if self.mode == "min" else value > self.best)
        if improved:
            self.best, self.best_epoch = value, epoch
            shutil.copyfile(last, self.best_path)
        if improved or (epoch + 1) % self.every == 0:
            changed = [last, self.best_path] if improved else [last]
            if self._uploader is None:
                self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-upload")
            self._upload = self._uploader.submit(self._upload_files, changed)

    def on_train_end(self, logs=None):
        self._wait_for_upload()
        if self._uploader is not None:
            self._uploader.shutdown()
            self._uploader = None
        if self.best_epoch is None:
            logger.warning("No finite %s was seen; keeping the last weights.", self.monitor)
            return
        self.model.load_weights(self.best_path)
        logger.info("Restored the weights of epoch %d (%s=%.4f).", self.best_epoch + 1, self.monitor, self.best)
        self.client.log_artifacts(self.run_id, str(self.folder), "checkpoints")
        self.client.log_metric(self.run_id, f"best_{self.monitor}", self.best)
        self.client.set_tag(self.run_id, "best_epoch", str(self.best_epoch + 1))


def active_run_id() -> str:
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("No active MLflow run: start one before creating tracking callbacks.")
    return run.info.run_id
