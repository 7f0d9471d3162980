"""Which model versions are loaded: version policies, polling, labels and status.

Mirrors TF Serving's ServerCore with the availability-preserving policy:
- each model's base path is polled for all-digit version folders;
- the version policy (latest N / all / specific) says which versions should be served;
- a new version is loaded (and warmed up) before an old one is unloaded, and an old one is
  kept while no wanted version could be loaded, so a broken or half-written version never
  takes down the one being served; the failure is reported in the model status;
- a failed version is retried when its folder changes (a copy that finishes later).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from keras_suite.export.signatures import version_dirs
from keras_suite.serving.errors import ServingError, invalid, not_found

log = logging.getLogger("ksuite.serving")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class VersionState:
    version: int
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: object = None
    fingerprint: tuple = ()


@dataclass
class ModelState:
    name: str
    base_path: Path
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1
    specific: tuple = ()
    labels: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)  # int -> VersionState
    warned_empty: bool = False


def settle_heap() -> None:
    """Collect, then move every surviving object out of the garbage collector's reach.

    A loaded TensorFlow model leaves a great many long-lived Python objects; each full
    (generation-2) collection walked them all and paused every thread for ~250 ms, every few
    seconds under load: those were the REST tail latencies (p99 ~220 ms with a single wrk
    client). Frozen objects are still freed by reference counting; unfreezing first lets this
    collection reclaim the cycles of a version just unloaded. Called once after a poll or a
    config change that loaded or unloaded something, so the one full pause falls on a
    reload, not on every few hundred requests.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _fingerprint(path: Path) -> tuple:
    """Names, sizes and mtimes of every file: changes while a copy is in progress."""
    items = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            items.append(
                (os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns)
            )
    return tuple(sorted(items))


def _entry_from_config(config) -> ModelState:
    policy = config.model_version_policy
    kind = policy.WhichOneof("policy_choice") or "latest"
    num = policy.latest.num_versions if kind == "latest" else 1
    return ModelState(
        name=config.name,
        base_path=Path(config.base_path).expanduser().absolute(),
        policy=kind,
        num_versions=num or 1,
        specific=tuple(policy.specific.versions) if kind == "specific" else (),
        labels=dict(config.version_labels),
    )


class ModelManager:
    def __init__(
        self, load_fn, warmup: bool = True, allow_labels_for_unavailable: bool = False, on_load=None
    ):
        """load_fn(name, version, path, warmup) -> Servable; on_load(servable) after a load."""
        self._load_fn = load_fn
        self._warmup = warmup
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._on_load = on_load
        self._models: dict[str, ModelState] = {}
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._heap_changed = False  # a load or unload since the last settle_heap()

    # ---- configuration ------------------------------------------------------------------
    def apply_config(self, model_server_config) -> None:
        """Serve the models in a ModelServerConfig; models no longer listed are unloaded.

        As in TF Serving, a version label may only name a version that is loaded (unless
        allow_labels_for_unavailable): otherwise the new labels are refused, the previous
        ones stay, and FAILED_PRECONDITION is raised after the versions were updated.
        """
        entries = [_entry_from_config(c) for c in model_server_config.model_config_list.config]
        with self._lock:
            old = self._models
            new = {}
            for entry in entries:
                if entry.name in old and old[entry.name].base_path == entry.base_path:
                    entry.versions = old[entry.name].versions
                new[entry.name] = entry
            removed = [
                m
                for name, m in old.items()
                if name not in new or new[name].versions is not m.versions
            ]
            wanted_labels = {name: dict(m.labels) for name, m in new.items()}
            for name, model in new.items():  # labels take effect only once validated
                model.labels = (
                    dict(old[name].labels)
                    if name in old and old[name].versions is model.versions
                    else {}
                )
            self._models = new
        try:
            for model in removed:
                for vs in model.versions.values():
                    self._unload(model.name, vs)
            self.poll(settle=False)
            self._apply_labels(wanted_labels)
        finally:
            self._settle()  # after the labels: a new label is usable as soon as its version is

    def _apply_labels(self, wanted: dict) -> None:
        with self._lock:
            problems = []
            for name, labels in wanted.items():
                model = self._models[name]
                for label, version in sorted(labels.items()):
                    vs = model.versions.get(version)
                    if not self._allow_unavailable_labels and (vs is None or vs.state != AVAILABLE):
                        problems.append(
                            f"Request to assign label {label} to version {version} of model "
                            f"{name}, which is not currently available for inference"
                        )
                if not problems:
                    model.labels = dict(labels)
            if problems:
                raise ServingError("FAILED_PRECONDITION", "; ".join(problems))

    # ---- polling ------------------------------------------------------------------------
    def start_polling(self, interval_s: float) -> None:
        if interval_s <= 0:
            return
        self._thread = threading.Thread(
            target=self._poll_loop, args=(interval_s,), name="model-poller", daemon=True
        )
        self._thread.start()

    def _poll_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the poller must survive anything
                log.exception("polling the model base paths failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            models = list(self._models.values())
        for model in models:
            for vs in model.versions.values():
                self._unload(model.name, vs)
        self._settle()

    def _wanted(self, model: ModelState, present: dict) -> list[int]:
        if model.policy == "all":
            return sorted(present)
        if model.policy == "specific":
            return sorted(v for v in model.specific if v in present)
        return sorted(present)[-model.num_versions :]

    def poll(self, settle: bool = True) -> None:
        """One pass over every model's base path: load wanted versions, unload the rest."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._poll_model(model)
        if settle:
            self._settle()

    def _settle(self) -> None:
        if self._heap_changed:
            self._heap_changed = False
            settle_heap()

    def _poll_model(self, model: ModelState) -> None:
        present = version_dirs(model.base_path)
        if not present and not model.warned_empty:
            nested = (
                sorted(c.name for c in model.base_path.iterdir() if version_dirs(c, warn=False))
                if model.base_path.is_dir()
                else []
            )
            hint = (
                f"; it holds model folders {nested}: point the base path at one of them"
                if nested
                else "; waiting for a numbered version folder"
            )
            log.warning(
                "no versions of model %s found under base path %s%s",
                model.name,
                model.base_path,
                hint,
            )
            model.warned_empty = True
        wanted = self._wanted(model, present)
        for version in wanted:
            vs = model.versions.get(version)
            path = present[version]
            if vs is not None and vs.state == AVAILABLE:
                continue
            fingerprint = _fingerprint(path)
            if vs is not None and vs.error_code != "OK" and vs.fingerprint == fingerprint:
                continue  # failed before and nothing changed since: don't retry in a loop
            self._load(model, version, path, fingerprint)
        # Availability preserving: drop unwanted versions only once a wanted one serves.
        with self._lock:
            serving_wanted = any(
                model.versions.get(v) is not None and model.versions[v].state == AVAILABLE
                for v in wanted
            )
            extra = [
                vs for v, vs in model.versions.items() if v not in wanted and vs.state == AVAILABLE
            ]
        if serving_wanted or not present:
            for vs in extra:
                self._unload(model.name, vs)

    def _load(self, model: ModelState, version: int, path: Path, fingerprint: tuple) -> None:
        vs = VersionState(version=version, state=LOADING, fingerprint=fingerprint)
        with self._lock:
            previous = model.versions.get(version)
            model.versions[version] = vs
        log.info("loading model %s version %d from %s", model.name, version, path)
        started = time.monotonic()
        try:
            servable = self._load_fn(model.name, version, path, self._warmup)
        except Exception as exc:  # noqa: BLE001 - any load failure becomes a status
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            code = (
                "NOT_FOUND"
                if isinstance(exc, FileNotFoundError)
                else (exc.code if isinstance(exc, ServingError) else "UNKNOWN")
            )
            with self._lock:
                vs.state, vs.error_code, vs.error_message = END, code, message
                if previous is not None and previous.servable is not None:
                    model.versions[version] = previous
            log.error("loading model %s version %d failed: %s", model.name, version, message)
            if self._on_load:
                self._on_load(model.name, version, None, code)
            return
        with self._lock:
            vs.servable, vs.state = servable, AVAILABLE
        self._heap_changed = True
        log.info(
            "model %s version %d is available (%.1f s, %d warm-up requests)",
            model.name,
            version,
            time.monotonic() - started,
            getattr(servable, "warmup_count", 0),
        )
        if self._on_load:
            self._on_load(model.name, version, servable, "OK")

    def _unload(self, name: str, vs: VersionState) -> None:
        with self._lock:
            servable, vs.servable = vs.servable, None
            if vs.state == AVAILABLE:
                vs.state = END
        if servable is not None:
            log.info("unloaded model %s version %d", name, vs.version)
            batcher = getattr(servable, "batcher", None)
            if batcher is not None:
                batcher.stop()
            self._heap_changed = True

    # ---- lookups ----------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def _model_and_version(self, name: str, version: int | None, label: str | None):
        """The model entry and the version a label points to; call with the lock held."""
        if version is not None and label:
            raise invalid(
                f"Both model version ({version}) and model version label ({label}) "
                "cannot be supplied."
            )
        model = self._models.get(name)
        if label:
            if model is None or label not in model.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = model.labels[label]
        return model, version

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        """The servable a request for (name, version | label | latest) goes to."""
        with self._lock:
            model, version = self._model_and_version(name, version, label)
            if model is not None:
                if version is None:
                    available = [v for v, vs in model.versions.items() if vs.state == AVAILABLE]
                    if available:
                        return model.versions[max(available)].servable
                else:
                    vs = model.versions.get(version)
                    if vs is not None and vs.state == AVAILABLE:
                        return vs.servable
        spec = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise not_found(f"Servable not found for request: {spec}")

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionState]:
        """Version states as GetModelStatus reports them (newest first)."""
        with self._lock:
            model, version = self._model_and_version(name, version, label)
            if model is None or not model.versions:
                raise not_found(f"Could not find any versions of model {name}")
            if version is not None:
                vs = model.versions.get(version)
                if vs is None:
                    raise not_found(f"Could not find version {version} of model {name}")
                return [VersionState(**{**vs.__dict__, "servable": None})]
            return [
                VersionState(**{**vs.__dict__, "servable": None})
                for _, vs in sorted(model.versions.items(), reverse=True)
            ]

    def available(self) -> dict[str, list[int]]:
        with self._lock:
            return {
                name: sorted(v for v, vs in m.versions.items() if vs.state == AVAILABLE)
                for name, m in self._models.items()
            }
