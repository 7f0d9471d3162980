"""The repository carries its own reasons and its numbers can be rerun.

- Nothing cites the design brief that lives outside the repository; the project's own
  reasons are docs/design.md, and every `docs/design.md §N` a code comment or doc cites
  is a section heading there.
- Docs hold no machine-local absolute paths (they would not exist on a reader's machine).
- Every table in docs/results/ comes after the command that reproduces it, in the same
  section, or the section says plainly that it cannot be reproduced from this repository.
- Relative links between docs point to files and headings that exist.

Each checker is a plain function of text, and `test_the_checkers_catch_*` feed them a
bad example, so a checker that silently stopped finding anything would fail here too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

DESIGN = ROOT / "docs" / "design.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RESULTS = sorted((ROOT / "docs" / "results").glob("*.md"))
CITING_TREES = ["keras_suite", "docs", "tests", "benchmarks"]
TEXT_SUFFIXES = {".py", ".md", ".txt", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh", ".json"}

# Spelled in two pieces so that this file does not contain the name it looks for.
OUTSIDE_BRIEF = "DESIGN" + ".md"
MACHINE_PATH = re.compile(r"(?<![\w.~])(/work/|/home/|/root/|/tmp/|/opt/|/Users/|[A-Za-z]:\\)")
CITATION = re.compile(r"docs/design\.md\s+((?:§\d+)(?:\s*(?:,|and|&)\s*§\d+)*)")
REPRODUCE = re.compile(r"^\s*(?:\$ )?(ksuite |python3? benchmarks/|python3? -m keras_suite)", re.M)
NOT_REPRODUCIBLE = "not reproducible from this repository"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


# ---- checkers: text in, list of problems out ------------------------------------------


def design_sections(text: str) -> dict[int, str]:
    """{number: heading} of the `## N. Title` headings."""
    return {int(n): title for n, title in re.findall(r"(?m)^## (\d+)\. (.+)$", text)}


def cited_sections(text: str) -> list[int]:
    return [int(n) for group in CITATION.findall(text) for n in re.findall(r"§(\d+)", group)]


def machine_paths(text: str) -> list[str]:
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) pieces of a Markdown text, split at every heading outside code."""
    pieces, heading, body, fenced = [], "(top)", [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            pieces.append((heading, "\n".join(body)))
            heading, body = line, []
        else:
            body.append(line)
    pieces.append((heading, "\n".join(body)))
    return pieces


def tables_without_command(text: str) -> list[str]:
    """Headings of sections with a table that no reproduce command precedes."""
    problems = []
    for heading, body in sections(text):
        if NOT_REPRODUCIBLE in " ".join(body.split()):  # the phrase may wrap across lines
            continue
        commands_seen, fenced, block = False, False, []
        lines = body.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("```"):
                if fenced and REPRODUCE.search("\n".join(block)):
                    commands_seen = True
                fenced, block = not fenced, []
                continue
            if fenced:
                block.append(line)
                continue
            is_table = (
                line.startswith("|")
                and i + 1 < len(lines)
                and re.match(r"^\|\s*:?-{3,}", lines[i + 1])
            )
            if is_table and not commands_seen:
                problems.append(f"{heading}: table '{line[:60]}' has no command before it")
                break
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor for a heading text."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    out = set()
    for heading, _ in sections(text)[1:]:
        out.add(slug(heading.lstrip("#")))
    return out


def broken_links(path: Path, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # http:, mailto: ...
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and dest.is_file() and anchor not in anchors(dest.read_text()):
            problems.append(f"{target}: no heading with that anchor")
    return problems


def mismatched_section_links(text: str) -> list[str]:
    """`[design §8](design.md#7-serving)`: the number in the text and the anchor differ."""
    bad = []
    for label, anchor in re.findall(r"\[[^\]]*?§(\d+)[^\]]*\]\([^)]*design\.md#([^)]+)\)", text):
        if not anchor.startswith(f"{label}-"):
            bad.append(f"§{label} -> #{anchor}")
    return bad


def text_files():
    yield ROOT / "README.md"
    for tree in CITING_TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts:
                yield path


# ---- the checks on the repository -------------------------------------------------------


def test_nothing_cites_the_outside_design_brief():
    offenders = [
        str(p.relative_to(ROOT)) for p in text_files() if OUTSIDE_BRIEF in p.read_text("utf-8")
    ]
    assert not offenders, f"cite docs/design.md §N instead of {OUTSIDE_BRIEF}: {offenders}"


def test_design_sections_are_numbered_in_order():
    numbers = list(design_sections(DESIGN.read_text()))
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 8, "design.md lost its sections"


def test_every_design_citation_names_an_existing_section():
    known = design_sections(DESIGN.read_text())
    cited, unknown = 0, []
    for path in text_files():
        for n in cited_sections(path.read_text("utf-8")):
            cited += 1
            if n not in known:
                unknown.append(f"{path.relative_to(ROOT)}: §{n}")
    assert not unknown, f"docs/design.md has no such section: {unknown}"
    assert cited >= 10, f"only {cited} citations found: did the citation form change?"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_hold_no_machine_paths(path):
    found = machine_paths(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: machine-local paths {found}"


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_every_results_table_follows_its_command(path):
    text = path.read_text()
    assert "|---" in text, f"{path.name} holds no table"
    problems = tables_without_command(text)
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_every_results_file_has_a_guide_pointing_to_it(path):
    guide = ROOT / "docs" / path.name
    assert guide.exists(), f"docs/results/{path.name} has no guide docs/{path.name}"
    assert f"results/{path.name}" in guide.read_text(), f"docs/{path.name} does not link it"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = path.read_text()
    problems = broken_links(path, text) + mismatched_section_links(text)
    assert not problems, f"{path.relative_to(ROOT)}: {problems}"


# ---- the checkers themselves catch what they are for -------------------------------------


def test_the_checkers_catch_a_table_without_its_command():
    bad = "## Run\n\nsome words\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    command_after = "## Run\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nksuite train x\n```\n"
    command_elsewhere = "## One\n\n```\nksuite train x\n```\n\n## Two\n\n| a |\n|---|\n| 1 |\n"
    good = "## Run\n\n```bash\nksuite train x --run-dir runs/x\n```\n\n| a | b |\n|---|---|\n"
    marked = f"## Run\n\nThis is {NOT_REPRODUCIBLE} (script lost).\n\n| a |\n|---|\n| 1 |\n"
    not_a_command = "## Run\n\n```\n/usr/bin/python somewhere.py\n```\n\n| a |\n|---|\n| 1 |\n"
    assert tables_without_command(bad)
    assert tables_without_command(command_after)
    assert tables_without_command(command_elsewhere)
    assert tables_without_command(not_a_command)
    assert not tables_without_command(good)
    assert not tables_without_command(marked)


def test_the_checkers_catch_paths_citations_and_links(tmp_path):
    assert machine_paths("run `python x.py --out /tmp/a` and /home/me/b, C:\\data")
    assert not machine_paths("runs/x, ~/photos, models/classification/1, a/tmp/b")
    assert cited_sections("see docs/design.md §5 and §11, docs/design.md §2") == [5, 11, 2]
    assert design_sections("## 1. One\ntext\n## 2. Two\n### not this\n") == {1: "One", 2: "Two"}
    assert slug(" 4. Training loop, checkpoints and resume") == (
        "4-training-loop-checkpoints-and-resume"
    )
    assert mismatched_section_links("[design §8](design.md#7-serving)")
    assert not mismatched_section_links("[design §7](design.md#7-serving)")
    doc = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# B\n\n## Real heading\n")
    doc.write_text("[ok](b.md#real-heading) [gone](c.md) [anchor](b.md#nope)")
    assert broken_links(doc, doc.read_text()) == [
        "c.md: no such file",
        "b.md#nope: no heading with that anchor",
    ]
