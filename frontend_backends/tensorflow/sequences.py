"""TensorFlow kernels on label sequences: the edit distance (see ``Backend.edit_distance``)."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["edit_distance"]


def _sparse(x: tf.Tensor, lens: tf.Tensor) -> tf.SparseTensor:
    """:return: the labels of each sequence ``x[n, :lens[n]]`` as the rows of a sparse tensor"""
    shape = tf.shape(x, out_type=tf.int64)
    indices = tf.where(tf.sequence_mask(lens, shape[1]))
    return tf.SparseTensor(indices, tf.gather_nd(tf.cast(x, tf.int64), indices), shape)


def edit_distance(a: tf.Tensor, a_lens: tf.Tensor, b: tf.Tensor, b_lens: tf.Tensor) -> tf.Tensor:
    """See ``Backend.edit_distance``: ``tf.edit_distance`` (unnormalized) of the sequences as sparse tensors."""
    return tf.cast(tf.edit_distance(_sparse(a, a_lens), _sparse(b, b_lens), normalize=False), tf.int32)
