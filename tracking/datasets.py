"""Dataset inputs with content digests, shown in the MLflow UI's Datasets column."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import mlflow
from mlflow.data.dataset_source_registry import get_registered_sources
from mlflow.data.meta_dataset import MetaDataset


def files_digest(root: Path | str, files: Iterable[Path | str]) -> str:
    """Return a SHA-256 over each file's path relative to ``root`` and its bytes.

    The digest changes when a file is added, removed, renamed or edited, and not when
    the folder moves.
    """
    # Paths are made absolute without following symbolic links, so a folder of links
    # to files elsewhere (a subset of a read-only dataset) digests like a copy would.
    root = Path(os.path.abspath(root))
    digest = hashlib.sha256()
    for path in sorted(Path(os.path.abspath(f)) for f in files):
        digest.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _local_source(root: Path):
    # NOTE: MLflow 3.17.2 registers the local artifact source twice (for the schemes
    # '' and 'file'), so resolve_dataset_source warns about an ambiguity; picking the
    # class directly gives the same source without the warning.
    for source in get_registered_sources():
        if source.__name__ == "LocalArtifactDatasetSource":
            return source._resolve(str(root.resolve()))
    raise RuntimeError("MLflow has no local dataset source registered; check the MLflow installation.")


def log_dataset(root: Path | str, files: Iterable[Path | str], name: str, context: str) -> str:
    """Log a folder of files as a dataset input of the active run; return its digest.

    The digest is also logged as the param ``<context>_dataset_digest``.
    """
    files = list(files)
    digest = files_digest(root, files)
    dataset = MetaDataset(source=_local_source(Path(root)), name=name, digest=digest[:16])
    mlflow.log_input(dataset, context=context)
    mlflow.log_param(f"{context}_dataset_digest", digest[:16])
    return digest[:16]
