"""TFDS offline: `tfds.testing.mock_data` keeps every builder's real features and
generates examples, but the same ones for every split; real splits never share examples
(the apps remove exact copies of training images from val/test), so here each split draws
its own, seeded by the split's name."""

from __future__ import annotations

import contextlib
import zlib

import tensorflow as tf


@contextlib.contextmanager
def mock_tfds(num_examples: int):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing.mocking import RandomFakeGenerator

    def as_dataset(builder, split, decoders=None, read_config=None, **kwargs):
        features = builder.info.features
        specs = features.get_tensor_info()
        seed = zlib.crc32(str(split).encode())
        ds = tf.data.Dataset.from_generator(
            lambda: RandomFakeGenerator(features, num_examples, seed=seed),
            output_signature=tf.nest.map_structure(
                lambda t: tf.TensorSpec(t.shape, t.dtype), specs
            ),
        )
        return ds.apply(tf.data.experimental.assert_cardinality(num_examples))

    with tfds.testing.mock_data(num_examples=num_examples, as_dataset_fn=as_dataset):
        yield
