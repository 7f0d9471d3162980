"""Reading a SavedModel the way TF Serving sees it: signature defs and the ops it runs.

TF Serving answers metadata requests from the MetaGraphDef's SignatureDef map and checks
requests against the TensorInfo of each input, so the embedded server reads the same
protos from `saved_model.pb` instead of relying on Python-side function specs.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from keras_suite import common  # noqa: F401  (environment set-up before TensorFlow)
from keras_suite.common.errors import UserError

log = logging.getLogger("ksuite.serving")

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_RELPATH = Path("assets.extra") / "tf_serving_warmup_requests"


def read_saved_model_proto(export_dir: str | Path):
    """The SavedModel proto of `export_dir` (saved_model.pb or .pbtxt)."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    export_dir = Path(export_dir)
    proto = saved_model_pb2.SavedModel()
    pb, pbtxt = export_dir / "saved_model.pb", export_dir / "saved_model.pbtxt"
    if pb.exists():
        proto.ParseFromString(pb.read_bytes())
    elif pbtxt.exists():
        text_format.Parse(pbtxt.read_text(), proto)
    else:
        raise FileNotFoundError(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {export_dir}"
        )
    return proto


def serving_meta_graph(proto, export_dir=""):
    """The MetaGraphDef tagged exactly {"serve"} (what tensorflow_model_server loads)."""
    for meta_graph in proto.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == {SERVE_TAG}:
            return meta_graph
    tags = [sorted(m.meta_info_def.tags) for m in proto.meta_graphs]
    raise ValueError(
        f"SavedModel {export_dir} has no MetaGraph tagged 'serve' (found tag sets {tags})"
    )


def signature_defs(export_dir: str | Path) -> dict:
    """{signature key: SignatureDef proto} of the 'serve' MetaGraph."""
    proto = read_saved_model_proto(export_dir)
    return dict(serving_meta_graph(proto, export_dir).signature_def)


def graph_ops(export_dir: str | Path) -> dict[str, set[str]]:
    """{op type: {where it is used}} over the serve graph and every library function."""
    meta_graph = serving_meta_graph(read_saved_model_proto(export_dir), export_dir)
    library = meta_graph.graph_def.library
    function_names = {f.signature.name for f in library.function}
    used: dict[str, set[str]] = {}
    for node in meta_graph.graph_def.node:
        used.setdefault(node.op, set()).add(f"node {node.name}")
    for function in library.function:
        for node in function.node_def:
            used.setdefault(node.op, set()).add(f"function {function.signature.name}")
    # A node whose op is a library function name is a call, not a kernel.
    return {op: where for op, where in used.items() if op not in function_names}


def describe_signatures(sigs: dict) -> list[str]:
    """Human-readable lines: `name (method): inputs -> outputs` with dtypes and shapes."""
    from tensorflow.core.framework import types_pb2

    def fmt(infos):
        parts = []
        for key in sorted(infos):
            info = infos[key]
            dtype = types_pb2.DataType.Name(info.dtype).removeprefix("DT_").lower()
            if info.tensor_shape.unknown_rank:
                shape = "?"
            else:
                shape = (
                    "["
                    + ",".join(
                        "N" if d.size == -1 and i == 0 else ("?" if d.size == -1 else str(d.size))
                        for i, d in enumerate(info.tensor_shape.dim)
                    )
                    + "]"
                )
            parts.append(f"{key}: {dtype}{shape}")
        return ", ".join(parts)

    lines = []
    for name in sorted(sigs):
        if name == INIT_OP_SIGNATURE:
            continue
        sig = sigs[name]
        method = sig.method_name.rsplit("/", 1)[-1]
        lines.append(f"{name} ({method}): {fmt(sig.inputs)} -> {fmt(sig.outputs)}")
    return lines


_VERSION_NAME = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts "²", "١"
_MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos
_warned_names: set = set()
_warned_lock = threading.Lock()


def version_dirs(base_path: str | Path, warn: bool = True) -> dict[int, Path]:
    """{version: path} for every subdirectory named by ASCII digits (what TF Serving considers).

    Other folders are ignored, with one warning per folder for the lifetime of the process
    (the server polls every second); hidden ones (`.tmp-*`, exports in progress) silently.
    """
    base_path = Path(base_path)
    if not base_path.is_dir():
        return {}
    found = {}
    for child in base_path.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        if _VERSION_NAME.fullmatch(child.name) and int(child.name) <= _MAX_VERSION:
            found[int(child.name)] = child
            continue
        if not warn:
            continue
        with _warned_lock:
            if child in _warned_names:
                continue
            _warned_names.add(child)
        log.warning(
            "ignoring folder %r in %s: a version folder is named by ASCII digits (1, 2, ...) "
            "below 2**63",
            child.name,
            base_path,
        )
    return found


def require_saved_model(path: str | Path) -> Path:
    path = Path(path)
    if not ((path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()):
        raise UserError(
            f"{path} is not a SavedModel directory (no saved_model.pb); pass a "
            "version directory such as BASE/NAME/1 written by `ksuite export`"
        )
    return path
