"""Medians over repeats and the Markdown section of the benchmarks page."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

BEGIN_MARKER = "<!-- begin generated benchmark results -->"
END_MARKER = "<!-- end generated benchmark results -->"
RATIO_TARGET = 0.9
VARIANT_TITLES = {
    "in-memory": "in memory, tracking off",
    "pipeline": "entry-point data, tracking off",
    "tracked": "entry-point data, tracked (end to end)",
}
MODE_TITLES = {"default": "default", "no-xla": "float32, XLA off", "mixed-float16": "mixed float16"}


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def throughput(result: dict) -> float:
    """Return training patches per second over the timed epochs of one measurement."""
    seconds = sum(epoch["seconds"] for epoch in result["epochs"])
    return len(result["epochs"]) * result["patches_per_epoch"] / seconds


def mean_epoch(result: dict, key: str) -> float:
    return statistics.fmean(epoch[key] for epoch in result["epochs"])


def cpu_seconds_per_step(result: dict) -> float:
    steps = len(result["epochs"]) * result["patches_per_epoch"] / result["batch_size"]
    return sum(epoch["cpu_seconds"] for epoch in result["epochs"]) / steps


def group_training(results: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for result in results:
        spec = result["spec"]
        if spec["kind"] == "training":
            groups[(spec["task"], spec["mode"], spec["variant"])].append(result)
    return groups


def group_loads(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for result in results:
        spec = result["spec"]
        if spec["kind"] == "load":
            groups[(spec["method"], spec["how"])].append(result)
    return groups


def spread(values: list[float], digits: int = 1) -> str:
    """Format the median of ``values``, with their range when there are several."""
    if not values:
        return "not measured"
    middle = median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def ratio_text(numerator: float, denominator: float) -> str:
    if not denominator or numerator != numerator or denominator != denominator:
        return "n/a"
    return f"{numerator / denominator:.2f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def machine_lines(before: dict, after: dict) -> list[str]:
    gpus = ", ".join(before["gpus"]) or "none visible to TensorFlow"
    load_before = ", ".join(f"{value:.2f}" for value in before["load_average"] or [])
    load_after = ", ".join(f"{value:.2f}" for value in after["load_average"] or [])
    return [
        f"- CPU: {before['cpu']}, {before['logical_cpus']} logical CPUs ({before['usable_cpus']} usable by this process)",
        f"- Memory: {before['memory_gib']:.1f} GiB; GPU: {gpus}",
        f"- OS: {before['os']}; Python {before['python']}",
        f"- TensorFlow {before['tensorflow']}, Keras {before['keras']}, MLflow {before['mlflow']}, NumPy {before['numpy']}",
        f"- Started {before['time']}, finished {after['time']}",
        f"- Load average (1, 5, 15 min) at the start: {load_before}; at the end: {load_after}. "
        "A load above the number of CPUs means other processes competed for them.",
    ]


def settings_lines(settings: dict, results: list[dict]) -> list[str]:
    training = [r for r in results if r["spec"]["kind"] == "training"]
    batch = sorted({r["batch_size"] for r in training})
    patch = sorted({r["patch_size"] for r in training})
    xla = sorted({"on" if r.get("jit_compile") else "off" for r in training if r["spec"]["mode"] == "default"})
    return [
        f"- Configuration overlay `{settings['config']}`: batch size {', '.join(map(str, batch))}, patches of "
        f"{', '.join(map(str, patch))} px; XLA {' and '.join(xla) or 'n/a'} in the default mode (Keras's choice).",
        f"- Per measurement: {settings['warmup_epochs']} warm-up epoch(s), then {settings['epochs']} timed epochs of "
        f"{settings['steps']} steps; every epoch ends with validation on the same cached set.",
        f"- {settings['repeats']} repeat(s); each figure is the median over repeats, with the range in brackets. "
        "Every measurement runs in a fresh Python process.",
        f"- Data: `{settings['data_dir']}` for pre-training, `{settings['labelled_dir']}` for segmentation.",
        "- Tracking store: SQLite in a temporary folder, artifacts on the local disk.",
    ]


def throughput_section(groups, settings) -> list[str]:
    header = [
        "task", "mode", *[VARIANT_TITLES[v] + " (patches/s)" for v in VARIANT_TITLES],
        "pipeline / in memory", "end to end / in memory", f"end to end >= {RATIO_TARGET}", "CPU time per step, in memory / end to end",
    ]
    rows = []
    for task in settings["tasks"]:
        for mode in settings["modes"]:
            by_variant = {v: [throughput(r) for r in groups.get((task, mode, v), [])] for v in VARIANT_TITLES}
            if not any(by_variant.values()):
                continue
            base = median(by_variant["in-memory"])
            end_to_end = ratio_text(median(by_variant["tracked"]), base)
            if end_to_end == "n/a":
                met = "n/a"
            else:
                met = "yes" if float(end_to_end) >= RATIO_TARGET else "no"
            cpu_in_memory = median([cpu_seconds_per_step(r) for r in groups.get((task, mode, "in-memory"), [])])
            cpu_tracked = median([cpu_seconds_per_step(r) for r in groups.get((task, mode, "tracked"), [])])
            rows.append([
                task, MODE_TITLES[mode], *[spread(by_variant[v]) for v in VARIANT_TITLES],
                ratio_text(median(by_variant["pipeline"]), base), end_to_end, met, ratio_text(cpu_in_memory, cpu_tracked),
            ])
    return [
        "### Training throughput",
        "",
        "Patches per second over the timed epochs, validation and callbacks included. The last column compares the "
        "CPU seconds each step costs, which other processes on the machine disturb less than wall-clock time.",
        "",
        *table(header, rows),
        "",
    ]


def time_section(groups, settings) -> list[str]:
    header = ["task", "mode", "variant", "epoch (s)", "of which validation (s)", "CPU s per step", "CPU s per wall s"]
    rows = []
    for task in settings["tasks"]:
        for mode in settings["modes"]:
            for variant, title in VARIANT_TITLES.items():
                measured = groups.get((task, mode, variant), [])
                if not measured:
                    continue
                cpu_share = [sum(e["cpu_seconds"] for e in r["epochs"]) / sum(e["seconds"] for e in r["epochs"]) for r in measured]
                rows.append([
                    task, MODE_TITLES[mode], title, spread([mean_epoch(r, "seconds") for r in measured], 2),
                    spread([mean_epoch(r, "validation_seconds") for r in measured], 2),
                    spread([cpu_seconds_per_step(r) for r in measured], 3), spread(cpu_share, 2),
                ])
    return [
        "### Where an epoch's time goes",
        "",
        "CPU seconds count every thread of the process, so on a machine with N CPUs one wall-clock second holds at most N.",
        "",
        *table(header, rows),
        "",
    ]


def tracking_section(groups, settings) -> list[str]:
    header = [
        "task", "mode", "epoch, tracking off (s)", "epoch, tracked (s)", "epoch-end callbacks, tracking off (ms)",
        "epoch-end callbacks, tracked (ms)", "tracking share of a tracked epoch", "run start (s)", "run end (s)",
    ]
    rows = []
    for task in settings["tasks"]:
        for mode in settings["modes"]:
            tracked = groups.get((task, mode, "tracked"), [])
            untracked = groups.get((task, mode, "pipeline"), [])
            if not tracked:
                continue
            callbacks_tracked = [mean_epoch(r, "callbacks_seconds") * 1000 for r in tracked]
            callbacks_untracked = [mean_epoch(r, "callbacks_seconds") * 1000 for r in untracked]
            tracking_ms = median(callbacks_tracked) - (median(callbacks_untracked) if callbacks_untracked else 0.0)
            share = tracking_ms / 1000 / median([mean_epoch(r, "seconds") for r in tracked])
            rows.append([
                task, MODE_TITLES[mode], spread([mean_epoch(r, "seconds") for r in untracked], 2),
                spread([mean_epoch(r, "seconds") for r in tracked], 2), spread(callbacks_untracked, 0), spread(callbacks_tracked, 0),
                f"{share:.1%}", spread([r["run_start_seconds"] for r in tracked if "run_start_seconds" in r], 2),
                spread([r["run_end_seconds"] for r in tracked if "run_end_seconds" in r], 2),
            ])
    return [
        "### MLflow logging overhead",
        "",
        "Each epoch of a tracked run ends with the MLflow callbacks: they log the epoch's metrics, save the weights "
        "and start their upload. Their time is measured directly, from the end of validation to the end of the "
        "epoch-end callbacks; the tracking share is the difference to the same span with tracking off, over the "
        "tracked epoch. The epoch times themselves vary more between repeats than the callbacks take. Once per run, "
        "the run start logs the configuration, the dataset digest and parameters (the images are read outside this "
        "time), and the run end logs the model and registers it.",
        "",
        *table(header, rows),
        "",
    ]


def load_section(results, settings) -> list[str]:
    groups = group_loads(results)
    methods = sorted({method for method, _ in groups})
    header = ["encoder", "by alias, second and later loads (s)", "same .keras file directly (s)", "alias / file", "first load by alias (s)", "first load from the file (s)"]
    rows = []
    for method in methods:
        alias = [median(r["warm_seconds"]) for r in groups.get((method, "alias"), [])]
        direct = [median(r["warm_seconds"]) for r in groups.get((method, "file"), [])]
        rows.append([
            f"`unet-encoder-{method}@champion`", spread(alias, 3), spread(direct, 3), ratio_text(median(alias), median(direct)),
            spread([r["cold_seconds"] for r in groups.get((method, "alias"), [])], 2),
            spread([r["cold_seconds"] for r in groups.get((method, "file"), [])], 2),
        ])
    if not rows:
        return ["### Loading an encoder", "", "Not measured: no tracked pre-training run registered an encoder.", ""]
    return [
        "### Loading an encoder",
        "",
        f"Each measurement loads the encoder once, then {settings['loads']} more times in the same process; the "
        "later loads give the figure. By alias means `registry.loading.load_encoder`, which resolves the alias to a "
        "version and loads it with `mlflow.keras.load_model`; directly means `keras.saving.load_model` on the "
        "`.keras` file in the artifact store.",
        "",
        *table(header, rows),
        "",
    ]


def memory_section(results, settings) -> list[str]:
    groups = defaultdict(list)
    for result in results:
        spec = result["spec"]
        if spec["kind"] == "training":
            key = (spec["task"], f"{VARIANT_TITLES[spec['variant']]}, {MODE_TITLES[spec['mode']]}")
        else:
            key = (f"unet-encoder-{spec['method']}", "load by alias" if spec["how"] == "alias" else "load from the file")
        groups[key].append(result)
    gpu = any(r.get("peak_gpu_mib") is not None for r in results)
    header = ["task", "measurement", "peak RSS (MiB)"] + (["peak GPU memory (MiB)"] if gpu else [])
    rows = []
    for (task, title), measured in groups.items():
        row = [task, title, spread([r["peak_rss_mib"] for r in measured], 0)]
        if gpu:
            row.append(spread([r["peak_gpu_mib"] for r in measured if r.get("peak_gpu_mib") is not None], 0))
        rows.append(row)
    return [
        "### Peak memory",
        "",
        "Peak resident set size (`ru_maxrss`) of the process that made the measurement: Python, TensorFlow, the decoded "
        "images and the model together.",
        "",
        *table(header, rows),
        "",
    ]


def gpu_lines(settings: dict, before: dict) -> list[str]:
    if settings["gpu_rows"] and before["gpus"]:
        return [
            "### Mixed precision and XLA",
            "",
            "The rows \"float32, XLA off\" and \"mixed float16\" above were measured on the GPU; \"default\" is Keras's "
            "choice, which turns XLA on where a GPU is present.",
            "",
        ]
    if settings["gpu_rows"]:
        return [
            "### Mixed precision and XLA",
            "",
            "The extra rows ran without a GPU (`--gpu-rows always`), so they test the code path, not the speed-up.",
            "",
        ]
    return [
        "### Mixed precision and XLA",
        "",
        "Not measured: TensorFlow saw no GPU on this machine (`tf.config.list_physical_devices('GPU')` was empty). "
        "On a CPU-only machine Keras 3 leaves XLA off and mixed float16 has no fast kernels, so the script adds these "
        "rows only where a GPU is visible.",
        "",
    ]


def render(results: list[dict], settings: dict, before: dict, after: dict) -> str:
    """Return the generated Markdown section: command, machine, settings and every table."""
    groups = group_training(results)
    minutes = settings["wall_seconds"] / 60
    lines = [
        BEGIN_MARKER,
        "",
        "## Results",
        "",
        "Reproduce from the repository root (this run took %.0f min):" % minutes,
        "",
        "```",
        settings["command"],
        "```",
        "",
        "### Machine",
        "",
        *machine_lines(before, after),
        "",
        "### Settings",
        "",
        *settings_lines(settings, results),
        "",
        *throughput_section(groups, settings),
        *time_section(groups, settings),
        *tracking_section(groups, settings),
        *load_section(results, settings),
        *memory_section(results, settings),
        *gpu_lines(settings, before),
        END_MARKER,
    ]
    return "\n".join(lines) + "\n"


def write_page(path: Path, section: str) -> None:
    """Write ``section`` into the page at ``path``, replacing only its previous generated section."""
    path = Path(path)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN_MARKER in text and END_MARKER in text:
            head, rest = text.split(BEGIN_MARKER, 1)
            _, tail = rest.split(END_MARKER, 1)
            path.write_text(head + section.rstrip("\n") + tail, encoding="utf-8")
            return
        path.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Benchmarks\n\n" + section, encoding="utf-8")
