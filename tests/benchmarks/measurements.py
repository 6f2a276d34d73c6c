"""Measurements that run in a fresh child process, one per call of :func:`run_child`.

Each child measures one thing (a training variant of one task, or repeated encoder
loads), writes a JSON result and exits, so its peak resident memory (``ru_maxrss``)
belongs to that measurement alone. TensorFlow's allocator is invisible to
``tracemalloc``, which is why memory comes from the operating system.

Training variants:

* ``in-memory``: the model's training step on batches already in memory, tracking off.
  The batches are the first few batches of the entry point's own pipeline, cycled.
* ``pipeline``: the entry point's datasets (the patch samplers, the view augmentation),
  tracking off.
* ``tracked``: the entry point's datasets and its MLflow callbacks, inside an MLflow
  run in the SQLite store the parent process created.

Every variant validates on the same cached validation set after each epoch, as the
entry points do, so the throughput ratio between variants isolates data loading and
tracking. The first ``warmup_epochs`` epochs (graph tracing, cache filling) are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

logger = logging.getLogger(__name__)

VARIANTS = ("in-memory", "pipeline", "tracked")
SEGMENT_TASK = "segment"
# Distinct batches cycled by the in-memory variant: enough that the step does not see
# one batch over and over, few enough to fit in memory at any batch size.
IN_MEMORY_BATCHES = 8


def peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mib() -> float | None:
    """Return the peak memory TensorFlow allocated on the first GPU in MiB, or None without one."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def make_epoch_clock():
    """Create an ``EpochClock`` callback. The class is defined here, so importing this module does not import Keras."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Record the wall-clock and CPU seconds of every epoch, of its validation pass and of its epoch-end callbacks.

        Placed last in the callback list, so an epoch runs from this callback's
        ``on_epoch_begin`` to its ``on_epoch_end`` and includes every other callback's
        ``on_epoch_end``, but not the end-of-training work of any callback. The
        epoch-end callbacks (the tracking callbacks, where there are any) run between
        the end of validation and this callback's ``on_epoch_end``.
        """

        def __init__(self):
            super().__init__()
            self.epochs: list[dict] = []
            self._epoch_start = (0.0, 0.0)
            self._validation_start = 0.0
            self._validation_end: float | None = None

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = (time.perf_counter(), time.process_time())
            self._validation_end = None
            self.epochs.append({"epoch": epoch, "validation_seconds": 0.0})

        def on_test_begin(self, logs=None):
            self._validation_start = time.perf_counter()

        def on_test_end(self, logs=None):
            self._validation_end = time.perf_counter()
            self.epochs[-1]["validation_seconds"] += self._validation_end - self._validation_start

        def on_epoch_end(self, epoch, logs=None):
            now, cpu = time.perf_counter(), time.process_time()
            wall_start, cpu_start = self._epoch_start
            current = self.epochs[-1]
            current.update(seconds=now - wall_start, cpu_seconds=cpu - cpu_start)
            current["callbacks_seconds"] = now - self._validation_end if self._validation_end is not None else 0.0

    return EpochClock()


def in_memory_stream(dataset, batches: int = IN_MEMORY_BATCHES):
    """Return an endless dataset cycling the first ``batches`` batches of ``dataset``, held as tensors."""
    import tensorflow as tf

    first_batches = list(dataset.take(batches))
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *first_batches)
    return tf.data.Dataset.from_tensor_slices(stacked).repeat()


def apply_mode(mode: str) -> None:
    """Set the global dtype policy for ``mode`` before any model is built."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if mode == "mixed-float16" else "float32")


def mode_callbacks(mode: str) -> list:
    """Return callbacks that switch XLA off at the start of ``fit()`` in the ``no-xla`` mode.

    The library compiles the model inside its training functions, and ``fit()`` builds
    its train function before ``on_train_begin``, so the callback rebuilds it. Other
    modes keep Keras's choice: XLA on where a GPU is present, off on CPU only (Keras 3.15).
    """
    import keras

    class XlaOff(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.jit_compile = False
            self.model.make_train_function(force=True)

    return [XlaOff()] if mode == "no-xla" else []


class RunClock:
    """Sum of the seconds spent in tracking calls at the start and at the end of a run."""

    def __init__(self):
        self.seconds = {"run_start_seconds": 0.0, "run_end_seconds": 0.0}

    @contextmanager
    def measure(self, key: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] += time.perf_counter() - started


def split_task(task: str) -> tuple[str, str | None]:
    """Split a task such as ``hrcsco:contrastive`` into the method and the stage (None for one stage)."""
    method, _, stage = task.partition(":")
    return method, stage or None


def resolve_training_config(spec: dict) -> dict:
    """Resolve the task's configuration with the benchmark's epochs, steps and stain, per stage where there is one."""
    from training import config as configuration

    method, stage = split_task(spec["task"])
    overrides = {
        "train.epochs": int(spec["warmup_epochs"]) + int(spec["epochs"]),
        "train.steps_per_epoch": int(spec["steps"]),
        "train.batch_size": spec.get("batch_size") or "",
    }
    config = configuration.resolve(method, spec["config"], overrides)
    if spec.get("stain") and "stain" in config.get("method", {}):
        # Methods trained per stain pick their stain matrix by stain code.
        config["method"]["stain"] = spec["stain"]
    if stage:
        from training.methods import stage_config

        config = stage_config(config, stage)
    return config


def build_method_model(spec: dict, config: dict, images):
    """Seed and build the method's (or stage's) model and datasets, and compile the model.

    The calls follow ``mlproject.pretrain``. A later stage starts from a freshly built
    model of the stage before it, because throughput does not depend on the weights.
    """
    from tracking.runs import set_seed
    from training.methods import get_method
    from training.pretraining import compile_method_model, make_crop_datasets

    method_name, stage_name = split_task(spec["task"])
    set_seed(int(config["train"]["seed"]))
    method = get_method(method_name)
    if stage_name is None:
        model = method.build_model(config)
        datasets = make_crop_datasets(images, method, config)
    else:
        from training.methods import stage_config

        index = method.stage_names.index(stage_name)
        previous = None
        if index > 0:
            before = method.stages[index - 1]
            previous = before.build_model(stage_config(config, before.name), None)
        model = method.stages[index].build_model(config, previous)
        datasets = make_crop_datasets(images, method.stages[index], config)
    compile_method_model(model, config)
    return method, model, datasets


def log_pretraining_inputs(config: dict, method_name: str, data_dir, images, stains: str) -> str:
    """Log what ``mlproject.pretrain.prepare_pretraining`` logs once the images are read; return the dataset digest."""
    import mlflow

    from tracking.datasets import log_dataset
    from tracking.runs import log_config

    mlflow.set_tags({"method": method_name, "stains": stains})
    log_config(config, {"data_dir": str(data_dir), "method": method_name})
    digest = log_dataset(data_dir, images.files, name=f"unlabelled:{data_dir}", context="training")
    mlflow.log_params({"n_train_images": len(images.train), "n_validation_images": len(images.validation), "domains": ",".join(images.domains)})
    return digest


def train_pretrain_task(spec: dict, clock) -> dict:
    """Train one self-supervised method, or one stage of it, as the ``pretrain`` entry point does.

    A one-stage method trains through ``mlproject.pretrain.run_single_stage`` itself.
    A stage repeats the calls of ``mlproject.pretrain.run_stages`` for that stage, in a
    child run as there. The tracked variant times its tracking calls before and after
    training, leaving out the reading of the images. It registers the encoder of a
    one-stage method or of a last stage.
    """
    import mlflow

    from mlproject.common import entry_run
    from mlproject.pretrain import run_single_stage
    from registry.encoders import register_encoder
    from tracking.callbacks import CheckpointLogger, MlflowMetricsLogger
    from tracking.models import encoder_signature, log_keras_model
    from tracking.runs import log_config, scratch_dir, set_seed
    from training.data.unlabelled import load_unlabelled
    from training.methods import get_method
    from training.pretraining import fit_method_model

    method_name, stage_name = split_task(spec["task"])
    variant, mode = spec["variant"], spec["mode"]
    config = resolve_training_config(spec)
    data, train = config["data"], config["train"]
    data_dir = spec["data_dir"]
    stain = spec.get("stain") or None
    images = load_unlabelled(
        data_dir, int(data["patch_size"]), float(data["image_scale"]), float(data["validation_share"]),
        domains=[stain] if stain else None, seed=int(train["seed"]), progress=False,
    )
    stains = stain or ",".join(images.domains)

    if variant != "tracked":
        _, model, datasets = build_method_model(spec, config, images)
        if variant == "in-memory":
            datasets = replace(datasets, train=in_memory_stream(datasets.train))
        fit_method_model(model, datasets, config, callbacks=[*mode_callbacks(mode), clock])
        return {"jit_compile": bool(model.jit_compile)}

    run_clock = RunClock()
    method = get_method(method_name)
    with entry_run("pretrain", run_name=f"benchmark-{method_name}", tags={"method": method_name}) as parent:
        with run_clock.measure("run_start_seconds"):
            digest = log_pretraining_inputs(config, method_name, data_dir, images, stains)
        set_seed(int(train["seed"]))

        if stage_name is None:
            encoder, checkpoints = run_single_stage(method, config, images, callbacks=[*mode_callbacks(mode), clock])
        else:
            from tracking.stages import log_stage_weights, stage_run

            with stage_run(parent.info.run_id, stage_name, run_name=f"{method_name}-{stage_name}", tags={"method": method_name}):
                with run_clock.measure("run_start_seconds"):
                    log_config(config, {"stage": stage_name})
                _, model, datasets = build_method_model(spec, config, images)
                run_id = mlflow.active_run().info.run_id
                with scratch_dir("checkpoints-") as folder:
                    checkpoints = CheckpointLogger(run_id, folder, monitor="val_loss")
                    fit_method_model(model, datasets, config, callbacks=[MlflowMetricsLogger(run_id), checkpoints, *mode_callbacks(mode), clock])
                with run_clock.measure("run_end_seconds"), scratch_dir("stage-weights-") as folder:
                    log_stage_weights(model, stage_name, folder)
            encoder = model.encoder if stage_name == method.stage_names[-1] else None

        result = {"jit_compile": bool(clock.model.jit_compile)}
        if encoder is not None:
            with run_clock.measure("run_end_seconds"):
                info = log_keras_model(encoder, "encoder", encoder_signature(encoder))
                version = register_encoder(
                    info, method=method_name, stains=stains, dataset_digest=digest, config=config,
                    score=checkpoints.best, score_name="best_val_loss",
                    extra_tags=method.encoder_tags(config) if method.encoder_tags else None,
                )
            result.update(registered_model=version.name, model_file=str(logged_model_file(info.model_id)))
    return {**result, **run_clock.seconds}


def train_segment_task(spec: dict, clock) -> dict:
    """Train a UNet from scratch with the calls of the ``segment`` entry point.

    The calls and their order follow ``mlproject.segment.run`` up to model
    registration, without the test-set scoring that comes after training. The
    in-memory variant builds the model with the same calls as
    ``train_segmentation_model`` and fits it on batches held in memory.
    """
    import mlflow

    from mlproject.common import entry_run
    from registry.names import SEGMENTATION_MODEL
    from registry.versions import register_version
    from tracking.callbacks import CheckpointLogger, MlflowMetricsLogger
    from tracking.datasets import log_dataset
    from tracking.models import log_keras_model, segmentation_signature
    from tracking.runs import log_config, log_json, scratch_dir, set_seed
    from training.data.labelled import load_labelled
    from training.segmentation import (
        build_segmentation_model, compile_segmentation_model, make_patch_datasets, prepare_splits, train_segmentation_model,
    )

    variant, mode = spec["variant"], spec["mode"]
    config = resolve_training_config(spec)
    data, train = config["data"], config["train"]
    labelled_dir = spec["labelled_dir"]
    scale = float(data["image_scale"])

    if variant == "in-memory":
        _, _, splits = prepare_splits(labelled_dir, config)
        training_images, validation_images = load_labelled(splits.labelled, scale, progress=False), load_labelled(splits.validation, scale, progress=False)
        set_seed(int(train["seed"]))
        model = build_segmentation_model(config)
        compile_segmentation_model(model, float(train["learning_rate"]))
        datasets = make_patch_datasets(training_images, validation_images, config, int(model.output_shape[1]))
        datasets = replace(datasets, train=in_memory_stream(datasets.train))
        model.fit(
            datasets.train, validation_data=datasets.validation, epochs=int(train["epochs"]), steps_per_epoch=int(train["steps_per_epoch"]),
            callbacks=[*mode_callbacks(mode), clock], verbose=int(train.get("verbose", 2)), shuffle=False,
        )
        return {"jit_compile": bool(model.jit_compile)}

    if variant == "pipeline":
        _, _, splits = prepare_splits(labelled_dir, config)
        training_images, validation_images = load_labelled(splits.labelled, scale, progress=False), load_labelled(splits.validation, scale, progress=False)
        trained = train_segmentation_model(config, training_images, validation_images, None, callbacks=[*mode_callbacks(mode), clock])
        return {"jit_compile": bool(trained.model.jit_compile)}

    run_clock = RunClock()
    with entry_run("segment", run_name="benchmark-segment"):
        with run_clock.measure("run_start_seconds"):
            log_config(config, {"labelled_dir": str(labelled_dir), "encoder": "none"})
        items, stains, splits = prepare_splits(labelled_dir, config)
        with run_clock.measure("run_start_seconds"):
            log_json(splits.to_json(group_pattern=data["group_pattern"], repetition=int(config["segment"]["repetition"])), "splits.json")
            mlflow.log_params({"n_labelled": len(splits.labelled), "n_train_images": len(splits.train), "n_validation": len(splits.validation), "n_test": len(splits.test)})
            mlflow.set_tags({"stains": ",".join(stains), "label_fraction": str(config["segment"]["label_fraction"])})
            files = [path for item in items for path in (item.image_path, item.mask_path)]
            digest = log_dataset(labelled_dir, files, name=f"labelled:{labelled_dir}", context="training")
            mlflow.set_tags({"encoder": "none", "method": "baseline"})
        training_images, validation_images = load_labelled(splits.labelled, scale, progress=False), load_labelled(splits.validation, scale, progress=False)

        run_id = mlflow.active_run().info.run_id
        with scratch_dir("checkpoints-") as folder:
            checkpoints = CheckpointLogger(run_id, folder, monitor="val_loss")
            callbacks = [MlflowMetricsLogger(run_id), checkpoints, *mode_callbacks(mode), clock]
            trained = train_segmentation_model(config, training_images, validation_images, None, callbacks=callbacks)

        with run_clock.measure("run_end_seconds"):
            info = log_keras_model(trained.model, "model", segmentation_signature(trained.model))
            tags = {"method": "baseline", "stains": ",".join(stains), "dataset_digest": digest, "source_run_id": run_id, "encoder": "none"}
            version = register_version(info.model_uri, SEGMENTATION_MODEL, run_id, tags, description="Glomerulus UNet (benchmark)", model_id=info.model_id)
    return {**run_clock.seconds, "jit_compile": bool(trained.model.jit_compile), "registered_model": version.name}


def logged_model_file(model_id: str) -> Path:
    """Return the local ``.keras`` file of a logged model in a file-based artifact store."""
    import mlflow
    from mlflow.utils.file_utils import local_file_uri_to_path

    location = local_file_uri_to_path(mlflow.get_logged_model(model_id).artifact_location)
    files = sorted(Path(location).rglob("*.keras"))
    if not files:
        raise FileNotFoundError(f"Logged model {model_id} at {location} contains no .keras file.")
    return files[0]


def measure_training(spec: dict) -> dict:
    """Train one task in one variant and return per-epoch timings after the warm-up."""
    import tensorflow as tf

    apply_mode(spec["mode"])
    clock = make_epoch_clock()
    train = train_segment_task if spec["task"] == SEGMENT_TASK else train_pretrain_task
    started = time.perf_counter()
    result = train(spec, clock)
    warmup = int(spec["warmup_epochs"])
    config = resolve_training_config(spec)
    result.update(
        epochs=clock.epochs[warmup:],
        warmup_seconds=sum(epoch["seconds"] for epoch in clock.epochs[:warmup]),
        patches_per_epoch=int(config["train"]["steps_per_epoch"]) * int(config["train"]["batch_size"]),
        batch_size=int(config["train"]["batch_size"]),
        patch_size=int(config["data"]["patch_size"]),
        total_seconds=time.perf_counter() - started,
        gpus=len(tf.config.list_physical_devices("GPU")),
    )
    if len(result["epochs"]) != int(spec["epochs"]):
        raise RuntimeError(f"Expected {spec['epochs']} timed epochs after {warmup} warm-up epochs, recorded {len(result['epochs'])}.")
    return result


def measure_encoder_load(spec: dict) -> dict:
    """Load one encoder ``loads + 1`` times, by registry reference or from its file.

    The first load pays for imports, tracing and file-system caches, so it is
    reported apart. The later loads give the figure for a long-running process.
    """
    import keras

    from registry.loading import _register_custom_objects, load_encoder

    _register_custom_objects()
    if spec["how"] == "alias":
        def load():
            return load_encoder(spec["reference"])[0]
    else:
        def load():
            return keras.saving.load_model(spec["model_file"])

    durations = []
    for _ in range(int(spec["loads"]) + 1):
        started = time.perf_counter()
        encoder = load()
        durations.append(time.perf_counter() - started)
        del encoder
        keras.backend.clear_session()
    return {"cold_seconds": durations[0], "warm_seconds": durations[1:]}


def run_child(spec_path: Path) -> None:
    """Run the measurement described in ``spec_path`` and write its JSON result."""
    spec = json.loads(Path(spec_path).read_text())
    measure = measure_training if spec["kind"] == "training" else measure_encoder_load
    result = measure(spec)
    result.update(spec=spec, peak_rss_mib=peak_rss_mib(), peak_gpu_mib=peak_gpu_mib())
    Path(spec["result_path"]).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run_child(Path(sys.argv[1]))
