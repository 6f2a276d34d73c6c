"""Loading by name: reference forms, errors that list what exists, recorded versions, same outputs."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from registry.loading import ModelNotFoundError, load_encoder, resolve_reference
from registry.versions import set_alias
from tests.unit.registry_support import bottleneck, register_tiny_encoder

NAME = "unet-encoder-simclr"


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory):
    """A store with two tiny SimCLR versions: champion -> 1, candidate -> 2. Returns their outputs."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        mlflow.set_tracking_uri(uri)
        _, first = register_tiny_encoder(seed=0)
        _, second = register_tiny_encoder(seed=1)
        set_alias(NAME, "candidate", 2)
        yield {"1": bottleneck(first), "2": bottleneck(second)}
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    "reference, version, alias",
    [
        (NAME, "1", "champion"),
        (f"{NAME}@candidate", "2", "candidate"),
        (f"{NAME}/2", "2", None),
        (f"{NAME}/latest", "2", None),
        (f"models:/{NAME}@champion", "1", "champion"),
        (f"models:/{NAME}/1", "1", None),
        (f"models:/{NAME}/latest", "2", None),
    ],
)
def test_reference_forms_resolve(registry_store, reference, version, alias):
    resolved = resolve_reference(reference)
    assert resolved.version == version
    assert resolved.alias == alias
    assert resolved.uri == f"models:/{NAME}/{version}"
    assert resolved.tags["method"] == "simclr"


def test_missing_model_lists_registry(registry_store):
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_reference("unet-encoder-byol")
    message = str(raised.value)
    assert "'unet-encoder-byol' not found" in message
    assert f"{NAME}: versions 1, 2" in message
    assert "candidate -> version 2, champion -> version 1" in message


def test_missing_alias_lists_aliases(registry_store):
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_reference(f"{NAME}@staging")
    message = str(raised.value)
    assert "Alias 'staging'" in message
    assert "versions 1, 2" in message
    assert "candidate -> version 2, champion -> version 1" in message


def test_missing_version_lists_versions(registry_store):
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_reference(f"models:/{NAME}/9")
    message = str(raised.value)
    assert "Version 9" in message
    assert "versions 1, 2" in message


def test_loaded_encoder_matches_saved(registry_store):
    for version, expected in registry_store.items():
        encoder, _ = load_encoder(f"{NAME}/{version}")
        np.testing.assert_allclose(bottleneck(encoder), expected, rtol=1e-6, atol=1e-6)


def test_alias_load_records_version(registry_store):
    set_alias(NAME, "moving", 1)
    with mlflow.start_run() as run:
        _, resolved = load_encoder(f"{NAME}@moving")
    set_alias(NAME, "moving", 2)

    params = mlflow.get_run(run.info.run_id).data.params
    assert resolved.version == "1"
    assert params["encoder_resolved_version"] == "1"
    assert params["encoder_resolved_alias"] == "moving"
    assert params["encoder_resolved_uri"] == f"models:/{NAME}/1"
    # The recorded URI still names version 1 after the alias moved.
    assert resolve_reference(params["encoder_resolved_uri"]).version == "1"
    assert resolve_reference(f"{NAME}@moving").version == "2"
