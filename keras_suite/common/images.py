"""Images from users' files: class-per-folder trees and TFRecords, checked before training.

Corrupt or unreadable files are counted, logged with their names and skipped; if none is
readable the run stops with a message saying so. The same in-graph decode + resize is
used by the training pipeline and by the serving signature that takes encoded bytes, so
a served model sees exactly what it was trained on.
"""

from __future__ import annotations

import glob
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log, progress

tf = common.quiet_import_tensorflow()

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLITS = ("train", "val", "test")


def exif_orientation_in_graph(encoded):
    """The EXIF orientation (1-8) of encoded image bytes, read in graph with core ops only
    (stock TF Serving has no EXIF op): find the EXIF block in the first 64 KB (a JPEG's
    "Exif\\0\\0" APP1 segment or a PNG's eXIf chunk), read the TIFF byte order and the
    first IFD, and take tag 0x0112. 1 when absent."""
    data = tf.io.decode_raw(tf.strings.substr(encoded, 0, 65536), tf.uint8)
    data = tf.cast(
        tf.concat([data, tf.zeros([16], tf.uint8)], 0), tf.int32
    )  # room to read past the end
    n = tf.shape(data)[0]
    windows = tf.signal.frame(data, 6, 1)
    jpeg = tf.reduce_all(tf.equal(windows, [0x45, 0x78, 0x69, 0x66, 0, 0]), -1)  # APP1 "Exif\0\0"
    png = tf.reduce_all(tf.equal(windows[:, :4], [0x65, 0x58, 0x49, 0x66]), -1)  # PNG chunk "eXIf"
    starts = tf.concat([tf.where(jpeg)[:, 0] + 6, tf.where(png)[:, 0] + 4, [-1]], 0)
    tiff = tf.cast(starts[0], tf.int32)

    def at(offset):
        return tf.gather(data, tf.clip_by_value(offset, 0, n - 1))

    little = tf.equal(at(tiff), 0x49)  # "II": Intel byte order; "MM": Motorola

    def u16(offset):
        return tf.where(
            little, at(offset) + 256 * at(offset + 1), 256 * at(offset) + at(offset + 1)
        )

    def u32(offset):
        return tf.where(
            little, u16(offset) + 65536 * u16(offset + 2), 65536 * u16(offset) + u16(offset + 2)
        )

    ifd = tiff + u32(tiff + 4)
    entries = ifd + 2 + 12 * tf.range(tf.minimum(u16(ifd), 64))
    tags, values = u16(entries), u16(entries + 8)
    found = tf.boolean_mask(values, tf.equal(tags, 0x0112))
    orientation = tf.concat([found, [1]], 0)[0]
    valid = (tiff > 0) & (orientation >= 1) & (orientation <= 8)
    return tf.where(valid, orientation, 1)


def apply_orientation(image, orientation):
    """Pixels as displayed: undo EXIF orientation 1-8 (the same turns as PIL's exif_transpose)."""
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    turns = [
        lambda: image,
        lambda: tf.reverse(image, [1]),
        lambda: tf.image.rot90(image, 2),
        lambda: tf.reverse(image, [0]),
        lambda: transpose(image),
        lambda: tf.image.rot90(image, 3),
        lambda: tf.image.rot90(transpose(image), 2),
        lambda: tf.image.rot90(image, 1),
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, turns)


def decode_upright(encoded):
    """Encoded JPEG/PNG/BMP/GIF bytes -> uint8 [H, W, 3] as displayed (EXIF applied), in
    graph: what serving signatures and training pipelines decode, so a phone photo is the
    same picture everywhere."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    upright = apply_orientation(image, exif_orientation_in_graph(encoded))
    return tf.ensure_shape(upright, [None, None, 3])


def decode_resize(encoded, size: int):
    """Encoded JPEG/PNG/BMP/GIF bytes -> float32 [size, size, 3] in 0..255 (in graph),
    EXIF orientation applied."""
    image = tf.image.resize(
        tf.cast(decode_upright(encoded), tf.float32), (size, size), antialias=True
    )
    return tf.clip_by_value(image, 0.0, 255.0)


def is_readable_image(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:  # PIL raises many kinds for broken files; all mean "skip it"
        return False


def read_image_files(paths) -> np.ndarray:
    """The bytes of user image files for a serving request (object array), upright (EXIF
    rotation applied), or one clear error naming the first file that is missing or not a
    readable image."""
    blobs = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise UserError(f"{p}: no such image file; pass paths of JPEG/PNG/BMP/GIF images")
        blob = path.read_bytes()
        if not is_readable_image(blob):
            raise UserError(f"{p}: not a readable JPEG/PNG/BMP/GIF image")
        blobs.append(upright_bytes(blob))
    return np.array(blobs, dtype=object)


# EXIF orientations 5-8 store the picture rotated by 90 degrees: width and height swap.
_TRANSPOSED = (5, 6, 7, 8)


def exif_orientation(image) -> int:
    """The EXIF orientation tag (1-8) of an open PIL image; 1 when absent."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, OSError):
        return 1


def upright_size(path) -> tuple[int, int] | None:
    """(width, height) of an image file as it is displayed, EXIF orientation applied,
    from its header alone; None when it is not a readable image. Every reader of user
    images uses this with `read_rgb_upright`, so sizes and pixels always agree."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            return (h, w) if exif_orientation(img) in _TRANSPOSED else (w, h)
    except OSError:
        return None


def read_rgb_upright(path) -> np.ndarray | None:
    """RGB uint8 pixels of an image file as displayed (EXIF orientation applied), or None."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except OSError:
        return None


def upright_bytes(data: bytes) -> bytes:
    """Encoded image bytes with any EXIF rotation applied to the pixels (re-encoded as PNG);
    unchanged when there is none. Our serving graphs apply the tag themselves
    (`decode_upright`); sending upright bytes also serves older exports."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        if exif_orientation(img) == 1:
            return data
        buf = io.BytesIO()
        ImageOps.exif_transpose(img).convert("RGB").save(buf, format="PNG")
        return buf.getvalue()


def image_size_range(paths) -> dict | None:
    """{"min": [w, h], "max": [w, h]} over image files (headers only), or None."""
    sizes = [size for size in map(upright_size, paths) if size is not None]
    if not sizes:
        return None
    sizes = np.asarray(sizes)
    return {"min": sizes.min(0).tolist(), "max": sizes.max(0).tolist()}


def _check_files(paths: list[str]) -> np.ndarray:
    def check(path):
        try:
            return is_readable_image(Path(path).read_bytes())
        except OSError:
            return False

    ok = np.zeros(len(paths), bool)
    with (
        ThreadPoolExecutor(max_workers=4) as pool,
        progress(len(paths), "checking images", unit="img") as bar,
    ):
        for i, good in enumerate(pool.map(check, paths)):
            ok[i] = good
            bar.update(1)
    return ok


def _report_bad(bad: list[str], total: int, where: str) -> None:
    if not bad:
        return
    if len(bad) == total:
        raise UserError(
            f"none of the {total} images in {where} could be decoded "
            f"(first: {bad[0]}); check that they are JPEG/PNG/BMP/GIF files"
        )
    shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
    log.warning(
        "skipped %d of %d images in %s that could not be decoded: %s", len(bad), total, where, shown
    )


def _class_dirs(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return (
        sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if folder.is_dir()
        else []
    )


def scan_folder(root: str | Path, class_names: list[str] | None = None):
    """A class-per-folder tree -> (paths, labels, class_names); corrupt files dropped.

    Without `class_names` the classes are the sub-folders that hold images: an empty one
    is skipped with a warning naming it (it is not a class). With `class_names` (a val or
    test folder scanned with the training classes), images in other sub-folders are
    skipped with a count."""
    root = Path(root)
    if not root.exists():
        raise UserError(
            f"data directory {str(root)!r} does not exist; set data.path to a folder "
            "with one sub-folder of images per class"
        )
    if not root.is_dir():
        raise UserError(
            f"data.path {str(root)!r} is a file; it must be a folder with one sub-folder per class"
        )
    folders = _class_dirs(root)
    if not folders:
        raise UserError(
            f"data directory {str(root)!r} has no class sub-folders; put the images of "
            "each class in their own folder (root/cat/*.jpg, root/dog/*.jpg)"
        )
    files = {name: _images_in(root / name) for name in (class_names or folders)}
    if class_names is None:
        empty = [name for name, found in files.items() if not found]
        if empty and len(empty) < len(files):
            log.warning(
                "skipped %d empty class folder(s) in %s (not counted as classes): %s",
                len(empty),
                root,
                ", ".join(empty),
            )
        names = [name for name, found in files.items() if found]
    else:
        names = list(class_names)
        strays = {d: len(_images_in(root / d)) for d in folders if d not in files}
        strays = {d: n for d, n in strays.items() if n}
        if strays:
            log.warning(
                "skipped %d images in %s whose folders are not training classes: %s",
                sum(strays.values()),
                root,
                ", ".join(f"{d} ({n})" for d, n in strays.items()),
            )
    paths, labels = [], []
    for index, name in enumerate(names):
        paths += [str(p) for p in files[name]]
        labels += [index] * len(files[name])
    if not paths and class_names is None:
        raise UserError(
            f"data directory {str(root)!r} has class folders ({', '.join(folders[:5])}) but no "
            f"images with extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    if not paths:
        return [], np.zeros(0, np.int64), names
    ok = _check_files(paths)
    _report_bad([p for p, good in zip(paths, ok) if not good], len(paths), str(root))
    keep = np.flatnonzero(ok)
    return [paths[i] for i in keep], np.asarray(labels, np.int64)[keep], names


def readable_images(root: str | Path) -> list[str]:
    """Every readable image under root (any depth, no classes), sorted; unreadable ones are
    counted and named in a warning; none at all is a UserError. For apps that learn from
    pictures without labels (VAE, GAN)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.path {str(root)!r} is not a folder; point it at a folder of images")
    files = sorted(
        str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise UserError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}; set data.path "
            "to a folder of images (sub-folders are fine)"
        )
    ok = _check_files(files)
    _report_bad([p for p, good in zip(files, ok) if not good], len(files), str(root))
    return [p for p, good in zip(files, ok) if good]


def folder_splits(root: str | Path):
    """{split: (paths, labels)} and class names.

    Uses root/train (and root/val, root/test when present) or, without a train/ folder,
    the whole tree as one "all" split; the caller carves out the splits that are missing.
    """
    root = Path(root)
    present = [s for s in SPLITS if (root / s).is_dir()] if root.is_dir() else []
    if "train" in present:
        paths, labels, names = scan_folder(root / "train")
        out = {"train": (paths, labels)}
        out.update({s: scan_folder(root / s, names)[:2] for s in present if s != "train"})
        return out, names
    if present:
        raise UserError(
            f"{root} has {'/'.join(present)}/ but no train/ folder; add train/ (val/ and test/ "
            "are optional and carved out of train/ when missing) or use one class-per-folder tree"
        )
    paths, labels, names = scan_folder(root)
    return {"all": (paths, labels)}, names


# ---- TFRecords ---------------------------------------------------------------------
# Feature names follow the common TF image convention (Model Garden, TF-Slim).
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def write_tfrecord(path: str | Path, encoded_images: list[bytes], labels, class_texts=None) -> None:
    """Write (encoded image, label) examples; a labels.txt beside it names the classes."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, (data, label) in enumerate(zip(encoded_images, labels)):
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                "image/class/label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(label)])
                ),
            }
            if class_texts is not None:
                feature["image/class/text"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[class_texts[i].encode()])
                )
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            )


def tfrecord_files(root: str | Path, split: str) -> list[str]:
    root = Path(root)
    pattern = [
        str(root / f"{split}*.tfrecord*"),
        str(root / f"{split}-*"),
        str(root / split / "*.tfrecord*"),
    ]
    files = sorted({f for p in pattern for f in glob.glob(p)})
    return files


def scan_tfrecords(files: list[str]):
    """Parse every example once: (keep mask, labels) with corrupt ones counted and dropped."""
    keep, labels, bad = [], [], []
    bar = progress(None, "checking records", unit="rec")
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(files).as_numpy_iterator()):
            bar.update(1)
            try:
                ex = tf.io.parse_single_example(record, FEATURES)
                label = int(ex["image/class/label"].numpy())
                good = is_readable_image(ex["image/encoded"].numpy())
            except tf.errors.InvalidArgumentError:
                good, label = False, -1
            keep.append(good)
            labels.append(label if good else -1)
            if not good:
                bad.append(f"record {i}")
    except tf.errors.DataLossError as exc:
        raise UserError(
            f"TFRecord file(s) {', '.join(files)} are corrupt ({str(exc).splitlines()[0]}); "
            "rewrite them"
        ) from None
    finally:
        bar.close()
    if not keep:
        raise UserError(f"TFRecord file(s) {', '.join(files)} hold no examples")
    _report_bad(bad, len(keep), ", ".join(os.path.basename(f) for f in files))
    return np.asarray(keep, bool), np.asarray(labels, np.int64)


def tfrecord_dataset(files: list[str], keep: np.ndarray):
    """(encoded bytes, label) pairs of the examples `scan_tfrecords` kept, streaming."""
    keep_t = tf.constant(keep)
    ds = tf.data.TFRecordDataset(files).enumerate()
    ds = ds.filter(lambda i, rec: tf.gather(keep_t, i))

    def parse(i, rec):
        ex = tf.io.parse_single_example(rec, FEATURES)
        return ex["image/encoded"], ex["image/class/label"]

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def read_labels_txt(root: str | Path) -> list[str] | None:
    path = Path(root) / "labels.txt"
    if path.exists():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return None
