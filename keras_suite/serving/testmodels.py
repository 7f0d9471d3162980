"""Small SavedModels for the serving tests, the benchmark and the docs' examples.

- `write_keras_toy(dir, seed)`: a Keras 3 model exported through keras.export.ExportArchive
  with four signatures: serving_default (float features -> probabilities, class_ids),
  serve_text (CSV strings -> scores), multiply (two inputs, one output) and echo_bytes
  (bytes in -> length and the bytes back, as `payload_bytes`).
- `write_tf1_examples_model(dir)`: a graph-mode SavedModel with the classify and regress
  signatures TF Serving's :classify/:regress need (method names
  tensorflow/serving/classify and .../regress, serialized tf.Example input). Keras'
  ExportArchive only writes predict signatures, so this one uses tf.compat.v1's
  SavedModelBuilder and signature_def_utils.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_suite import common

FEATURES = 4
CLASSES = 3


def build_keras_toy(seed: int):
    common.quiet_import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


def keras_toy_archive(model):
    tf = common.quiet_import_tensorflow()
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serving_default(features):
        probabilities = model(features, training=False)
        return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, axis=-1)}

    def serve_text(text):
        fields = tf.strings.split(text, ",").to_tensor(default_value="0", shape=[None, FEATURES])
        return {"scores": model(tf.strings.to_number(fields), training=False)}

    def multiply(a, b):
        return {"product": a * tf.cast(b, tf.float32)[:, None]}

    def echo_bytes(payload_bytes):
        return {
            "length": tf.strings.length(payload_bytes),
            "payload_bytes": tf.identity(payload_bytes),
        }

    archive.add_endpoint(
        "serving_default",
        serving_default,
        input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="features")],
    )
    archive.add_endpoint(
        "serve_text", serve_text, input_signature=[tf.TensorSpec([None], tf.string, name="text")]
    )
    archive.add_endpoint(
        "multiply",
        multiply,
        input_signature=[
            tf.TensorSpec([None, 2], tf.float32, name="a"),
            tf.TensorSpec([None], tf.int32, name="b"),
        ],
    )
    archive.add_endpoint(
        "echo_bytes",
        echo_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name="payload_bytes")],
    )
    return archive


def keras_toy_samples(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "serving_default": [{"features": rng.normal(size=(2, FEATURES)).astype(np.float32)}],
        "serve_text": [{"text": np.array([b"1,2,3,4"], dtype=object)}],
        "multiply": [{"a": np.ones((1, 2), np.float32), "b": np.array([3], np.int32)}],
        "echo_bytes": [{"payload_bytes": np.array([b"\x00\xff"], dtype=object)}],
    }


def write_keras_toy(export_dir: str | Path, seed: int = 1) -> Path:
    model = build_keras_toy(seed)
    keras_toy_archive(model).write_out(str(export_dir), verbose=False)
    return Path(export_dir)


def publish_keras_toy(
    base: str | Path, name: str = "toy", seed: int = 1, version: int | None = None
) -> Path:
    """A toy version through the same path `ksuite export` uses (op check, warm-up)."""
    from keras_suite.export.writer import publish_version

    return publish_version(
        base,
        name,
        lambda tmp: write_keras_toy(tmp, seed),
        samples=keras_toy_samples(),
        version=version,
        provenance={"source": "keras_suite.serving.testmodels.keras_toy", "seed": seed},
    )


# Weights of the tf.Example model: scores = softmax(x @ W), regression = sum(x) / 2 + 2.
EXAMPLE_WEIGHTS = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)
EXAMPLE_CLASSES = ("negative", "positive")


def write_tf1_examples_model(export_dir: str | Path) -> Path:
    tf = common.quiet_import_tensorflow()
    v1 = tf.compat.v1
    sig_utils = v1.saved_model.signature_def_utils
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        x = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([2], tf.float32)})["x"]
        scores = tf.nn.softmax(tf.matmul(x, tf.constant(EXAMPLE_WEIGHTS)))
        classes = tf.tile(tf.constant([list(EXAMPLE_CLASSES)]), [tf.shape(x)[0], 1])
        regression = tf.reduce_sum(x, axis=1) * 0.5 + 2.0
        x_direct = v1.placeholder(tf.float32, [None, 2], name="x")
        y_direct = x_direct * 0.5 + 2.0
        builder = v1.saved_model.Builder(str(export_dir))
        with v1.Session(graph=graph) as session:
            builder.add_meta_graph_and_variables(
                session,
                ["serve"],
                signature_def_map={
                    "serving_default": sig_utils.predict_signature_def(
                        {"x": x_direct}, {"y": y_direct}
                    ),
                    "classify_x": sig_utils.classification_signature_def(
                        serialized, classes, scores
                    ),
                    "regress_x": sig_utils.regression_signature_def(serialized, regression),
                },
            )
        builder.save()
    return Path(export_dir)


def expected_example_scores(x: np.ndarray) -> np.ndarray:
    logits = np.asarray(x, np.float32) @ EXAMPLE_WEIGHTS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write_keras_cnn(export_dir: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A small CNN (images [N,S,S,3] float32 -> probabilities, class_ids) for benchmarks:
    enough compute per row that batching matters, unlike the 4-feature toy."""
    tf = common.quiet_import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((image_size, image_size, 3)),
            layers.Rescaling(1 / 255.0),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serving_default(images):
        probabilities = model(images, training=False)
        return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, axis=-1)}

    archive.add_endpoint(
        "serving_default",
        serving_default,
        input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")
        ],
    )
    archive.write_out(str(export_dir), verbose=False)
    return Path(export_dir)


def cnn_samples(image_size: int = 32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "serving_default": [
            {"images": rng.uniform(0, 255, (1, image_size, image_size, 3)).astype(np.float32)}
        ]
    }
