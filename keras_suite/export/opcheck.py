"""Pre-flight check: every op in an export must exist in stock tensorflow_model_server.

The stock server links core TensorFlow kernels and the TF Text ops. The allowed set is
read from the installed TensorFlow op registry (the C API's full op list) after loading
every TF Text op library, so it follows the installed versions instead of a hand-kept
list. Ops that are registered in the pip package but cannot run inside the server are
removed: the py_function family calls back into a Python interpreter the server does not
have.
"""

from __future__ import annotations

import functools
from pathlib import Path

from keras_suite import common
from keras_suite.common.errors import UserError
from keras_suite.export.signatures import graph_ops

# Registered in TensorFlow's op registry, but their kernels call into Python.
PYTHON_ONLY_OPS = {
    "PyFunc": "tf.numpy_function / tf.compat.v1.py_func",
    "PyFuncStateless": "tf.numpy_function(stateful=False)",
    "EagerPyFunc": "tf.py_function",
}


def _registered_op_names() -> set[str]:
    tf = common.quiet_import_tensorflow()
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api

    del tf
    buf = c_api.TF_GetAllOpList()
    try:
        ops = op_def_pb2.OpList()
        ops.ParseFromString(c_api.TF_GetBuffer(buf))
    finally:
        c_api.TF_DeleteBuffer(buf)
    return {op.name for op in ops.op}


def _load_tf_text_ops() -> bool:
    """Register the TF Text kernels (TF Serving ships them); False if not installed."""
    try:
        import tensorflow_text  # noqa: F401  (loads every op library it has)
    except ImportError:
        return False
    tf = common.quiet_import_tensorflow()
    import tensorflow_text as text

    # Some libraries load lazily; load each one explicitly so its ops are registered.
    for lib in sorted((Path(text.__file__).parent / "python" / "ops").glob("_*.so")):
        try:
            tf.load_op_library(str(lib))
        except Exception:  # noqa: BLE001 - an already-registered library is fine
            pass
    return True


@functools.lru_cache(maxsize=1)
def serving_op_names() -> frozenset[str]:
    """Op types tensorflow_model_server can run: core TF + TF Text − Python-only ops."""
    _load_tf_text_ops()
    return frozenset(_registered_op_names() - set(PYTHON_ONLY_OPS))


def unsupported_ops(export_dir: str | Path) -> dict[str, set[str]]:
    """{op: where used} for each op in the export that stock TF Serving lacks."""
    allowed = serving_op_names()
    return {op: where for op, where in graph_ops(export_dir).items() if op not in allowed}


def check_export_ops(export_dir: str | Path) -> list[str]:
    """Raise UserError naming each unsupported op; return the sorted op list otherwise."""
    used = graph_ops(export_dir)
    bad = unsupported_ops(export_dir)
    if bad:
        details = []
        for op in sorted(bad):
            hint = f" (from {PYTHON_ONLY_OPS[op]})" if op in PYTHON_ONLY_OPS else ""
            where = sorted(bad[op])[0]
            details.append(f"{op}{hint} in {where}")
        raise UserError(
            "the export uses ops that stock tensorflow_model_server does not have: "
            + "; ".join(details)
            + ". Rewrite that part of the serving function with core TensorFlow or TF Text ops"
        )
    return sorted(used)
