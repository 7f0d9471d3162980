"""`ksuite push` / `ksuite pull`: a run to the Hugging Face Hub and back, offline (a local
folder in the same layout, and the hub API replaced by copies to a tmp folder)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from keras_suite.common.errors import UserError
from keras_suite.export import hub as hub_lib

huggingface_hub = pytest.importorskip("huggingface_hub")


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: the hub must be mocked, never reached."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network call was attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, no_network):
    """huggingface_hub's create/upload/download, as copies into tmp_path/hub/USER/NAME."""
    root = tmp_path / "hub"
    calls = []

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False, **kw):
        calls.append(("create_repo", repo_id, private))
        (root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def upload_folder(self, folder_path, repo_id, repo_type=None, commit_message=None, **kw):
        calls.append(("upload_folder", repo_id, commit_message))
        shutil.copytree(folder_path, root / repo_id, dirs_exist_ok=True)

    def snapshot_download(repo_id, repo_type=None, local_dir=None, **kw):
        calls.append(("snapshot_download", repo_id))
        if not (root / repo_id).is_dir():
            raise FileNotFoundError(f"404 Repository Not Found for {repo_id}")
        shutil.copytree(root / repo_id, local_dir, dirs_exist_ok=True)
        return local_dir

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return root, calls


def outputs(run_dir, images):
    from keras_suite.common.run import load_run

    return np.asarray(load_run(run_dir).state.model(images, training=False))


def test_push_pull_through_the_mocked_hub(smoke_classification_run, fake_hub, tmp_path):
    from keras_suite.common.run import evaluate_run

    root, calls = fake_hub
    where = hub_lib.push(smoke_classification_run, "hf://someone/shapes-classifier")
    assert where == "https://huggingface.co/someone/shapes-classifier"
    repo = root / "someone" / "shapes-classifier"
    for name in ("README.md", "config.yaml", "info.json", "run.json", "metrics.json"):
        assert (repo / name).is_file(), name
    assert (repo / "model.weights.h5").is_file()
    if (Path(smoke_classification_run) / "model.keras").exists():
        assert (repo / "model.keras").is_file() and (repo / "keras_files.json").is_file()
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]

    pulled = hub_lib.pull("hf://someone/shapes-classifier", tmp_path / "pulled")
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        outputs(pulled, images), outputs(smoke_classification_run, images)
    )
    trained = json.loads((Path(smoke_classification_run) / "metrics.json").read_text())
    again = evaluate_run(pulled)  # `ksuite evaluate` on the pulled run
    assert again["top1"] == pytest.approx(trained["top1"])


def test_model_card_says_what_the_run_did(smoke_classification_run, tmp_path):
    folder = tmp_path / "copy"
    hub_lib.push(smoke_classification_run, str(folder))
    card = (folder / "README.md").read_text()
    run = json.loads((Path(smoke_classification_run) / "run.json").read_text())
    metrics = json.loads((Path(smoke_classification_run) / "metrics.json").read_text())
    info = json.loads((Path(smoke_classification_run) / "info.json").read_text())
    assert card.startswith("---\nlibrary_name: keras\n")
    assert run["command"] in card
    assert f"| top1 | {metrics['top1']:.6g} |" in card
    assert "## Intended use" in card and info["class_names"][0] in card
    split = metrics["evaluation_split"]
    assert f"`{split['split']}` split ({split['size']} examples" in card


def test_local_folder_round_trip_and_cli(smoke_classification_run, tmp_path, no_network):
    from keras_suite.cli import main

    assert main(["push", str(smoke_classification_run), str(tmp_path / "copy")]) == 0
    assert main(["pull", str(tmp_path / "copy"), "--run-dir", str(tmp_path / "back")]) == 0
    manifest = json.loads((tmp_path / "copy" / hub_lib.MANIFEST).read_text())
    for rel in manifest["files"]:
        assert (tmp_path / "back" / rel).read_bytes() == (
            Path(smoke_classification_run) / rel
        ).read_bytes()
    # a second pull into the same folder is refused, and --overwrite replaces it
    assert main(["pull", str(tmp_path / "copy"), "--run-dir", str(tmp_path / "back")]) == 2
    assert (
        main(["pull", str(tmp_path / "copy"), "--run-dir", str(tmp_path / "back"), "--overwrite"])
        == 0
    )


def test_bad_input_is_one_line(tmp_path, fake_hub, capsys):
    with pytest.raises(UserError, match="not a finished run"):
        hub_lib.push(tmp_path, str(tmp_path / "out"))
    with pytest.raises(UserError, match="hf://USER/NAME"):
        hub_lib.repo_id("hf://only-a-name")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a run pushed by `ksuite push`"):
        hub_lib.pull(str(tmp_path / "plain"), tmp_path / "r")
    with pytest.raises(UserError, match="could not download hf://nobody/nothing"):
        hub_lib.pull("hf://nobody/nothing", tmp_path / "r2")
    assert not (tmp_path / "r2").exists()  # nothing half-written
