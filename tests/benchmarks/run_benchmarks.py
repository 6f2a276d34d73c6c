"""Measure what data loading and MLflow tracking cost against the bare training step.

Run from the repository root::

    python -m tests.benchmarks.run_benchmarks --repeats 3 --output docs/benchmarks.md

For every pre-training method and for segmentation, the script trains the ``small``
configuration on real images in three variants, each in a fresh child process. The
variants are batches already in memory with tracking off, the entry point's datasets
with tracking off, and the entry point's datasets with its MLflow callbacks writing to
a SQLite store in a temporary folder. Encoders registered by the tracked runs are then loaded again by
alias and, for comparison, from the same ``.keras`` file. The page given by ``--output``
receives the medians over ``--repeats`` rounds, the machine's description and the exact
command; text outside its generated section is kept.

With a GPU visible to TensorFlow the script adds rows with XLA off and with mixed
float16. Without one, the page states that they were not measured and why.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks import machine, report
from tests.benchmarks.measurements import SEGMENT_TASK, VARIANTS, split_task

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("KIDNEY_SSL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
EXPERIMENT_NAME = "benchmarks"
# Modes beyond the default that only make sense on a GPU: Keras turns XLA on by
# default there (Keras 3.15, jit_compile="auto"), so the extra rows turn it off, and
# try mixed float16.
GPU_MODES = ("no-xla", "mixed-float16")
# Pre-training methods that train on one stain at a time, and the stain they get.
PER_STAIN_METHODS = {"hrcsco": "02"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run_benchmarks",
        description="Measure training throughput, tracking overhead, encoder loading and peak memory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    parser.add_argument("--repeats", type=int, default=3, help="Rounds of every measurement; the page reports medians.")
    parser.add_argument("--steps", type=int, default=40, help="Training steps per epoch.")
    parser.add_argument("--epochs", type=int, default=3, help="Timed epochs per measurement, after the warm-up.")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="Epochs trained before timing starts (tracing, caches).")
    parser.add_argument("--loads", type=int, default=3, help="Timed encoder loads per measurement, after one first load.")

    parser.add_argument(
        "--tasks", default="",
        help="Comma-separated methods, method:stage and 'segment'; a multi-stage method stands for all its stages. "
        "Empty: every registered method and segment.",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated training variants to measure.")
    parser.add_argument("--config", default="small", help="Configuration overlay for every task.")
    parser.add_argument("--batch-size", type=int, default=0, help="Patches per batch; 0: from the configuration.")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA / "kidney-multistain-patches", help="Unlabelled images for pre-training.")
    parser.add_argument("--labelled-dir", type=Path, default=SHARED_DATA / "glomeruli-pas-aidpath", help="Labelled images for segmentation.")
    parser.add_argument(
        "--gpu-rows", choices=("auto", "always", "never"), default="auto",
        help="Measure XLA-off and mixed-float16 rows: auto, when TensorFlow lists a GPU; always, also without one.",
    )

    parser.add_argument("--output", type=Path, default=None, help="Markdown page to write; its text outside the generated section is kept.")
    parser.add_argument("--json", type=Path, default=None, help="Also write every raw measurement to this JSON file.")
    parser.add_argument("--workdir", type=Path, default=None, help="Folder for the tracking store and logs; default: a new temporary folder.")
    parser.add_argument("--keep-workdir", action="store_true", help="Keep the work folder (store, logs, specs) after the run.")
    parser.add_argument("--child-timeout", type=int, default=1800, help="Seconds one measurement may take before it counts as failed.")

    args = parser.parse_args(argv)
    for name in ("repeats", "steps", "epochs", "loads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be at least 1.")
    if args.warmup_epochs < 0:
        parser.error(f"--warmup-epochs={args.warmup_epochs} must not be negative.")
    unknown = set(split_list(args.variants)) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants names {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}.")
    for option in ("output", "json"):
        problem = output_problem(getattr(args, option))
        if problem:
            parser.error(f"--{option} {getattr(args, option)} {problem}")
    return args


def output_problem(path: Path | None) -> str | None:
    """Return why the results could not be written to ``path``, or None when they can.

    Checked before measuring, so a bad path does not throw away a half-hour run.
    """
    if path is None:
        return None
    if path.is_dir():
        return "is a folder; pass a file name such as docs/benchmarks.md."
    # The nearest existing ancestor decides whether the missing folders can be made.
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot be created because {ancestor} is a file, not a folder."
    if not os.access(ancestor, os.W_OK):
        return f"cannot be written: {ancestor} is not writable."
    return None


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def method_tasks(name: str) -> list[str]:
    """Return a method's tasks: its name, or ``name:stage`` for each stage of a multi-stage method."""
    from training.methods import get_method

    stages = getattr(get_method(name), "stages", ())
    return [f"{name}:{stage.name}" for stage in stages] or [name]


def resolve_tasks(text: str) -> list[str]:
    """Return the requested tasks, checked against the method registry; all of them when ``text`` is empty."""
    from training.methods import available

    methods = available()
    known = [task for method in methods for task in method_tasks(method)]
    if not text:
        return [*known, SEGMENT_TASK]
    tasks = []
    for task in split_list(text):
        if task in methods:
            tasks += method_tasks(task)
        elif task in known or task == SEGMENT_TASK:
            tasks.append(task)
        else:
            names = list(dict.fromkeys([*methods, *known, SEGMENT_TASK]))
            raise SystemExit(f"--tasks names {task!r}, which is not a task; available: {', '.join(names)}.")
    return tasks


def check_data(args, tasks: list[str]) -> None:
    """Exit with the fix when a data folder that the tasks read is missing."""
    needed = []
    if any(task != SEGMENT_TASK for task in tasks):
        needed.append(("--data-dir", args.data_dir))
    if SEGMENT_TASK in tasks:
        needed.append(("--labelled-dir", args.labelled_dir))
    for option, folder in needed:
        if not folder.is_dir():
            if folder.parent == SHARED_DATA:
                raise SystemExit(
                    f"{option} {folder} not found. Pass {option}, or set KIDNEY_SSL_SHARED_DATA to the folder that holds the shared datasets."
                )
            raise SystemExit(f"{option} {folder} not found. Pass an existing folder of images.")


def check_config(name: str, tasks: list[str]) -> None:
    """Exit with the configuration error when ``--config`` does not resolve for a task's method."""
    from training import config as configuration

    for method in dict.fromkeys(split_task(task)[0] for task in tasks):
        try:
            configuration.resolve(method, name, {})
        except configuration.ConfigError as error:
            raise SystemExit(f"--config {name}: {error}") from None


def create_store(workdir: Path) -> dict[str, str]:
    """Create the SQLite tracking store and experiment; return the environment children need."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    MlflowClient(uri).create_experiment(EXPERIMENT_NAME, artifact_location=artifacts.as_uri())
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": EXPERIMENT_NAME}


class ChildRunner:
    """Runs one measurement per fresh Python process and collects the JSON results."""

    def __init__(self, workdir: Path, environment: dict[str, str], timeout: int):
        self.workdir = workdir
        self.environment = {
            **os.environ,
            **environment,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        self.timeout = timeout
        self.count = 0
        (workdir / "children").mkdir(parents=True, exist_ok=True)

    def run(self, spec: dict) -> dict:
        self.count += 1
        stem = self.workdir / "children" / f"{self.count:03d}-{spec['name']}"
        spec = {**spec, "result_path": str(stem.with_suffix(".result.json"))}
        stem.with_suffix(".spec.json").write_text(json.dumps(spec, indent=2))
        log_path = stem.with_suffix(".log")
        logger.info("Measuring %s (repeat %d).", spec["name"], spec["repeat"] + 1)
        started = time.perf_counter()
        with open(log_path, "w") as log:
            try:
                completed = subprocess.run(
                    [sys.executable, "-m", "tests.benchmarks.measurements", str(stem.with_suffix(".spec.json"))],
                    cwd=self.workdir, env=self.environment, stdout=log, stderr=subprocess.STDOUT, timeout=self.timeout,
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"Measurement {spec['name']} timed out after {self.timeout} s. Its log is {log_path}.") from None
        if completed.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"Measurement {spec['name']} failed with exit status {completed.returncode}. Last lines of {log_path}:\n{tail}")
        result = json.loads(Path(spec["result_path"]).read_text())
        logger.info("Measured %s in %.0f s.", spec["name"], time.perf_counter() - started)
        return result


def training_specs(args, tasks: list[str], modes: list[str], repeat: int) -> list[dict]:
    """Return one round's training measurements, with the variant order rotated per round."""
    variants = split_list(args.variants)
    specs = []
    for task in tasks:
        for mode in modes:
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                specs.append({
                    "kind": "training", "name": f"{task}-{variant}-{mode}", "repeat": repeat,
                    "task": task, "variant": variant, "mode": mode, "config": args.config,
                    "steps": args.steps, "epochs": args.epochs, "warmup_epochs": args.warmup_epochs,
                    "batch_size": args.batch_size or None, "stain": PER_STAIN_METHODS.get(split_task(task)[0], ""),
                    "data_dir": str(args.data_dir), "labelled_dir": str(args.labelled_dir),
                })
    return specs


def load_specs(args, encoders: dict[str, str], repeat: int) -> list[dict]:
    """Return one round's encoder-load measurements: by alias and from the file, order alternating per round."""
    specs = []
    for method, model_file in sorted(encoders.items()):
        pair = [
            {"how": "alias", "reference": f"unet-encoder-{method}@champion"},
            {"how": "file", "model_file": model_file},
        ]
        if repeat % 2:
            pair.reverse()
        for entry in pair:
            specs.append({"kind": "load", "name": f"load-{method}-{entry['how']}", "repeat": repeat, "method": method, "loads": args.loads, **entry})
    return specs


def run_all(args, runner: ChildRunner, tasks: list[str], modes: list[str]) -> list[dict]:
    results: list[dict] = []
    # The file of each method's first registered version, which the alias champion points to.
    encoders: dict[str, str] = {}
    for repeat in range(args.repeats):
        for spec in training_specs(args, tasks, modes, repeat):
            result = runner.run(spec)
            results.append(result)
            if spec["variant"] == "tracked" and "model_file" in result:
                encoders.setdefault(split_task(spec["task"])[0], result["model_file"])
        for spec in load_specs(args, encoders, repeat):
            results.append(runner.run(spec))
    return results


# Options that choose where files go, not what is measured, so the page's command omits them.
_OUTPUT_OPTIONS = ("--json", "--workdir", "--keep-workdir")


def figure_arguments(argv: list[str]) -> list[str]:
    """Return ``argv`` without the options that only choose output files, for the reproduce command."""
    measured_arguments: list[str] = []
    skip_value = False
    for argument in argv:
        if skip_value:
            skip_value = False
            continue
        name = argument.split("=", 1)[0]
        if name in _OUTPUT_OPTIONS:
            # --keep-workdir is a flag. The others take the next argument as their value, unless written with "=".
            skip_value = name != "--keep-workdir" and "=" not in argument
            continue
        measured_arguments.append(argument)
    return measured_arguments


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parse_args(argv)
    command = "python -m tests.benchmarks.run_benchmarks " + shlex.join(figure_arguments(sys.argv[1:] if argv is None else argv))
    started = time.perf_counter()
    tasks = resolve_tasks(args.tasks)
    check_data(args, tasks)
    check_config(args.config, tasks)
    before = machine.describe()
    gpu_rows = args.gpu_rows == "always" or (args.gpu_rows == "auto" and before["gpus"])
    modes = ["default", *GPU_MODES] if gpu_rows else ["default"]

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kidney-ssl-benchmarks-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        runner = ChildRunner(workdir, create_store(workdir), args.child_timeout)
        results = run_all(args, runner, tasks, modes)
    except Exception:
        logger.error("Benchmarks failed; the work folder %s keeps the logs of every measurement.", workdir)
        raise

    after = machine.describe()
    wall_seconds = time.perf_counter() - started
    settings = {
        "command": command, "wall_seconds": wall_seconds, "repeats": args.repeats, "steps": args.steps,
        "epochs": args.epochs, "warmup_epochs": args.warmup_epochs, "loads": args.loads, "config": args.config,
        "tasks": tasks, "modes": modes, "gpu_rows": gpu_rows, "data_dir": args.data_dir.name, "labelled_dir": args.labelled_dir.name,
    }
    section = report.render(results, settings, before, after)
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "machine": [before, after], "results": results}, indent=2))
    if args.output:
        report.write_page(args.output, section)
        print(f"Wrote {args.output} in {wall_seconds:.0f} s.")
    else:
        print(section)
    # Removed only once the results are written, so a failed write leaves the raw results.
    if args.keep_workdir:
        logger.info("Kept the work folder %s.", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
