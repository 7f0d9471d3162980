"""`ksuite predict`: run an app's serving signature on what the user gives it, locally or
on a server.

    ksuite predict RUN_DIR img1.png img2.png                        # in-process
    ksuite predict RUN_DIR "a sentence to translate"                # what the app takes
    ksuite predict --run RUN_DIR img1.png                           # the same, spelled out
    ksuite predict --export BASE/NAME/3 img1.png                    # a SavedModel
    ksuite predict --server http://127.0.0.1:8501 --model NAME --run RUN_DIR img1.png
    ksuite predict --server 127.0.0.1:8500 --grpc --model NAME --input-json request.json

The app's `predict_request(inputs, info, cfg)` turns the inputs (files, strings, seeds:
the app's `predict_inputs` says which) into a request, and `render_predictions` draws the
results; a JSON request (`--input-json`, columnar `inputs`) works for any model.

Each call writes into a new folder, ./predictions/<run or model name>-<n>/ (or --out DIR),
printed at the end, so one call never overwrites another's results. Predict never reads
the run's training data. A wrong input is one line on stderr (exit 2) and writes nothing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from keras_suite import common
from keras_suite.common.errors import UserError


def _app_context(run_dir: str | None, export_dir: str | None, data_path: str | None = None):
    """(app, info, cfg) from a run directory or the provenance an export carries."""
    from keras_suite.common.run import read_run

    if run_dir:
        run = read_run(run_dir, data_path)
        return run.app, run.info, run.cfg
    if export_dir:
        prov = Path(export_dir) / "assets.extra" / "ksuite_export.json"
        if prov.exists():
            meta = json.loads(prov.read_text())
            if meta.get("run_dir") and (Path(meta["run_dir"]) / "run.json").exists():
                return _app_context(meta["run_dir"], None)
    return None, None, None


def take_run_dir(args) -> None:
    """`ksuite predict RUN_DIR INPUT...`: a first input that is a run directory is --run."""
    if (
        args.inputs
        and not (args.run or args.export)
        and (Path(args.inputs[0]) / "run.json").is_file()
    ):
        args.run, args.inputs = args.inputs[0], args.inputs[1:]


def build_request(args) -> tuple[str, dict, object, object]:
    """(signature, inputs, app, info) from --input-json or the app's predict_request hook."""
    if args.input_json:
        from keras_suite.client.loadtest import load_inputs

        signature, inputs = load_inputs(args.input_json, None)
        return args.signature or signature, inputs, None, None
    from keras_suite.common.config import data_path_argument

    app, info, cfg = _app_context(args.run, args.export, data_path_argument(args))
    if app is None:
        raise UserError(
            "to turn inputs into a request, give a run directory (ksuite predict RUN_DIR "
            "INPUT...), or an --export written by `ksuite export`; or send --input-json"
        )
    if not args.inputs:
        raise UserError(
            f"give the {app.name} app's inputs after the run directory: {app.predict_inputs}"
        )
    signature, inputs = app.predict_request(inputs=list(args.inputs), info=info, cfg=cfg)
    return args.signature or signature, inputs, app, info


def _local_outputs(args, signature, inputs):
    from keras_suite.export.signatures import require_saved_model
    from keras_suite.serving.errors import ServingError
    from keras_suite.serving.servable import Servable

    if args.export:
        export_dir = require_saved_model(args.export)
        servable = Servable.load("local", 0, export_dir, warmup=False)
    else:
        from keras_suite.common.config import data_path_argument
        from keras_suite.common.run import load_run

        servable = load_run_servable(load_run(args.run, data_path=data_path_argument(args)))
    try:
        return servable.predict(signature, inputs)[1]
    except ServingError as exc:  # e.g. an image PIL reads but the graph's decoder does not
        detail = next((line for line in str(exc).splitlines() if "Invalid" in line), None)
        raise UserError(
            f"the model refused the inputs: {(detail or str(exc).splitlines()[0]).strip()}"
        ) from None


def load_run_servable(run):
    """A loaded run's serving graph (its app's export_archive) as a Servable, the object
    the embedded server runs: requests are checked against the signatures exactly as a
    server would. The SavedModel lives in a temporary folder removed with the Servable."""
    import shutil
    import weakref

    from keras_suite.serving.servable import Servable

    archive = run.app.export_archive(
        state=run.state, info=run.info, cfg=run.cfg, artifacts=run.artifacts
    )
    folder = Path(tempfile.mkdtemp(prefix="ksuite-predict-"))
    try:
        archive.write_out(str(folder), verbose=False)
        servable = Servable.load(run.app.name, 0, folder, warmup=False)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    weakref.finalize(servable, shutil.rmtree, folder, True)
    return servable


def _server_outputs(args, signature, inputs):
    from keras_suite.client.clients import GrpcClient, RestClient, ServingClientError

    if not args.model:
        raise UserError("--server needs --model NAME (the served model's name)")
    try:
        if args.grpc:
            client = GrpcClient(args.server, timeout=args.timeout)
        else:
            client = RestClient(args.server, timeout=args.timeout)
        return client.predict(
            args.model, inputs, signature_name=signature, version=args.version, label=args.label
        )
    except ServingClientError as exc:
        raise UserError(f"the server refused the request: {exc}") from None


def output_folder(args) -> Path:
    """--out, or a new ./predictions/<name>-<n>/ (the first n not taken): one call never
    overwrites the results of another."""
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    if args.run:
        name = Path(args.run).resolve().name
    elif args.export:
        version = Path(args.export).resolve()
        name = f"{version.parent.name}-v{version.name}"
    else:
        name = args.model or "predict"
    base = Path("predictions")
    base.mkdir(exist_ok=True)
    n = 1
    while True:
        folder = base / f"{name}-{n}"
        try:
            folder.mkdir()  # atomic: two calls at once get different folders
            return folder
        except FileExistsError:
            n += 1


def run_predict(args) -> int:
    common.quiet_import_tensorflow()
    take_run_dir(args)
    if not (args.server or args.run or args.export) and args.inputs:
        raise UserError(
            f"{args.inputs[0]} is not a run directory (no run.json); the first argument is "
            "the run: ksuite predict RUN_DIR INPUT... (or --export DIR, --server URL)"
        )
    if not (args.server or args.run or args.export):
        raise UserError(
            "say where to run: ksuite predict RUN_DIR INPUT..., --export BASE/NAME/VERSION "
            "or --server URL"
        )
    signature, inputs, app, info = build_request(args)
    outputs = (
        _server_outputs(args, signature, inputs)
        if args.server
        else _local_outputs(args, signature, inputs)
    )
    out_dir = output_folder(args)  # only now: a wrong input writes nothing
    printable = {}
    # An app may name outputs too big for a JSON file (segmentation's per-pixel masks): its
    # render_predictions writes them as files, and predictions.json keeps their shape only.
    omitted = set(getattr(app, "predictions_json_omit", ()) if app is not None else ())
    for key, value in sorted(outputs.items()):
        value = np.asarray(value)
        if key in omitted and app is not None and args.inputs:
            printable[key] = {
                "dtype": str(value.dtype),
                "shape": list(value.shape),
                "written_by": f"{app.name} render_predictions (see the files printed below)",
            }
        elif value.dtype == object:
            printable[key] = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                for v in value.reshape(-1)
            ]
            printable[key] = np.array(printable[key], dtype=object).reshape(value.shape).tolist()
        else:
            printable[key] = value.tolist()
        print(f"{key}: {value.dtype} {list(value.shape)}")
    from keras_suite.common.runlog import write_json_atomic

    write_json_atomic(
        out_dir / "predictions.json",
        {"signature_name": signature or "serving_default", "outputs": printable},
    )
    print(f"outputs: {out_dir / 'predictions.json'}")
    if app is not None and args.inputs:
        for path in app.render_predictions(
            inputs=list(args.inputs), outputs=outputs, info=info, out_dir=out_dir
        ):
            print(f"rendered: {path}")
    return 0
