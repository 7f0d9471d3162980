"""Text documents: the built-in corpus (the standard library's source on this machine),
user text files or folders, and the train/validation split that keeps windows from
leaking (whole documents, or whole contiguous blocks of one long text)."""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_suite.common.errors import UserError
from keras_suite.common.runlog import log

#: standard-library folders left out of the built-in corpus: vendored or generated code
_STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__", "lib2to3", "idlelib", "turtledemo"}


@dataclass
class Corpus:
    documents: list  # [(name, text)]
    skipped: list = field(default_factory=list)  # [(name, reason)]
    duplicates: int = 0  # files whose text equals an earlier file's (links, copies): left out


def stdlib_files() -> list[Path]:
    """Every .py file of the standard library, ordered by a hash of its relative path:
    a fixed order (the same on every machine with the same Python) that mixes packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p
        for p in root.rglob("*.py")
        if not (_STDLIB_SKIP & set(p.relative_to(root).parts))
        and "test" not in p.relative_to(root).parts[0]
    ]
    return sorted(files, key=lambda p: hashlib.sha1(str(p.relative_to(root)).encode()).hexdigest())


def user_files(path: str, extensions) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise UserError(f"data.path {path!r} is neither a file nor a folder")
    everything = not extensions or "*" in extensions
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions if e != "*"}
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and not any(part.startswith(".") for part in f.parts)
        and (everything or f.suffix.lower() in exts)
    )
    if not files:
        raise UserError(
            f"no text files ({', '.join(sorted(exts))}) under {path!r}; set data.extensions to "
            "the endings your files have, or data.extensions='*' for every file"
        )
    return files


def read_documents(files, max_chars: int, root: Path | None = None) -> Corpus:
    """UTF-8 documents until `max_chars`; files that are not UTF-8 are named in the log
    and counted, never silently mangled."""
    corpus = Corpus([])
    total = 0
    seen = set()
    for f in files:
        name = str(f.relative_to(root)) if root else str(f)
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            corpus.skipped.append((name, f"not UTF-8 (byte {error.start})"))
            log.warning("skipped %s: not UTF-8 (invalid byte at offset %d)", name, error.start)
            continue
        except OSError as error:
            corpus.skipped.append((name, str(error)))
            log.warning("skipped %s: %s", name, error)
            continue
        text = text.replace("\r\n", "\n").replace("\x00", "")
        if not text.strip():
            continue
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if digest in seen:  # a copy on both sides of the split would leak validation text
            corpus.duplicates += 1
            continue
        seen.add(digest)
        if total + len(text) > max_chars:
            text = text[: max_chars - total]
        corpus.documents.append((name, text))
        total += len(text)
        if total >= max_chars:
            break
    if corpus.duplicates:
        log.info("left out %d file(s) identical to an earlier one", corpus.duplicates)
    if corpus.skipped:
        log.warning("skipped %d file(s) that could not be read as UTF-8 text", len(corpus.skipped))
    return corpus


def load_corpus(cfg) -> Corpus:
    if cfg.source == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        return read_documents(stdlib_files(), cfg.max_chars, root)
    root = Path(cfg.path) if Path(cfg.path).is_dir() else None
    corpus = read_documents(user_files(cfg.path, cfg.extensions), cfg.max_chars, root)
    if not corpus.documents:
        raise UserError(
            f"no readable UTF-8 text in {cfg.path!r} ({len(corpus.skipped)} file(s) skipped)"
        )
    return corpus


def split_documents(
    documents, val_fraction: float, seed: int, mode: str = "auto", block_chars: int = 20_000
):
    """(train, val) lists of (name, text): whole documents, or whole contiguous blocks.

    Every window is cut from inside one side of the split, so no character of a
    validation document is ever seen in training. `block` mode cuts the concatenated
    text into blocks of `block_chars` and holds out a seeded choice of whole blocks (for
    one long book); `auto` splits by document when there are at least 10."""
    if mode == "auto":
        mode = "document" if len(documents) >= 10 else "block"
    if mode == "block":
        text = "".join(t for _, t in documents)
        n_blocks = max(2, -(-len(text) // block_chars))
        size = -(-len(text) // n_blocks)
        documents = [(f"block{i}", text[i * size : (i + 1) * size]) for i in range(n_blocks)]
        documents = [d for d in documents if d[1]]
    if len(documents) < 2:
        raise UserError(
            "the corpus has fewer than 2 documents or blocks; add text or lower data.block_chars"
        )
    order = np.random.default_rng(seed).permutation(len(documents))
    total = sum(len(t) for _, t in documents)
    val, held = [], 0
    for i in order:
        if held >= val_fraction * total and val:
            break
        val.append(int(i))
        held += len(documents[i][1])
    if len(val) == len(documents):
        val = val[:-1]
    chosen = set(val)
    return (
        [documents[i] for i in range(len(documents)) if i not in chosen],
        [documents[i] for i in sorted(chosen)],
    )
