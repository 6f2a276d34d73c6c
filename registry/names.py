"""Registered model names and alias rules."""

from __future__ import annotations

import re

ENCODER_PREFIX = "unet-encoder-"
SEGMENTATION_MODEL = "unet-glomeruli"
CHAMPION = "champion"

_ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")


class InvalidAliasError(ValueError):
    """An alias that MLflow would reject or that shadows a version reference."""


def encoder_model_name(method: str) -> str:
    """Registered name of a method's encoder, for example ``unet-encoder-simclr``."""
    return f"{ENCODER_PREFIX}{method}"


def validate_alias(alias: str) -> str:
    """Return ``alias`` if MLflow accepts it; raise InvalidAliasError stating the rule otherwise.

    Rules (MLflow 3.17.2): 1 to 255 letters, digits, ``_`` or ``-``; ``latest`` (any
    case) is reserved; ``v`` or ``V`` followed by digits is reserved for versions.
    """
    if not isinstance(alias, str) or not _ALIAS_PATTERN.match(alias):
        raise InvalidAliasError(
            f"Alias {alias!r} is invalid: use 1 to 255 letters, digits, '_' or '-' (for example 'champion')."
        )
    if alias.lower() == "latest":
        raise InvalidAliasError("Alias 'latest' is reserved by MLflow for the newest version; choose another name, such as 'champion'.")
    if _VERSION_LIKE.match(alias):
        raise InvalidAliasError(
            f"Alias {alias!r} is reserved: 'v' followed by digits refers to a version number. Choose another name, such as 'champion'."
        )
    return alias
