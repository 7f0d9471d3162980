"""`ksuite push RUN_DIR hf://user/name` and `ksuite pull hf://user/name`: a finished run
on the Hugging Face Hub, and back into a run directory that `ksuite evaluate`, `predict`,
`export` and `convert` take.

A pushed repository holds what a run needs to be used without its training data:

    README.md             the model card: what the model does, its metrics and the split
                          they were measured on, the command that trained it
    config.yaml info.json run.json metrics.json
    <name>.keras          each exported model as a Keras file (keras_files.json says which
                          load with Keras alone), when the run wrote them
    <name>.weights.h5     the final weights `ksuite` loads back into the app's models
    artifacts/            vocabularies, tokenizers, statistics the model's graphs read
    plots/                the run's pictures (training curves, confusion matrix, ...)
    ksuite_hub.json       which files make up the run, for `ksuite pull`

Any target that does not start with hf:// is a local folder written in the same layout
(an air-gapped copy; the tests' offline hub). docs/ecosystem.md shows the commands.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from keras_suite.common.errors import UserError

HUB_PREFIX = "hf://"
MANIFEST = "ksuite_hub.json"
RUN_FILES = ("config.yaml", "info.json", "run.json")  # what a run directory cannot lack
OPTIONAL_FILES = ("metrics.json", "keras_files.json", "per_class.json")
INSTALL_HINT = 'install the hub extra: pip install -e ".[hub]" (huggingface_hub)'

# What each app's model is for: the model card's "Intended use".
INTENDED_USE = {
    "classification": "Sorting images into the classes it was trained on: {classes}.",
    "detection": "Finding and boxing objects of the classes it was trained on: {classes}.",
    "segmentation": "Labelling every pixel of an image with one of these classes: {classes}.",
    "translation": "Translating sentences like the ones it was trained on, one direction.",
    "textgen": "Continuing text in the style of the corpus it was trained on.",
    "gan": "Generating new images like the ones it was trained on.",
    "vae": "Encoding images into a small latent space, reconstructing and sampling them.",
    "dqn": "Playing the environment it was trained on.",
}


def repo_id(target: str) -> str:
    """'user/name' of hf://user/name, or one clear line."""
    repo = target[len(HUB_PREFIX) :].strip("/")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"{target!r} is not a Hub model repository; write hf://USER/NAME")
    return repo


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise UserError(f"hf:// needs huggingface_hub; {INSTALL_HINT}") from None
    return huggingface_hub


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# ---- the model card --------------------------------------------------------------------


def _scalars(metrics: dict) -> list[tuple[str, object]]:
    return [
        (k, v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]


def model_card(run_dir: Path, repo: str) -> str:
    """README.md for the repository, from the run's own files."""
    run = json.loads((run_dir / "run.json").read_text())
    info = json.loads((run_dir / "info.json").read_text())
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    app = run.get("app", "")
    names = info.get("class_names") or []
    classes = ", ".join(map(str, names[:20])) + (
        f" (and {len(names) - 20} more)" if len(names) > 20 else ""
    )
    use = INTENDED_USE.get(app, "See the app's documentation.").format(
        classes=classes or "see info.json"
    )
    split = metrics.get("evaluation_split") or info.get("evaluation_split") or {}
    lines = [
        "---",
        "library_name: keras",
        "tags:",
        "- keras",
        "- keras-suite",
        f"- {app}",
        "---",
        "",
        f"# {repo.split('/')[-1]}",
        "",
        f"A Keras Suite `{app}` model (preset `{run.get('preset', '')}`), trained with "
        f"TensorFlow {run.get('tensorflow', '?')} and Keras {run.get('keras', '?')}.",
        "",
        "## Intended use",
        "",
        use,
        f" It was trained on `{info.get('source', '?')}` data "
        f"(split sizes: {json.dumps(info.get('split_sizes', {}))}); expect it to do well only "
        "on inputs like those. It has not been evaluated for fairness, safety or any use "
        "where a wrong answer harms someone.",
        "",
        "## Evaluation",
        "",
    ]
    if split:
        lines += [
            f"Measured on the `{split.get('split', '?')}` split ({split.get('size', '?')} "
            f"examples; near-duplicates of training examples removed: "
            f"{split.get('near_duplicates_removed', 0)}, rule: {split.get('duplicate_rule', '?')}).",
            "",
        ]
    scalars = _scalars(metrics)
    if scalars:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [
            f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in scalars
        ]
    else:
        lines.append("The run has no metrics.json (it was not evaluated).")
    lines += [
        "",
        "## How it was trained",
        "",
        "```",
        run.get("command", "(command not recorded)"),
        "```",
        "",
        f"Strategy: {run.get('strategy', '?')}; precision: {run.get('precision', '?')}. "
        "config.yaml holds every setting.",
        "",
        "## How to use it",
        "",
        "```",
        f"ksuite pull hf://{repo} --run-dir runs/{repo.split('/')[-1]}",
        f"ksuite predict runs/{repo.split('/')[-1]} INPUT...",
        f"ksuite export runs/{repo.split('/')[-1]} --base models/",
        "```",
        "",
        "The `.keras` files load with `keras.saving.load_model` after "
        "`huggingface_hub.hf_hub_download` (keras_files.json says which need keras_suite "
        "installed).",
        "",
    ]
    return "\n".join(lines)


# ---- push ------------------------------------------------------------------------------


def stage(run_dir: str | Path, folder: Path, repo: str) -> list[str]:
    """Copy what a pushed run holds into `folder`; -> the file names, relative."""
    run_dir = Path(run_dir)
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    weights = sorted(p.name for p in run_dir.glob("*.weights.h5") if ".tmp" not in p.name)
    if missing or not weights:
        raise UserError(
            f"{run_dir} is not a finished run (no {', '.join(missing) or 'final weights'}); "
            "push the folder `ksuite train` wrote, after training finished"
        )
    files = [f for f in (*RUN_FILES, *OPTIONAL_FILES) if (run_dir / f).is_file()]
    files += weights
    files += sorted(p.name for p in run_dir.glob("*.keras"))
    for sub in ("artifacts", "plots"):
        files += sorted(
            str(p.relative_to(run_dir))
            for p in (run_dir / sub).rglob("*")
            if p.is_file() and ".tmp" not in p.name
        )
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / name, folder / name)
    (folder / "README.md").write_text(model_card(run_dir, repo))
    app = json.loads((run_dir / "run.json").read_text()).get("app", "")
    manifest = {"format": 1, "app": app, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return [*files, "README.md", MANIFEST]


def push(run_dir: str | Path, target: str, private: bool = False, message: str = "") -> str:
    """Upload the run to hf://user/name (or write it to a local folder); -> where it went."""
    run_dir = Path(run_dir)
    if not target.startswith(HUB_PREFIX):
        out = Path(target)
        if out.exists() and any(out.iterdir()):
            raise UserError(f"{out} exists and is not empty; push to a new folder")
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            stage(run_dir, tmp, out.name)
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return str(out)
    repo = repo_id(target)
    hub = _hub()
    with tempfile.TemporaryDirectory(prefix="ksuite-push-") as tmp:
        stage(run_dir, Path(tmp), repo)  # a bad run fails here, before any upload
        api = hub.HfApi()
        try:
            api.create_repo(repo_id=repo, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(
                folder_path=tmp,
                repo_id=repo,
                repo_type="model",
                commit_message=message or f"ksuite push {run_dir.name}",
            )
        except Exception as exc:  # no network, no token, no permission
            raise UserError(
                f"could not push to {target} ({_first_line(exc)}); log in with "
                "`huggingface-cli login` (or set HF_TOKEN) and check the network"
            ) from None
    return f"https://huggingface.co/{repo}"


# ---- pull ------------------------------------------------------------------------------


def pull(source: str, run_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Download a pushed run into `run_dir` (default runs/<name>); -> the run directory."""
    name = source.rstrip("/").split("/")[-1]
    run_dir = Path(run_dir) if run_dir else Path("runs") / name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise UserError(
                f"{run_dir} exists and is not empty; pass --run-dir NEW_DIR or --overwrite"
            )
    with tempfile.TemporaryDirectory(prefix="ksuite-pull-") as tmp:
        if source.startswith(HUB_PREFIX):
            repo = repo_id(source)
            hub = _hub()
            try:
                folder = Path(hub.snapshot_download(repo_id=repo, repo_type="model", local_dir=tmp))
            except Exception as exc:  # not found, private, offline
                raise UserError(
                    f"could not download {source} ({_first_line(exc)}); check the name, the "
                    "network, and `huggingface-cli login` for a private repository"
                ) from None
        else:
            folder = Path(source)
            if not folder.is_dir():
                raise UserError(f"{source} is neither hf://USER/NAME nor a folder")
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise UserError(
                f"{source} is not a run pushed by `ksuite push` (no {MANIFEST}); "
                "pull repositories that `ksuite push` wrote"
            )
        manifest = json.loads(manifest_path.read_text())
        missing = [f for f in manifest.get("files", []) if not (folder / f).is_file()]
        if missing:
            raise UserError(f"{source} lacks files its {MANIFEST} lists: {', '.join(missing[:5])}")
        staging = run_dir.with_name(f".{run_dir.name}.pull")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for rel in [*manifest["files"], "README.md", MANIFEST]:
                if (folder / rel).is_file():
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(folder / rel, staging / rel)
            if run_dir.exists():
                shutil.rmtree(run_dir)
            staging.rename(run_dir)  # complete or absent: never half a run
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return run_dir
