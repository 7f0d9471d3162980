"""The contract's rules, checked statically on every registered app (no training):
hook signatures are the base class's (keyword-only, nothing relaxed), app modules hold no
mutable module-level state, the same concept has the same file name, and the shared
`info` keys are enforced."""

from __future__ import annotations

import ast
import inspect

import pytest

from keras_suite.common.app import App
from keras_suite.common.info import InfoContractError, check_info
from keras_suite.common.registry import APPS_DIR, app_names, get_app

# Hooks the shared code calls with keyword arguments; train_step/test_step are per-replica
# step functions called by strategy.run with (state, batch, step) and train takes ctx.
KEYWORD_HOOKS = (
    "datasets",
    "build_state",
    "data_report",
    "on_epoch_end",
    "evaluate",
    "export_archive",
    "sample_requests",
    "predict_request",
    "render_predictions",
    "predict_examples",
    "tflite_targets",
    "tflite_evaluate",
)
POSITIONAL_HOOKS = {
    "train_step": ["state", "batch", "step"],
    "test_step": ["state", "batch", "step"],
}
# Concepts that exist under one name only.
WRONG_NAMES = {
    "loss.py": "losses.py",
    "evaluation.py": "evaluate.py",
    "exporting.py": "export.py",
    "serving.py": "export.py",
    "configs.py": "config.py",
    "dataset.py": "data.py",
    "datasets.py": "data.py",
    "models.py": "model.py",
}
MUTATORS = {
    "clear",
    "update",
    "append",
    "extend",
    "pop",
    "popitem",
    "setdefault",
    "add",
    "remove",
    "discard",
    "insert",
    "__setitem__",
}


def _shape(fn) -> list[tuple[str, object, bool]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty) for p in params]


@pytest.mark.parametrize("name", app_names())
def test_hooks_take_the_base_signature_keyword_only(name):
    app = get_app(name)
    for hook in KEYWORD_HOOKS:
        mine = getattr(type(app), hook)
        base = getattr(App, hook)
        if mine is base:
            continue
        assert _shape(mine) == _shape(base), (
            f"{name}.{hook}{inspect.signature(mine)} differs from the contract's "
            f"App.{hook}{inspect.signature(base)} (keyword-only, same names, no defaults)"
        )
        assert all(kind == inspect.Parameter.KEYWORD_ONLY for _, kind, _ in _shape(mine))
    for hook, names in POSITIONAL_HOOKS.items():
        fn = getattr(type(app), hook)
        if fn is not getattr(App, hook):
            assert [n for n, _, _ in _shape(fn)] == names, f"{name}.{hook}"


def _module_state_problems(path) -> list[str]:
    """Module-level names bound to mutable containers that the module mutates, and
    `global` statements: the ways an app could keep state between calls."""
    tree = ast.parse(path.read_text())
    mutable = set()
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, ast.AnnAssign) else [])
        )
        value = getattr(node, "value", None)
        is_container = isinstance(value, (ast.Dict, ast.List, ast.Set)) or (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", "")
            in ("dict", "list", "set", "OrderedDict", "defaultdict")
        )
        for target in targets:
            if isinstance(target, ast.Name) and is_container:
                mutable.add(target.id)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            problems.append(f"line {node.lineno}: global {', '.join(node.names)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in mutable
            and node.func.attr in MUTATORS
        ):
            problems.append(f"line {node.lineno}: {node.func.value.id}.{node.func.attr}()")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in mutable
                ):
                    problems.append(f"line {node.lineno}: {target.value.id}[...] written")
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") in ("lru_cache", "cache")
            and getattr(getattr(node.func, "value", None), "id", "") == "functools"
        ):
            problems.append(f"line {node.lineno}: functools.{node.func.attr}")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("lru_cache", "cache")
            and getattr(node.value, "id", "") == "functools"
        ):
            problems.append(f"line {node.lineno}: functools.{node.attr}")
    return problems


@pytest.mark.parametrize("name", app_names())
def test_apps_keep_no_module_level_state(name):
    found = {
        str(path.relative_to(APPS_DIR)): problems
        for path in sorted((APPS_DIR / name).glob("*.py"))
        if (problems := _module_state_problems(path))
    }
    assert not found, (
        f"apps/{name} keeps module-level state {found}; pass it through Datasets.extras / "
        "TFLiteTarget.extras, or use keras_suite.common.cache"
    )


def test_the_state_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "_CACHE = {}\n\ndef f(k):\n    _CACHE[k] = 1\n    _CACHE.clear()\n"
        "FLAG = False\ndef g():\n    global FLAG\n    FLAG = True\n"
    )
    problems = _module_state_problems(bad)
    assert len(problems) == 3, problems
    ok = tmp_path / "ok.py"
    ok.write_text("PRESETS = {'a': 1}\n\ndef f():\n    return dict(PRESETS)\n")
    assert _module_state_problems(ok) == []


@pytest.mark.parametrize("name", app_names())
def test_same_concept_same_file_name(name):
    files = {p.name for p in (APPS_DIR / name).glob("*.py")}
    wrong = {f: WRONG_NAMES[f] for f in files if f in WRONG_NAMES}
    assert not wrong, f"apps/{name}: rename {wrong}"
    app = get_app(name)
    if type(app).export_archive is not App.export_archive:
        assert "export.py" in files, f"apps/{name} has serving graphs but no export.py"


def test_info_keys_are_checked_with_a_clear_error():
    split = {"split": "test", "size": 1, "near_duplicates_removed": 0, "duplicate_rule": "x"}
    good = {"source": "builtin", "split_sizes": {"train": 3, "test": 1}, "evaluation_split": split}
    assert check_info("x", dict(good)) == good
    with pytest.raises(InfoContractError, match=r"app 'x'.*'source'"):
        check_info("x", {"split_sizes": {}})
    with pytest.raises(InfoContractError, match="split_sizes"):
        check_info("x", {"source": "builtin"})
    with pytest.raises(InfoContractError, match="class_names"):
        check_info("x", {**good, "class_names": "cat,dog"})
    with pytest.raises(InfoContractError, match="near_duplicates_removed"):
        check_info("x", {**good, "evaluation_split": {"split": "test", "size": 1}})
    with pytest.raises(InfoContractError, match="int counts"):
        check_info("x", {**good, "split_sizes": {"train": "3"}})
