"""Entry point ``promote``: score registered encoder versions under the selection protocol
and move ``champion`` to a version that beats the current one.

The protocol is described in :mod:`registry.protocol` and docs/registry.md.
"""

from __future__ import annotations

import logging

import mlflow
from mlflow.tracking import MlflowClient

from mlproject.common import UsageError, demo_paths, entry_run, optional, parse_bool, parser
from registry.names import CHAMPION, validate_alias
from registry.promotion import ALL_ENCODERS, promote, resolve_targets
from registry.protocol import PROTOCOL, prepare_protocol_data
from tracking.datasets import log_dataset
from tracking.runs import log_params_once

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    p = parser(f"Score registered encoder versions under the selection protocol {PROTOCOL.name} and move an alias to the best one.")
    p.add_argument("--model", default=ALL_ENCODERS, help="One registered encoder name, or all: every unet-encoder-* model.")
    p.add_argument("--labelled-dir", default="", help="Labelled set to score on: <root>/images/[<stain>/]<name>.<ext> with <root>/masks/... Empty: the scikit-image demo.")
    p.add_argument("--alias", default=CHAMPION, help="Alias to move to the best-scoring version.")
    p.add_argument("--versions", default="", help="Comma-separated versions of one model to score; empty: every version. The version the alias points to is always scored too.")
    p.add_argument("--rescore", default="false", help="true: score again versions that already carry a score under the same protocol key.")
    p.add_argument("--config", default="selection", help="Fine-tuning overlay for the protocol: a shipped name (small, selection, study) or a YAML file path.")
    return p.parse_args(argv)


def parse_versions(text: str) -> list[str]:
    versions = [part.strip() for part in (text or "").split(",") if part.strip()]
    bad = [v for v in versions if not v.isdigit()]
    if bad:
        raise UsageError(f"versions={text!r} is invalid: {', '.join(bad)} is not a version number. Pass numbers such as 1,3.")
    return versions


def run(args) -> None:
    # Check every input that needs no data before reading any image.
    alias = validate_alias(args.alias.strip())
    rescore = bool(parse_bool(args.rescore))
    versions = parse_versions(args.versions)
    resolve_targets(args.model.strip(), versions, MlflowClient())

    labelled_dir = optional(args.labelled_dir)
    if labelled_dir is None:
        _, labelled_dir = demo_paths()
        logger.warning("No labelled_dir given: scoring on the scikit-image IHC demo task in %s, which is no glomerulus task.", labelled_dir)
        mlflow.set_tag("dataset", "skimage-immunohistochemistry-demo")
    data = prepare_protocol_data(labelled_dir, args.config, PROTOCOL)
    files = [path for item in data.items for path in (item.image_path, item.mask_path)]
    log_dataset(labelled_dir, files, name=f"labelled:{labelled_dir}", context="selection")
    log_params_once({
        "selection_protocol": PROTOCOL.name,
        "selection_protocol_key": data.key,
        "labelled_dir": str(labelled_dir),
        "n_labelled": len(data.splits.labelled),
        "n_validation": len(data.splits.validation),
    })
    mlflow.log_text(data.splits.to_json(protocol=PROTOCOL.name), "splits.json")

    promote(args.model.strip(), data, alias=alias, versions=versions or None, rescore=rescore)


def main(argv=None) -> None:
    args = parse_args(argv)
    with entry_run("promote", tags={"selection_protocol": PROTOCOL.name}):
        run(args)


if __name__ == "__main__":
    main()
