"""Translation data as users have it, and what the test split scores: text in other
encodings than UTF-8, every test pair scored (long sources cut, no reference dropped),
near-duplicates of training pairs out of the test split, disjoint splits, and sacrebleu's
signature next to BLEU."""

import itertools
import re

import numpy as np
import pytest

from keras_suite.apps.translation import APP
from keras_suite.apps.translation import config as cfg_lib
from keras_suite.apps.translation.data import build_datasets, load_pairs
from keras_suite.common.app import Artifacts
from keras_suite.common.errors import UserError

COLOURS = "red blue green yellow black white grey brown pink orange".split()
THINGS = "house car door table window garden bottle chair lamp book".split()
FR_COLOURS = "rouge bleu vert jaune noir blanc gris brun rose orange".split()
FR_THINGS = "maison voiture porte table fenêtre jardin bouteille chaise lampe livre".split()


def _rows(n, offset=0):
    """n distinct short sentence pairs (no digits, so no two normalise alike)."""
    combos = list(itertools.product(range(10), range(10), range(4)))[offset : offset + n]
    verbs = [("I see the", "je vois la"), ("where is the", "où est la"), ("take the", "prends la")]
    verbs.append(("paint the", "peins la"))
    return [
        f"{verbs[v][0]} {COLOURS[c]} {THINGS[t]}\t{verbs[v][1]} {FR_THINGS[t]} {FR_COLOURS[c]}"
        for c, t, v in combos
    ]


def _cfg(path, **data):
    cfg = cfg_lib.smoke()
    cfg.data.source, cfg.data.path = "tsv", str(path)
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def _all_pairs(splits):
    return sorted(p for name in ("train", "val", "test") for p in splits[name])


# ---- issue 26: encodings ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_a_byte_order_mark_decides_the_encoding(tmp_path, encoding):
    rows = ["Go.\tVa !", "Hello.\tBonjour.", "Thank you.\tMerci.", "Café?\tUn café ?"]
    path = tmp_path / "corpus.tsv"
    path.write_text("\n".join(rows) + "\n", encoding=encoding)  # Python writes the BOM
    splits, _ = load_pairs(_cfg(path, val_fraction=0.0, test_fraction=0.25))
    want = sorted(tuple(r.split("\t")) for r in rows)
    assert _all_pairs(splits) == want  # no NUL, no BOM character, nothing skipped


def test_utf16_without_a_byte_order_mark_is_refused_with_the_conversion(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_bytes(("\n".join(_rows(20)) + "\n").encode("utf-16-le"))
    with pytest.raises(UserError, match="not UTF-8.*UTF-16LE.*iconv -f UTF-16LE -t UTF-8"):
        load_pairs(_cfg(path))
    path.write_bytes(("\n".join(_rows(20)) + "\n").encode("utf-16-be"))
    with pytest.raises(UserError, match="iconv -f UTF-16BE -t UTF-8"):
        load_pairs(_cfg(path))


def test_a_stray_nul_byte_skips_its_line(tmp_path):
    path = tmp_path / "corpus.tsv"
    lines = [r.encode() for r in _rows(30)]
    lines[3] = b"bad\x00line\tmauvaise"
    path.write_bytes(b"\n".join(lines) + b"\n")
    splits, report = load_pairs(_cfg(path))
    assert len(_all_pairs(splits)) == 29
    assert report["skipped"]["bad encoding"]["count"] == 1


# ---- issue 27: what the test split scores ------------------------------------------------


def _datasets(folder, **data):
    cfg = _cfg(folder, **data)
    return cfg, build_datasets(cfg, Artifacts(folder / "artifacts"))


def test_every_test_pair_is_scored_and_long_sources_are_cut(tmp_path):
    (tmp_path / "train.tsv").write_text("\n".join(_rows(80)) + "\n", encoding="utf-8")
    long_source = " ".join(["the red house and the blue car"] * 8)  # 56 words
    long_reference = " ".join(["la maison rouge et la voiture bleue"] * 6)  # 42 words
    test = [
        *[tuple(r.split("\t")) for r in _rows(3, offset=100)],
        (long_source, "une phrase courte"),
        ("a short sentence", long_reference),
    ]
    (tmp_path / "test.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in test), encoding="utf-8")
    cfg, data = _datasets(tmp_path, val_fraction=0.1)
    assert data.extras["test"] == test  # every pair, references as written
    split = data.info["evaluation_split"]
    assert split["size"] == len(test) == len(data.extras["arrays"]["test"][0])
    assert split["sources_cut"] == 1 and split["references_longer_than_output_limit"] == 1
    assert split["origin"] == "test.tsv" and split["near_duplicates_removed"] == 0
    # the cut source is its first max_source_tokens pieces, as the served Translator cuts it
    source_ids = data.extras["arrays"]["test"][0][3]
    assert (source_ids != 0).sum() == cfg.data.max_source_tokens


def test_near_duplicates_of_training_pairs_leave_the_test_split(tmp_path):
    train = _rows(60) + [
        "Cannot open file %s.\tImpossible d'ouvrir le fichier %s.",
        "Delete 3 files?\tSupprimer 3 fichiers ?",
        "Hello, world!\tBonjour, le monde !",
    ]
    (tmp_path / "train.tsv").write_text("\n".join(train) + "\n", encoding="utf-8")
    new = [tuple(r.split("\t")) for r in _rows(2, offset=200)]
    copies = [
        ("cannot open file '%d'", "impossible d'ouvrir le fichier « %d »"),
        ("Delete {0} Files", "Supprimer {0} fichiers"),
        ("DELETE 12 files!!", "SUPPRIMER 12 FICHIERS !!"),
        ("hello   world", "bonjour le monde"),
    ]
    (tmp_path / "test.tsv").write_text(
        "".join(f"{s}\t{t}\n" for s, t in new + copies), encoding="utf-8"
    )
    _, data = _datasets(tmp_path, val_fraction=0.1)
    assert data.extras["test"] == new
    assert data.info["evaluation_split"]["near_duplicates_removed"] == 4
    assert data.info["near_duplicates_removed"]["test"] == 4


def _loose(text):
    """The test's own, cruder key: lower case, letters only."""
    return " ".join(re.sub(r"[^a-zà-ÿ]+", " ", text.lower()).split())


@pytest.mark.parametrize("test_file", [False, True])
def test_splits_are_disjoint_and_calibration_never_reads_test(tmp_path, test_file):
    from keras_suite.apps.translation.export import calibration_sources

    rows = _rows(300)
    rows += [r.upper() for r in rows[:30]] + rows[30:50]  # case variants and exact repeats
    (tmp_path / "corpus.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if test_file:
        held = _rows(20, offset=300) + rows[60:65]  # five training pairs copied into test
        (tmp_path / "test.tsv").write_text("\n".join(held) + "\n", encoding="utf-8")
    _, data = _datasets(tmp_path, val_fraction=0.1, test_fraction=0.1)
    keys = {name: {_loose(s) for s, _ in data.extras[name]} for name in ("train", "val", "test")}
    assert keys["test"] and keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    assert not keys["train"] & keys["val"]
    if test_file:
        assert len(data.extras["test"]) == 20
        assert data.info["evaluation_split"]["origin"] == "test.tsv"
    # int8 calibration: validation sources, none of them a test source
    calibration = {row.tobytes() for row in calibration_sources(data)}
    assert calibration == {row.tobytes() for row in data.extras["arrays"]["val"][0]}
    assert not calibration & {row.tobytes() for row in data.extras["arrays"]["test"][0]}


def test_evaluate_scores_every_test_pair_with_the_sacrebleu_signature(tmp_path):
    """An untrained model: the numbers are low, but every test pair is in them, and the
    signature says how they were computed."""
    import sacrebleu

    (tmp_path / "train.tsv").write_text("\n".join(_rows(80)) + "\n", encoding="utf-8")
    test = [tuple(r.split("\t")) for r in _rows(5, offset=100)]
    test.append((" ".join(["the red house"] * 20), "la maison rouge"))
    (tmp_path / "test.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in test), encoding="utf-8")
    cfg, data = _datasets(tmp_path, val_fraction=0.1)
    data.artifacts = Artifacts(tmp_path / "artifacts")
    state = APP.build_state(cfg=cfg, info=data.info)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = APP.evaluate(state=state, data=data, cfg=cfg, run_dir=run_dir)
    assert metrics["num_sentences"] == len(test)
    assert list(metrics)[:4] == ["bleu", "bleu_signature", "chrf", "chrf_signature"]
    version = sacrebleu.__version__
    assert (
        metrics["bleu_signature"]
        == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}"
    )
    assert metrics["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no")
    rows = (run_dir / "test_translations.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert [tuple(r.split("\t")[:2]) for r in rows] == test
    hypotheses = [r.split("\t")[2] for r in rows]
    want = sacrebleu.corpus_bleu(hypotheses, [[t for _, t in test]]).score
    assert metrics["bleu"] == pytest.approx(want, abs=1e-6)
    assert np.isfinite(metrics["chrf"])
