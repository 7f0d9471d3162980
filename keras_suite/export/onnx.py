"""`ksuite export RUN_DIR --format onnx`: the run's serving signatures as ONNX models.

Each signature of the SavedModel that `ksuite export` would publish is converted with
tf2onnx, loaded in onnxruntime, and run on the app's own sample requests next to the
SavedModel: the report says how far apart the outputs are. A signature ONNX cannot express
(image decoding, string tokenization: ops with no ONNX counterpart) is named in one line
with the op, and when no serving signature converts, the app's pure-tensor graphs are
offered instead: the fixed-shape graphs `ksuite convert` feeds to TFLite (a translation
encoder and decoder step, a language model's decode step), checked the same way on inputs
drawn from the app's own pipeline. docs/ecosystem.md has the commands.

    RUN_DIR/onnx/<signature>.onnx      one per expressible signature (or TFLite graph)
    RUN_DIR/onnx/onnx_report.json      what converted, what did not and why, parity
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from keras_suite.common.errors import UserError

INSTALL_HINT = 'install the onnx extra: pip install -e ".[onnx]" (tf2onnx, onnx, onnxruntime)'
OPSET = 17
# Outputs agree when |onnx - savedmodel| <= ATOL + RTOL * |savedmodel| (float32 graphs
# whose kernels sum in a different order).
ATOL, RTOL = 1e-4, 1e-4
OUT_SUFFIX = "_out"  # added to an output whose name is also an input's

# TensorFlow ops with no ONNX counterpart, and what they do (said in the one-line reason).
# Checked before converting: tf2onnx would otherwise spend minutes on a graph it then
# leaves half-converted.
NOT_EXPRESSIBLE = {
    "DecodeImage": "image decoding",
    "DecodeJpeg": "image decoding",
    "DecodePng": "image decoding",
    "DecodeBmp": "image decoding",
    "DecodeGif": "image decoding",
    "DecodeRaw": "byte decoding",
    "EncodePng": "image encoding",
    "EncodeJpeg": "image encoding",
    "ReadFile": "file reading",
    "Substr": "string slicing",
    "StringSplit": "string splitting",
    "StringSplitV2": "string splitting",
    "RegexReplace": "regular expressions",
    "StaticRegexReplace": "regular expressions",
    "RegexSplitWithOffsets": "regular expressions",
    "StringLower": "string case folding",
    "CaseFoldUTF8": "string case folding",
    "NormalizeUTF8": "unicode normalization",
    "UnicodeDecodeWithOffsets": "unicode decoding",
    "UnicodeEncode": "unicode encoding",
    "UnicodeScript": "unicode scripts",
    "WordpieceTokenizeWithOffsets": "in-graph tokenization",
    "FastWordpieceTokenizeWithOffsets": "in-graph tokenization",
    "SentencepieceOp": "in-graph tokenization",
    "SentencepieceTokenizeOp": "in-graph tokenization",
    "SentencepieceDetokenizeOp": "in-graph detokenization",
    "StringJoin": "string joining",
    "ReduceJoin": "string joining",
    "AsString": "number formatting",
    "StringFormat": "string formatting",
    "StringNGrams": "string n-grams",
    "StringToHashBucketFast": "string hashing",
    "ScaleAndTranslate": "antialiased resizing",
    "PyFunc": "Python code",
    "EagerPyFunc": "Python code",
}


def _import_converters():
    try:
        import onnxruntime
        import tf2onnx
    except ImportError:
        raise UserError(f"--format onnx needs tf2onnx and onnxruntime; {INSTALL_HINT}") from None
    return tf2onnx, onnxruntime


def graph_ops(concrete) -> set[str]:
    """Every op type in a concrete function, its nested functions included (while bodies,
    map_fn, the Keras layers' own calls)."""
    graph_def = concrete.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def inexpressible(concrete) -> str | None:
    """'DecodeImage (image decoding)' for the first op ONNX cannot express, else None."""
    found = sorted(graph_ops(concrete) & set(NOT_EXPRESSIBLE))
    if not found:
        return None
    more = f" and {len(found) - 1} more op type(s)" if len(found) > 1 else ""
    return f"{found[0]} ({NOT_EXPRESSIBLE[found[0]]}){more}"


def _dynamic_update_slice(ctx, node, name, args):
    """tf2onnx handler for XlaDynamicUpdateSlice(x, update, starts), which keras.ops
    .slice_update writes (keras-hub's cached attention: translation's decoder caches) and
    tf2onnx 1.17 does not convert: `update` zero-padded into place over `x`, selected by
    a padded mask of ones. Starts are taken as in range (XLA would clamp them)."""
    from onnx import TensorProto
    from tf2onnx import utils

    x, update, starts = node.input
    shape, dtype = ctx.get_shape(node.output[0]), ctx.get_dtype(node.output[0])
    begin = ctx.make_node("Cast", [starts], attr={"to": TensorProto.INT64}).output[0]
    x_shape = ctx.make_node("Shape", [x]).output[0]
    update_shape = ctx.make_node("Shape", [update]).output[0]
    rest = ctx.make_node("Sub", [x_shape, begin]).output[0]
    end = ctx.make_node("Sub", [rest, update_shape]).output[0]
    pads = ctx.make_node("Concat", [begin, end], attr={"axis": 0}).output[0]
    placed = ctx.make_node("Pad", [update, pads]).output[0]
    one = ctx.make_const(utils.make_name("one"), np.ones([], utils.map_onnx_to_numpy_type(dtype)))
    ones = ctx.make_node("Expand", [one.output[0], update_shape]).output[0]
    inside = ctx.make_node("Pad", [ones, pads]).output[0]
    mask = ctx.make_node("Cast", [inside], attr={"to": TensorProto.BOOL}).output[0]
    ctx.remove_node(node.name)
    ctx.make_node(
        "Where",
        [mask, placed, x],
        outputs=node.output,
        name=node.name,
        shapes=[shape],
        dtypes=[dtype],
    )


def _erfc(ctx, node, name, args):
    """tf2onnx handler for Erfc (exact GELU: textgen's GPT): 1 - Erf(x)."""
    from tf2onnx import utils

    shape, dtype = ctx.get_shape(node.output[0]), ctx.get_dtype(node.output[0])
    erf = ctx.make_node("Erf", [node.input[0]]).output[0]
    one = ctx.make_const(utils.make_name("one"), np.ones([], utils.map_onnx_to_numpy_type(dtype)))
    ctx.remove_node(node.name)
    ctx.make_node(
        "Sub",
        [one.output[0], erf],
        outputs=node.output,
        name=node.name,
        shapes=[shape],
        dtypes=[dtype],
    )


# TensorFlow ops tf2onnx does not convert, lowered here to ONNX ops.
CUSTOM_HANDLERS = {
    "XlaDynamicUpdateSlice": (_dynamic_update_slice, []),
    "Erfc": (_erfc, []),
}


class _Captured(logging.Handler):
    """tf2onnx's log lines, to name the ops it could not convert."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def unsupported(self) -> list[str]:
        ops = []
        for line in self.lines:
            for op in re.findall(r": (\w+)\] is not supported", line):
                if op not in ops:
                    ops.append(op)
        return ops


def convert_function(concrete, path: Path, opset: int = OPSET) -> tuple[str | None, object]:
    """Convert one concrete function (keyword inputs) to ONNX at `path`.
    -> (None, onnxruntime session) or (reason it cannot be expressed, None)."""
    import tensorflow as tf

    tf2onnx, ort = _import_converters()
    reason = inexpressible(concrete)
    if reason:
        return reason, None
    specs = concrete.structured_input_signature[1]
    names = sorted(specs)

    # An output named like an input (a VAE's `images` in and out) confuses tf2onnx: such
    # outputs are renamed <name>_out in the ONNX graph (`run_session` maps them back).
    @tf.function(autograph=False)
    def positional(*args):
        outputs = concrete(**dict(zip(names, args)))
        return {(f"{k}{OUT_SUFFIX}" if k in specs else k): v for k, v in outputs.items()}

    signature = [tf.TensorSpec(specs[k].shape, specs[k].dtype, name=k) for k in names]
    captured = _Captured()
    logger = logging.getLogger("tf2onnx")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(captured)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # its warnings about shapes are not the user's business
    try:
        model, _ = tf2onnx.convert.from_function(
            positional, input_signature=signature, opset=opset, custom_op_handlers=CUSTOM_HANDLERS
        )
    except Exception as exc:  # tf2onnx raises many kinds; the last line names the problem
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return f"tf2onnx failed ({(lines or [type(exc).__name__])[-1][:160]})", None
    finally:
        logger.removeHandler(captured)
        logger.setLevel(level)
        logger.propagate = propagate
    unsupported = captured.unsupported()
    if unsupported:
        return f"{unsupported[0]} (no ONNX conversion in tf2onnx)", None
    data = model.SerializeToString()
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:160]
        return f"onnxruntime cannot load the converted graph ({first})", None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return None, session


def run_session(session, request: dict) -> dict:
    """onnxruntime outputs by name for a request {input name: array}."""
    feed = {}
    for node in session.get_inputs():
        value = np.asarray(request[node.name.split(":")[0]])
        feed[node.name] = value.astype(object) if value.dtype.kind in "SUO" else value
    inputs = {node.name.split(":")[0] for node in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    result = {}
    for name, value in zip(names, session.run(names, feed)):
        name = name.split(":")[0]
        if name.endswith(OUT_SUFFIX) and name[: -len(OUT_SUFFIX)] in inputs:
            name = name[: -len(OUT_SUFFIX)]
        result[name] = value
    return result


def compare(reference: dict, onnx_out: dict) -> dict:
    """{output: {"max_abs_diff": x, "agrees": bool}}: floats within ATOL + RTOL*|ref|,
    integers and strings exactly."""
    result = {}
    for name, ref in reference.items():
        ref = np.asarray(ref)
        got = np.asarray(onnx_out.get(name))
        if got.shape != ref.shape:
            result[name] = {"agrees": False, "shape": [list(ref.shape), list(got.shape)]}
        elif ref.dtype.kind == "f":
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            ok = bool((diff <= ATOL + RTOL * np.abs(ref)).all())
            result[name] = {"max_abs_diff": float(diff.max(initial=0.0)), "agrees": ok}
        else:
            decode = lambda a: np.vectorize(  # noqa: E731
                lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object]
            )(a)
            same = ref.dtype.kind in "SUO" and (decode(ref) == decode(got)).all()
            same = same or (ref.dtype.kind not in "SUO" and np.array_equal(ref, got))
            result[name] = {"max_abs_diff": 0.0 if same else None, "agrees": bool(same)}
    return result


def _parity(concrete, session, requests) -> dict:
    import tensorflow as tf

    per_output: dict = {}
    for request in requests:
        reference = concrete(**{k: tf.constant(v) for k, v in request.items()})
        reference = {k: v.numpy() for k, v in reference.items()}
        for name, row in compare(reference, run_session(session, request)).items():
            seen = per_output.setdefault(name, {"max_abs_diff": 0.0, "agrees": True})
            seen["agrees"] = seen["agrees"] and row["agrees"]
            if row.get("max_abs_diff") is None:
                seen["max_abs_diff"] = None
            elif seen["max_abs_diff"] is not None:
                seen["max_abs_diff"] = max(seen["max_abs_diff"], row["max_abs_diff"])
    return {
        "requests": len(requests),
        "agrees": all(o["agrees"] for o in per_output.values()) and bool(requests),
        "outputs": per_output,
    }


def export_onnx(run_dir, out_dir=None, opset: int = OPSET, offer_pure_tensor=None) -> dict:
    """Write RUN_DIR/onnx/ (or out_dir) and return the report (also onnx_report.json).

    offer_pure_tensor: convert the app's TFLite graphs too; None = only when no serving
    signature is expressible."""
    import tensorflow as tf

    from keras_suite.common.run import load_run

    _import_converters()
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir else Path(run_dir) / "onnx"
    out.mkdir(parents=True, exist_ok=True)
    data = run.datasets()
    samples = run.app.sample_requests(data=data, info=run.info, cfg=run.cfg)
    archive = run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    report = {"app": run.app.name, "opset": opset, "signatures": {}, "pure_tensor": {}}
    work = Path(tempfile.mkdtemp(prefix="ksuite-onnx-"))
    try:
        archive.write_out(str(work / "serving"), verbose=False)
        loaded = tf.saved_model.load(str(work / "serving"))
        for name in sorted(loaded.signatures, key=lambda s: (s != "serving_default", s)):
            concrete = loaded.signatures[name]
            reason, session = convert_function(concrete, out / f"{name}.onnx", opset)
            entry = {"file": f"{name}.onnx"} if session else {"not_expressible": reason}
            if session is not None:
                entry["parity"] = _parity(concrete, session, samples.get(name, []))
            report["signatures"][name] = entry
        converted = [s for s, e in report["signatures"].items() if "file" in e]
        if offer_pure_tensor or (offer_pure_tensor is None and not converted):
            report["pure_tensor"] = _pure_tensor(run, data, out, work, opset)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "onnx_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _pure_tensor(run, data, out: Path, work: Path, opset: int, examples: int = 3) -> dict:
    """The app's fixed-shape TFLite graphs as ONNX, checked on `examples` inputs of its
    own representative data."""
    import itertools

    import tensorflow as tf

    targets = run.app.tflite_targets(
        state=run.state, data=data, cfg=run.cfg, workdir=str(work / "tflite")
    )
    result = {}
    for target in targets:
        # the loaded object owns the variables: keep it alive while its function runs
        loaded = tf.saved_model.load(target.saved_model_dir)
        concrete = loaded.signatures[target.signature]
        reason, session = convert_function(concrete, out / f"{target.name}.onnx", opset)
        if session is None:
            result[target.name] = {"not_expressible": reason}
            continue
        requests = []
        if target.representative_data is not None:
            requests = list(itertools.islice(target.representative_data(), examples))
        result[target.name] = {
            "file": f"{target.name}.onnx",
            "parity": _parity(concrete, session, requests),
        }
    return result


def summary_lines(report: dict, out_dir: Path) -> list[str]:
    """What `ksuite export --format onnx` prints: one line per signature or graph."""
    lines = []
    groups = [("", report["signatures"]), ("pure-tensor ", report.get("pure_tensor") or {})]
    for kind, entries in groups:
        for name, entry in entries.items():
            if "not_expressible" in entry:
                lines.append(f"{kind}{name}: not expressible in ONNX: {entry['not_expressible']}")
                continue
            parity = entry["parity"]
            diffs = [o["max_abs_diff"] for o in parity["outputs"].values()]
            worst = max((d for d in diffs if d is not None), default=0.0)
            inputs = "sample request(s)" if not kind else "input(s) from the app's pipeline"
            check = (
                f"matches the SavedModel on {parity['requests']} {inputs} (max |diff| {worst:.2g})"
                if parity["agrees"]
                else "DIFFERS from the SavedModel: see onnx_report.json"
                if parity["requests"]
                else "no sample request to check it on"
            )
            lines.append(f"{kind}{name}: {out_dir / entry['file']}, {check}")
    if not any("file" in e for e in report["signatures"].values()) and report.get("pure_tensor"):
        lines.append(
            "no serving signature is expressible in ONNX; the pure-tensor graphs above are "
            "offered instead (the app's TFLite graphs: tokenization and decoding loops stay "
            "in the caller)"
        )
    return lines
