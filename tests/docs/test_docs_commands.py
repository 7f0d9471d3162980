"""Every `ksuite ...` command line shown in README.md and docs/ still parses: the command
exists, its flags exist, an app verb's own flags exist, `--preset/--set/--config` of train
and data-check commands resolve to a valid config, a bench names a benchmark. So the docs
cannot drift from the CLI again (docs/detection.md once showed a predict flag that never
existed)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from keras_suite.cli import build_parser
from keras_suite.common import config as config_lib
from keras_suite.common.registry import app_names, get_app
from tests.helpers import ROOT  # noqa: E402

DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "results").glob("*.md")),
]


def _command_lines():
    """(file, line) for each ksuite command in fenced code blocks (inline `ksuite convert`
    spans name commands in prose; they are not command lines)."""
    found = []
    for path in DOCS:
        text = path.read_text()
        blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
        for line in (line for block in blocks for line in _logical_lines(block)):
            line = line.strip().removeprefix("$ ")
            if "ksuite " not in line or _is_template(line):
                continue
            words = shlex.split(line, comments=True)
            while words:  # `a && ksuite b` runs two commands
                cut = words.index("&&") if "&&" in words else len(words)
                if words[0] == "ksuite":
                    found.append((path.relative_to(ROOT).as_posix(), shlex.join(words[:cut])))
                words = words[cut + 1 :]
    return found


def _logical_lines(block: str):
    """Shell lines of a code block: backslash continuations joined, and a quoted string
    that spans lines (`--stop "\n"` written with a real newline) kept whole."""
    pending = ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        yield pending
        pending = ""


def _is_template(line: str) -> bool:
    """Syntax summaries such as `ksuite VERB APP|RUN_DIR ...` are not runnable lines."""
    return bool(re.search(r"\b(VERB|COMMAND)\b|\||\.\.\.|\[", line))


COMMANDS = _command_lines()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 20, COMMANDS
    shown = {line.split()[1] for _, line in COMMANDS}
    assert {"train", "evaluate", "export", "convert", "serve", "predict"} <= shown


@pytest.mark.parametrize("where,line", COMMANDS, ids=[f"{w}:{line[:60]}" for w, line in COMMANDS])
def test_documented_command_parses(where, line):
    argv = shlex.split(line)[1:]
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{line}` does not parse: {err.getvalue().strip().splitlines()[-1:]}")
    command = argv[0]
    if command in ("train", "data") and getattr(args, "app", None) in app_names():
        app = get_app(args.app)
        config_file = args.config if args.config and Path(args.config).exists() else None
        config_lib.resolve(app.presets, args.preset, config_file, args.set)
    if command == "bench":
        module = (
            f"keras_suite.apps.{args.name}.bench"
            if args.name in app_names()
            else f"keras_suite.{args.name}.bench"
        )
        importlib.import_module(module)
    if hasattr(args, "target") and hasattr(args, "args"):  # an app verb: its own flags too
        from keras_suite.common.commands import app_commands

        app = args.target if args.target in app_names() else None
        if app is not None:
            (cmd,) = [c for c in app_commands().get(app, []) if c.name == command]
            own = argparse.ArgumentParser(prog=f"ksuite {command} {app}")
            cmd.add_arguments(own)
            try:
                with contextlib.redirect_stderr(err):
                    own.parse_args(args.args)
            except SystemExit:
                pytest.fail(f"{where}: `{line}`: {err.getvalue().strip().splitlines()[-1:]}")
