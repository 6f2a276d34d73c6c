"""Model registry: registering encoders and segmentation models, aliases, loading by name.

``promote`` and ``prepare_protocol_data`` import TensorFlow, so they load on first use;
listing and loading by name need MLflow only.
"""

from registry.listing import encoder_versions, format_table
from registry.loading import ModelNotFoundError, ModelReference, load_encoder, load_model, resolve_reference
from registry.names import CHAMPION, SEGMENTATION_MODEL, InvalidAliasError, encoder_model_name, validate_alias
from registry.scores import ScoreRecord
from registry.versions import register_version, set_alias

_LAZY = {
    "promote": "registry.promotion",
    "choose_champion": "registry.promotion",
    "PROTOCOL": "registry.protocol",
    "prepare_protocol_data": "registry.protocol",
    "score_encoder": "registry.protocol",
}

__all__ = [
    "ModelNotFoundError", "ModelReference", "load_encoder", "load_model", "resolve_reference",
    "CHAMPION", "SEGMENTATION_MODEL", "InvalidAliasError", "encoder_model_name", "validate_alias",
    "encoder_versions", "format_table", "ScoreRecord", "register_version", "set_alias", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'registry' has no attribute {name!r}")
