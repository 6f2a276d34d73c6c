"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv:2002.05709, equation 1.
"""

from __future__ import annotations

import tensorflow as tf

# Similarity given to a sample with itself, small enough that softmax ignores it.
_SELF_SIMILARITY = -1e9


def nt_xent(projections_1: tf.Tensor, projections_2: tf.Tensor, temperature: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Return the NT-Xent loss of two views and the share of positives ranked first.

    Row ``i`` of both inputs comes from the same image. Each of the 2N projections is
    classified against the other 2N - 1, its positive being the other view of the same
    image; the loss is the mean cross-entropy over all 2N projections.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be positive (the study uses 0.1).")
    batch_size = tf.shape(projections_1)[0]
    z = tf.math.l2_normalize(tf.concat([projections_1, projections_2], axis=0), axis=1)
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits = tf.linalg.set_diag(logits, tf.fill([2 * batch_size], tf.cast(_SELF_SIMILARITY, logits.dtype)))

    # The positive of row i is row i + N, and of row i + N is row i.
    positives = tf.concat([tf.range(batch_size, 2 * batch_size), tf.range(batch_size)], axis=0)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), positives), tf.float32))
    return loss, accuracy
