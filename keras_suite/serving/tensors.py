"""Tensors in and out of TF Serving's two wire formats: REST JSON and TensorProto.

JSON rules follow TF Serving's REST API: numbers for numeric tensors, strings for
DT_STRING (UTF-8), `{"b64": "..."}` for arbitrary bytes, and outputs whose name ends in
`_bytes` come back as `{"b64": ...}`.
"""

from __future__ import annotations

import base64
import json

import numpy as np

from keras_suite.serving.errors import invalid

_JSON_TYPE = {
    str: "String",
    bool: "Bool",
    int: "Int",
    float: "Double",
    list: "Array",
    dict: "Object",
    type(None): "Null",
}


def numpy_dtype(tf_dtype_enum: int):
    """numpy dtype for a DataType enum (object for DT_STRING)."""
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(tf_dtype_enum)
    return np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)


def dtype_name(tf_dtype_enum: int) -> str:
    import tensorflow as tf

    return tf.dtypes.as_dtype(tf_dtype_enum).name


def _type_error(leaf, expected: str):
    shown = json.dumps(leaf) if not isinstance(leaf, bytes) else repr(leaf)
    return invalid(
        f"JSON Value: {shown} Type: {_JSON_TYPE.get(type(leaf), type(leaf).__name__)} "
        f"is not of expected type: {expected}"
    )


def _string_leaf(leaf):
    if isinstance(leaf, str):
        return leaf.encode("utf-8")
    if isinstance(leaf, dict) and set(leaf) == {"b64"} and isinstance(leaf["b64"], str):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except ValueError:
            raise invalid(f"Unable to base64 decode {leaf['b64'][:40]!r}") from None
    raise _type_error(leaf, "string")


def _nested_strings(value, name):
    """Flatten a nested list of string leaves; returns (shape, flat list of bytes)."""
    if not isinstance(value, list):
        return (), [_string_leaf(value)]
    if not value:
        return (0,), []
    shapes, flat = set(), []
    for item in value:
        shape, items = _nested_strings(item, name)
        shapes.add(shape)
        flat.extend(items)
    if len(shapes) != 1:
        raise invalid(
            f"input '{name}' is a ragged array: every element of a list must have the same shape"
        )
    return (len(value),) + shapes.pop(), flat


_KINDS = {
    "f": ("f", "i", "u"),
    "c": ("f", "i", "u", "c"),
    "i": ("i", "u"),
    "u": ("i", "u"),
    "b": ("b",),
}


def _first_leaf(value):
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _find_bad_leaf(value, ok):
    if isinstance(value, list):
        for item in value:
            bad = _find_bad_leaf(item, ok)
            if bad is not None:
                return bad
        return None
    return None if ok(value) else value


def json_to_array(value, dtype: np.dtype, name: str) -> np.ndarray:
    """A JSON value (nested lists of leaves) converted to an array of `dtype`."""
    if dtype == object:
        shape, flat = _nested_strings(value, name)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(shape)
    try:
        raw = np.asarray(value)
    except ValueError:
        raise invalid(
            f"input '{name}' is a ragged array: every element of a list must have the same shape"
        ) from None
    allowed = _KINDS.get(dtype.kind, (dtype.kind,))
    if raw.size and raw.dtype.kind not in allowed:
        expected = np.dtype(dtype).name if dtype != np.float32 else "float"
        if dtype.kind == "b":
            bad = _find_bad_leaf(value, lambda v: isinstance(v, bool))
        elif dtype.kind in "iu":
            bad = _find_bad_leaf(value, lambda v: isinstance(v, int) and not isinstance(v, bool))
        else:
            bad = _find_bad_leaf(
                value, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
            )
        raise _type_error(bad if bad is not None else _first_leaf(value), expected)
    if raw.dtype == object:
        raise invalid(
            f"input '{name}' is a ragged array: every element of a list must have the same shape"
        )
    if dtype.kind in "iu" and raw.size:
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise invalid(f"input '{name}' has values out of range for {dtype.name}")
    return raw.astype(dtype, copy=False)


def check_shape(array: np.ndarray, tensor_info, name: str) -> None:
    """Reject arrays whose rank or fixed dimensions contradict the signature's TensorInfo."""
    shape = tensor_info.tensor_shape
    if shape.unknown_rank:
        return
    expected = [d.size for d in shape.dim]
    if len(expected) != array.ndim or any(e not in (-1, a) for e, a in zip(expected, array.shape)):
        shown = "[" + ",".join("?" if e == -1 else str(e) for e in expected) + "]"
        raise invalid(
            f"input '{name}' has shape {list(array.shape)} but the signature expects {shown}"
        )


def array_to_json(array: np.ndarray, name: str):
    """An output array as JSON-ready Python values (bytes as UTF-8 or {"b64": ...})."""
    if array.dtype == object or array.dtype.kind == "S":
        as_b64 = name.endswith("_bytes")

        def leaf(b):
            if isinstance(b, str):
                b = b.encode()
            if not as_b64:
                try:
                    return b.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(b).decode("ascii")}

        flat = [leaf(b) for b in array.reshape(-1)]
        return _unflatten(flat, array.shape)
    return array.tolist()


def _unflatten(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = int(np.prod(shape[1:]))
    return [_unflatten(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def array_to_tensor_proto(array: np.ndarray):
    import tensorflow as tf

    return tf.make_tensor_proto(array)


# A TensorProto whose shape asks for more than this many decoded bytes is refused before
# numpy allocates it: a 20-byte message can otherwise declare a shape of 2**40 elements.
MAX_DECODED_BYTES = 2**31


def check_tensor_proto(proto, name: str) -> None:
    """Reject shapes TF Serving rejects: unknown rank, negative dimensions (numpy would read
    -1 as "infer"), element counts past int64, and values that do not fit the shape."""
    import tensorflow as tf

    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise invalid(
            f"input '{name}' has an unknown rank; send a TensorProto with a full tensor_shape"
        )
    dims = [d.size for d in shape.dim]
    if any(d < 0 for d in dims):
        raise invalid(f"input '{name}' has a negative dimension in its shape {dims}")
    count = 1
    for d in dims:
        count *= d
    if count > 2**63 - 1:
        raise invalid(f"input '{name}' has shape {dims} whose element count overflows int64")
    dtype = tf.dtypes.as_dtype(proto.dtype)
    itemsize = 0 if dtype == tf.string else dtype.size
    if count * itemsize > MAX_DECODED_BYTES:
        raise invalid(
            f"input '{name}' has shape {dims}: {count * itemsize} bytes decoded, over the "
            f"server's limit of {MAX_DECODED_BYTES}"
        )
    if proto.tensor_content:
        if len(proto.tensor_content) != count * itemsize:
            raise invalid(
                f"input '{name}': tensor_content has {len(proto.tensor_content)} bytes but shape "
                f"{dims} of {dtype.name} needs {count * itemsize}"
            )
        return
    values = max(
        (len(value) for field, value in proto.ListFields() if field.name.endswith("_val")),
        default=0,
    )
    if dtype.is_complex:
        values //= 2
    if values > count:  # fewer is allowed: TensorFlow repeats the last value
        raise invalid(f"input '{name}' has {values} values but its shape {dims} holds {count}")


def tensor_proto_to_array(proto, name: str) -> np.ndarray:
    import tensorflow as tf

    check_tensor_proto(proto, name)
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # noqa: BLE001 - a malformed proto from the client
        raise invalid(f"input '{name}' is not a valid TensorProto: {exc}") from None
