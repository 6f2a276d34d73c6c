"""UNet contracting path (the encoder) and expanding path (the decoder).

The study's geometry (Ronneberger et al., 2015, arXiv:1505.04597): depth 5, filters
64-128-256-512-1024, two 3x3 valid convolutions with ReLU per level, 2x2 max-pooling,
2x2 transposed convolutions for up-sampling, skip connections cropped to the
up-sampled size and concatenated, a 1x1 output convolution, no batch normalisation.
A 508x508 input gives a 324x324 output.

Encoder contract: an encoder is a ``keras.Model`` that takes an RGB batch, float32 in
[0, 1], NHWC, and returns a list of ``depth`` feature maps ordered from the highest
resolution to the lowest: the skip connections of levels 1 to depth-1, then the
bottleneck. Any input normalisation happens inside the encoder.
"""

from __future__ import annotations

import keras
from keras import layers

PADDINGS = ("valid", "same")


def _level_sizes_or_none(patch_size: int, depth: int, padding: str) -> list[int] | None:
    sizes = []
    size = patch_size
    for level in range(depth):
        if padding == "valid":
            size -= 4
        if size < 1:
            return None
        sizes.append(size)
        if level < depth - 1:
            if size % 2:
                return None
            size //= 2
    return sizes


def level_sizes(patch_size: int, depth: int, padding: str) -> list[int]:
    """Return the spatial size of each encoder level's output for a square input.

    Raises ValueError when a pooling step would see an odd size, naming valid sizes.
    """
    sizes = _level_sizes_or_none(patch_size, depth, padding)
    if sizes is not None:
        return sizes
    candidates = [p for p in range(max(8, patch_size - 64), patch_size + 65) if _level_sizes_or_none(p, depth, padding)]
    nearest = sorted(candidates, key=lambda p: abs(p - patch_size))[:3]
    raise ValueError(
        f"patch_size={patch_size} does not fit a depth-{depth} UNet with {padding} padding: every level before "
        f"pooling needs an even size. Nearest valid sizes: {', '.join(map(str, sorted(nearest))) or 'none nearby'}."
    )


def output_size(patch_size: int, depth: int, padding: str) -> int:
    """Return the side of the UNet's output for a square input of ``patch_size``."""
    size = level_sizes(patch_size, depth, padding)[-1]
    for _ in range(depth - 1):
        size = size * 2 - (4 if padding == "valid" else 0)
    return size


def _check_geometry(depth: int, filters: int, padding: str) -> None:
    if depth < 2:
        raise ValueError(f"depth={depth} must be at least 2 (one pooling step).")
    if filters < 1:
        raise ValueError(f"filters={filters} must be a positive number of channels.")
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} must be one of {', '.join(PADDINGS)}.")


def conv_block(x, filters: int, padding: str, name: str):
    """Two 3x3 convolutions with ReLU."""
    x = layers.Conv2D(filters, 3, padding=padding, activation="relu", kernel_initializer="he_normal", name=f"{name}_conv1")(x)
    return layers.Conv2D(filters, 3, padding=padding, activation="relu", kernel_initializer="he_normal", name=f"{name}_conv2")(x)


def build_encoder(
    depth: int = 5,
    filters: int = 64,
    padding: str = "valid",
    name: str = "unet_encoder",
    channels: int = 3,
    input_name: str = "rgb",
) -> keras.Model:
    """Build the UNet contracting path under the encoder contract.

    The input is rescaled from [0, 1] to [-1, 1] inside the model, with built-in layers
    only, so the saved encoder loads without this project's code. With ``channels``
    other than 3 the model takes other images in [0, 1], such as HR-CS-CO's
    single-stain channels. Such a model is a part of an encoder, not an encoder itself.
    """
    _check_geometry(depth, filters, padding)
    if channels < 1:
        raise ValueError(f"channels={channels} must be a positive number of input channels.")
    inputs = keras.Input(shape=(None, None, channels), name=input_name)
    x = layers.Rescaling(2.0, offset=-1.0, name="to_symmetric_range")(inputs)
    features = []
    for level in range(depth):
        x = conv_block(x, filters * 2**level, padding, name=f"encoder_level{level + 1}")
        features.append(x)
        if level < depth - 1:
            x = layers.MaxPooling2D(2, name=f"encoder_pool{level + 1}")(x)
    return keras.Model(inputs, features, name=name)


def _centre_crop(skip, target_size: int, name: str):
    surplus = skip.shape[1] - target_size
    if surplus == 0:
        return skip
    return layers.Cropping2D(((surplus // 2, surplus - surplus // 2),) * 2, name=name)(skip)


def build_unet(encoder: keras.Model, patch_size: int, padding: str, classes: int = 2, name: str = "unet") -> keras.Model:
    """Attach a decoder to ``encoder`` for square inputs of ``patch_size``.

    Each decoder level uses as many filters as the skip connection it receives, so
    encoders with wider features (HR-CS-CO concatenates two paths) fit unchanged.
    The output is a per-pixel softmax over ``classes``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} must be one of {', '.join(PADDINGS)}.")
    inputs = keras.Input(shape=(patch_size, patch_size, 3), name="rgb")
    features = encoder(inputs)
    if not isinstance(features, (list, tuple)) or len(features) < 2:
        raise ValueError(
            f"Encoder {encoder.name!r} returns {type(features).__name__}, expected a list of at least two feature maps "
            "(skip connections, then the bottleneck)."
        )
    x = expanding_path(features, padding)
    outputs = layers.Conv2D(classes, 1, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def expanding_path(features, padding: str):
    """Apply the decoder's up-sampling levels to symbolic encoder features; return the last map."""
    x = features[-1]
    for level in reversed(range(len(features) - 1)):
        skip = features[level]
        width = skip.shape[-1]
        x = layers.Conv2DTranspose(width, 2, strides=2, name=f"decoder_up{level + 1}")(x)
        skip = _centre_crop(skip, x.shape[1], name=f"decoder_crop{level + 1}")
        x = layers.Concatenate(name=f"decoder_concat{level + 1}")([skip, x])
        x = conv_block(x, width, padding, name=f"decoder_level{level + 1}")
    return x


def build_decoder(
    encoder: keras.Model,
    patch_size: int,
    padding: str,
    output_channels: int = 1,
    activation: str = "sigmoid",
    name: str = "decoder",
) -> keras.Model:
    """Build a stand-alone decoder that maps ``encoder``'s features of a square patch to an image.

    The model takes the list of feature maps that ``encoder`` returns for inputs of
    ``patch_size`` and outputs ``output_channels`` maps of the UNet's output size, so
    the decoder can be frozen while the encoder trains.
    """
    sizes = level_sizes(patch_size, len(encoder.outputs), padding)
    inputs = [
        keras.Input(shape=(size, size, feature.shape[-1]), name=f"features_level{level + 1}")
        for level, (size, feature) in enumerate(zip(sizes, encoder.outputs))
    ]
    x = expanding_path(inputs, padding)
    outputs = layers.Conv2D(output_channels, 1, activation=activation, name="prediction")(x)
    return keras.Model(inputs, outputs, name=name)


def encoder_padding(encoder: keras.Model, probe_size: int = 64) -> str:
    """Infer whether an encoder uses valid or same padding from its first feature map."""
    import numpy as np

    first = encoder(np.zeros((1, probe_size, probe_size, 3), dtype="float32"))[0]
    return "same" if first.shape[1] == probe_size else "valid"
