"""App verbs: commands an app adds to `ksuite` (`sample`, `generate`, `play`, ...).

An app declares them in an optional `apps/<name>/commands.py` holding
`COMMANDS = [AppCommand(...), ...]`. That module must import no TensorFlow at module level:
`ksuite --help` reads every app's list.

    ksuite VERB APP [ARGS...]        e.g. ksuite play dqn RUN_DIR
    ksuite VERB RUN_DIR [ARGS...]    the app is read from RUN_DIR/run.json

Two apps can declare the same verb; the CLI dispatches on the app. The app's own parser
(`add_arguments`) sees RUN_DIR (when one was given) as its first argument, so an app
command takes `run_dir` as its first positional. A command with `per_app=False` is a plain
top-level command instead (`ksuite detection-check DATA_YAML`).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from keras_suite.common.errors import UserError
from keras_suite.common.registry import APPS_DIR, app_names, read_run_meta


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage mistakes (a missing argument, `--n abc`) are one line
    like every other error (`error: ...`, exit 2), not argparse's usage block."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message} (`{self.prog} --help` lists the arguments)")


@dataclass
class AppCommand:
    name: str  # the verb
    help: str  # one line for `ksuite --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    per_app: bool = True


def check_seed(seed: int, count: int = 1, flag: str = "--seed") -> None:
    """Seeds seed..seed+count-1 must fit the int64 the models take (one line if not)."""
    if not (0 <= seed and seed + max(count, 1) - 1 < 2**63):
        raise UserError(f"{flag} {seed}: use a seed from 0 to {2**63 - max(count, 1)}")


def app_commands() -> dict[str, list[AppCommand]]:
    """{app name: [AppCommand, ...]} for every app with a commands.py (no TF import)."""
    found = {}
    for name in app_names():
        if (APPS_DIR / name / "commands.py").exists():
            found[name] = list(
                importlib.import_module(f"keras_suite.apps.{name}.commands").COMMANDS
            )
    return found


def _resolve(target: str, rest: list[str]) -> tuple[str, list[str]]:
    """(app name, argv for the app's parser) from `APP ...` or `RUN_DIR ...`."""
    if target in app_names():
        return target, rest
    if (Path(target) / "run.json").is_file():
        return read_run_meta(target)["app"], [target] + rest
    raise UserError(
        f"{target!r} is neither an app ({', '.join(app_names())}) nor a run directory "
        "(a folder with run.json)"
    )


def register(subparsers, commands: dict[str, list[AppCommand]] | None = None) -> None:
    """Add one `ksuite VERB` per verb, dispatching on APP|RUN_DIR."""
    commands = app_commands() if commands is None else commands
    verbs: dict[str, dict[str, AppCommand]] = {}
    for app, cmds in commands.items():
        for cmd in cmds:
            if not cmd.per_app:
                p = subparsers.add_parser(cmd.name, help=cmd.help)
                cmd.add_arguments(p)
                p.set_defaults(func=cmd.run)
                continue
            verbs.setdefault(cmd.name, {})[app] = cmd
    for verb, by_app in sorted(verbs.items()):
        apps = ", ".join(sorted(by_app))
        helps = "; ".join(f"{a}: {c.help}" for a, c in sorted(by_app.items()))
        p = subparsers.add_parser(
            verb,
            help=helps,
            description=f"{helps}. `ksuite {verb} APP --help` lists the app's own flags.",
            usage=f"ksuite {verb} {{{apps}}}|RUN_DIR [ARGS...]",
        )
        p.add_argument(
            "target", metavar="APP|RUN_DIR", help=f"one of {apps}, or a run directory of one"
        )
        p.add_argument(
            "args", nargs=argparse.REMAINDER, help="the app's arguments for this command"
        )
        p.set_defaults(func=lambda args, verb=verb, by_app=by_app: _dispatch(verb, by_app, args))


def _dispatch(verb: str, by_app: dict, args) -> int:
    app, argv = _resolve(args.target, list(args.args))
    cmd = by_app.get(app)
    if cmd is None:
        raise UserError(
            f"the {app} app has no `{verb}` command; `ksuite {verb}` is for "
            f"{', '.join(sorted(by_app))} (see `ksuite apps`)"
        )
    parser = OneLineParser(
        prog=f"ksuite {verb} {app}",
        description=cmd.help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cmd.add_arguments(parser)
    sub = parser.parse_args(argv)
    sub.app = app
    _check_run_dir_app(verb, app, getattr(sub, "run_dir", None))
    return int(cmd.run(sub) or 0)


def _check_run_dir_app(verb: str, app: str, run_dir) -> None:
    """`ksuite sample gan RUN_DIR` with RUN_DIR of another app (or not a run at all) is one
    clear line before the app's command loads anything from it."""
    if not run_dir:
        return
    if not (Path(run_dir) / "run.json").is_file():
        what = "does not exist" if not Path(run_dir).exists() else "is not a run directory"
        raise UserError(
            f"{run_dir} {what} (no run.json); give the folder of a finished "
            f"`ksuite train {app}` run"
        )
    other = read_run_meta(run_dir)["app"]
    if other != app:
        raise UserError(f"{run_dir} is a {other} run; `ksuite {verb} {app}` needs a {app} run")
