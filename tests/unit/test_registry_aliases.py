"""Alias rules: reserved and malformed aliases are rejected with the rule, before any work."""

from __future__ import annotations

import mlflow
import pytest

from registry.loading import resolve_reference
from registry.names import InvalidAliasError, validate_alias


@pytest.mark.parametrize("alias", ["champion", "candidate", "best-2024", "ssl_v2", "v", "version3", "7"])
def test_valid_aliases_pass(alias):
    assert validate_alias(alias) == alias


@pytest.mark.parametrize(
    "alias, rule",
    [
        ("latest", "reserved"),
        ("LATEST", "reserved"),
        ("v1", "'v' followed by digits"),
        ("V12", "'v' followed by digits"),
        ("", "letters, digits, '_' or '-'"),
        ("with space", "letters, digits, '_' or '-'"),
        ("a/b", "letters, digits, '_' or '-'"),
        ("name@alias", "letters, digits, '_' or '-'"),
        ("champion!", "letters, digits, '_' or '-'"),
        ("x" * 256, "1 to 255"),
    ],
)
def test_invalid_aliases_name_the_rule(alias, rule):
    with pytest.raises(InvalidAliasError) as raised:
        validate_alias(alias)
    assert rule in str(raised.value)


class _UnreachableClient:
    """A registry client that fails the test if anything calls it."""

    def __getattr__(self, name):
        pytest.fail(f"the registry was contacted ({name}) before the alias was checked")


@pytest.mark.parametrize("reference", ["unet-encoder-simclr@latest", "models:/unet-encoder-simclr@v3", "unet-encoder-simclr@bad!"])
def test_reference_alias_checked_before_registry(reference):
    with pytest.raises(InvalidAliasError):
        resolve_reference(reference, client=_UnreachableClient())


def test_promote_rejects_alias_before_work(tracking_store, aidpath):
    from mlproject import promote

    with pytest.raises(SystemExit) as exited:
        promote.main(["--model", "unet-encoder-simclr", "--labelled-dir", str(aidpath), "--alias", "v2"])
    assert exited.value.code == 2

    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"
    assert "'v' followed by digits" in run.data.tags["error"]
    assert not run.inputs.dataset_inputs, "no data was read"
    assert mlflow.MlflowClient().search_registered_models() == []
