"""Deployment graphs: the serving signature (image bytes in) and the fixed-shape TFLite one.

Both wrap the trained Keras model in a keras.export.ExportArchive (docs/design.md §8: that is
the SavedModel flavour TFLite converts with its weights) and run decode + class-aware NMS
in graph, padded to `post.max_detections` rows.
"""

from __future__ import annotations

import numpy as np

from keras_suite import common
from keras_suite.apps.detection.postprocess import decode_clipped, nms_single, postprocess
from keras_suite.common.images import decode_upright

tf = common.quiet_import_tensorflow()
import keras  # noqa: E402


def _decode_image(encoded, size: int):
    """Encoded image -> (float32 [size, size, 3] stretched to the model size, [h, w])."""
    image = decode_upright(encoded)  # EXIF orientation applied, as in training
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0), hw


def serving_archive(model, info: dict, cfg) -> keras.export.ExportArchive:
    size, names = info["image_size"], info["class_names"]
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(images):
        pixels, hw = tf.map_fn(
            lambda b: _decode_image(b, size),
            images,
            fn_output_signature=(
                tf.TensorSpec([size, size, 3], tf.float32),
                tf.TensorSpec([2], tf.float32),
            ),
        )
        raw = model(pixels, training=False)
        out = postprocess(raw, size, cfg.model.reg_max, len(names), cfg.post)
        # back to the pixels of each input image
        scale = tf.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], -1)[:, None, :] / size
        valid = out["classes"] >= 0
        label_table = tf.constant(list(names) + [""])
        return {
            "boxes": out["boxes"] * scale,
            "scores": out["scores"],
            "classes": out["classes"],
            "class_names": tf.gather(label_table, tf.where(valid, out["classes"], len(names))),
            "num_detections": out["num_detections"],
        }

    archive.add_endpoint("serving_default", serve)
    return archive


def tflite_archive(model, info: dict, cfg) -> keras.export.ExportArchive:
    """Batch 1, fixed size float image (0..255) -> detections in model-input pixels.

    No map_fn (it would become a WHILE loop) and NMS as padded NonMaxSuppressionV5, which
    the converter lowers to the NON_MAX_SUPPRESSION_V5 builtin."""
    size, num_classes = info["image_size"], info["num_classes"]
    # The same weights, but box and class logits as separate outputs: concatenated into
    # one tensor they would share one int8 scale and the class logits would lose it all.
    heads = keras.Model(
        model.input,
        [model.get_layer(f"h{i}_box_out").output for i in range(3)]
        + [model.get_layer(f"h{i}_cls_out").output for i in range(3)],
    )
    archive = keras.export.ExportArchive()
    archive.track(heads)
    post = cfg.post
    reg_max = cfg.model.reg_max

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="images")])
    def detect(images):
        outs = heads(images, training=False)
        dist = tf.concat([tf.reshape(o, [1, -1, 4, reg_max]) for o in outs[:3]], 1)
        logits = tf.concat([tf.reshape(o, [1, -1, num_classes]) for o in outs[3:]], 1)
        boxes = decode_clipped(tf.cast(dist, tf.float32), size)
        scores = tf.sigmoid(tf.cast(logits, tf.float32))
        b, s, c, n = nms_single(
            boxes[0],
            scores[0],
            num_classes,
            post.max_detections,
            post.pre_nms_topk,
            post.iou_threshold,
            post.eval_score_threshold,
        )
        return {"boxes": b[None], "scores": s[None], "classes": c[None], "num_detections": n[None]}

    archive.add_endpoint("serving_default", detect)
    return archive


def png_bytes(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2BGR))
    return buf.tobytes()
