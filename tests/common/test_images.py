"""Image decoding shared by training and serving: EXIF orientation applied in graph with
core TF ops, exactly as PIL's exif_transpose does."""

import io

import numpy as np
import pytest

from keras_suite import common
from keras_suite.common.images import decode_resize, decode_upright, exif_orientation_in_graph

tf = common.quiet_import_tensorflow()

# PIL's exif_transpose: orientation -> the transpose that shows the picture upright
TURNS = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}


def _encoded(pixels, fmt, orientation):
    from PIL import Image

    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_upright_matches_pil_exif_transpose(fmt, orientation):
    from PIL import Image

    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2
    data = _encoded(pixels, fmt, orientation)
    assert int(exif_orientation_in_graph(tf.constant(data))) == orientation
    stored = tf.io.decode_image(data, channels=3).numpy()  # the same decoder, tag ignored
    turn = TURNS.get(orientation)
    want = (
        np.asarray(Image.fromarray(stored).transpose(getattr(Image.Transpose, turn)))
        if turn
        else stored
    )
    got = decode_upright(tf.constant(data)).numpy()
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_images_without_exif_or_with_garbage_decode_as_stored():
    pixels = np.full((4, 6, 3), 100, np.uint8)
    for data in (
        _encoded(pixels, "PNG", None),
        _encoded(pixels, "JPEG", None),
        _encoded(pixels, "PNG", None) + b"Exif\x00\x00MM\x00*\xff\xff\xff\xff",
    ):
        assert int(exif_orientation_in_graph(tf.constant(data))) == 1
        assert decode_upright(tf.constant(data)).shape == (4, 6, 3)


def test_decode_resize_of_a_rotated_photo_is_upright():
    pixels = np.zeros((40, 100, 3), np.uint8)
    pixels[:, :50] = 255  # left half white, as displayed
    from PIL import Image

    stored = np.asarray(Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90))
    resized = decode_resize(tf.constant(_encoded(stored, "PNG", 6)), 32).numpy()
    assert resized[:, :12].mean() > 240 and resized[:, 20:].mean() < 15
