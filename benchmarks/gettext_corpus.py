"""A real human-translated corpus without a download: the gettext catalogs on this machine.

Every Debian/Ubuntu machine carries translators' work in /usr/share/locale/<lang>/LC_MESSAGES/
*.mo: English program messages and their human translations (git, coreutils, postgres,
gtk, ...). This script turns them into the `source<TAB>target<TAB>origin` TSV that
`ksuite train translation --set data.source=tsv` reads, so the app can be measured on real
translations offline:

    python benchmarks/gettext_corpus.py --lang fr --max-pairs 25000 --out /tmp/gettext-en-fr.tsv
    ksuite train translation --preset default --set data.source=tsv \
        --set data.path=/tmp/gettext-en-fr.tsv --run-dir runs/translation-gettext

What it keeps: one pair per English message (the first catalog that has it), singular forms
of plural messages, whitespace collapsed, keyboard-mnemonic underscores removed ("_Open" ->
"Open"). What it drops, counted: untranslated (target == source) and empty messages, ISO
code-list catalogs (iso_*: names of languages and countries, not sentences), messages longer
than --max-words, and duplicates. A seeded sample of --max-pairs is written.
"""

from __future__ import annotations

import argparse
import collections
import gettext
import random
import re
from pathlib import Path

MNEMONIC = re.compile(
    r"(?<![\w_])_(?=\w)"
)  # GTK-style "_File": the underscore marks a shortcut key


def clean(text: str) -> str:
    return " ".join(MNEMONIC.sub("", text).split())


def read_catalogs(
    locale_dir: Path, lang: str
) -> tuple[list[tuple[str, str, str]], collections.Counter]:
    """(english, translation, catalog name) for every usable message, and the counts of drops."""
    dropped = collections.Counter()
    pairs, seen = [], set()
    files = sorted((locale_dir / lang / "LC_MESSAGES").glob("*.mo"))
    if not files:
        raise SystemExit(
            f"no .mo catalogs in {locale_dir / lang / 'LC_MESSAGES'}; pick another --lang "
            f"(see ls {locale_dir})"
        )
    for path in files:
        if path.stem.startswith("iso_"):
            dropped["ISO code list"] += 1
            continue
        try:
            with open(path, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except (OSError, gettext.error) as exc:
            print(f"skipped unreadable catalog {path.name}: {exc}")
            continue
        for key, value in catalog.items():
            if isinstance(key, tuple):  # plural forms: (msgid, n); keep the singular
                if key[1] != 0:
                    continue
                key = key[0]
            source, target = clean(key), clean(value)
            if not source or not target:
                dropped["empty"] += 1
            elif source == target:
                dropped["untranslated"] += 1
            elif source in seen:
                dropped["duplicate"] += 1
            else:
                seen.add(source)
                pairs.append((source, target, path.stem))
    return pairs, dropped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lang", default="fr", help="target language folder under --locale-dir (default fr)"
    )
    parser.add_argument("--locale-dir", default="/usr/share/locale", type=Path)
    parser.add_argument(
        "--max-words", type=int, default=16, help="longest message kept, in words, either side"
    )
    parser.add_argument("--max-pairs", type=int, default=25000, help="seeded sample size (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    pairs, dropped = read_catalogs(args.locale_dir, args.lang)
    short = [p for p in pairs if max(len(p[0].split()), len(p[1].split())) <= args.max_words]
    dropped[f"longer than {args.max_words} words"] = len(pairs) - len(short)
    random.Random(args.seed).shuffle(short)
    if args.max_pairs:
        short = short[: args.max_pairs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for source, target, origin in short:
            f.write(f"{source}\t{target}\t{origin}\n")
    print(
        f"wrote {len(short)} English -> {args.lang} pairs to {args.out} "
        f"(dropped: {dict(dropped)}; catalogs: {len({p[2] for p in short})})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
