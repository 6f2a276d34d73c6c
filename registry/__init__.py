"""Model registry: registering encoders and segmentation models, aliases, loading by name."""

from registry.loading import ModelReference, load_encoder, load_model, resolve_reference
from registry.names import SEGMENTATION_MODEL, encoder_model_name, validate_alias
from registry.versions import register_version, set_alias

__all__ = [
    "ModelReference", "load_encoder", "load_model", "resolve_reference",
    "SEGMENTATION_MODEL", "encoder_model_name", "validate_alias",
    "register_version", "set_alias",
]
