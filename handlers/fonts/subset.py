"""Rebuild the CJK font the /stats charts draw with: `python -m handlers.fonts.subset NotoSansCJK-Regular.ttc`.

The charts (handlers/stats_charts.py) show only catalog text and numbers, so the package ships a subset of Noto
Sans CJK SC (SIL Open Font License 1.1, see OFL.txt beside this file) holding exactly the characters of the
stats strings in every catalog (and the hand-in files in locales/incoming/), plus printable ASCII and a few
signs. Run this again after changing a chart's words; tests/test_stats_charts.py fails on any missing glyph.
The source font: Debian's fonts-noto-cjk (/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc), or
NotoSansCJKsc-Regular.otf from the Noto CJK release.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(__file__).resolve().parent / "QunbotCJK-Regular.otf"
FAMILY = "Qunbot CJK"
SOURCES = ("handlers/stats.py", "handlers/stats_text.py", "handlers/stats_charts.py", "handlers/stats_files.py")
EXTRA = "—–·…±%×°•▲▼←→（）：；，。、「」“”？！"


def stats_msgids() -> set[str]:
    ids: set[str] = set()
    for source in SOURCES:
        for _line, message, _comments, _context in extract_from_file(
            "python", str(ROOT / source), keywords={"_": None, "__": None}
        ):
            ids.add(message if isinstance(message, str) else message[0])
    return ids


def characters() -> str:
    ids = stats_msgids()
    text = "".join(chr(code) for code in range(0x20, 0x7F)) + EXTRA + "".join(ids)
    for po in sorted((ROOT / "locales").glob("*/LC_MESSAGES/messages.po")):
        with po.open("rb") as handle:
            catalog = read_po(handle)
        text += "".join(str(catalog[msgid].string) for msgid in ids if catalog.get(msgid) is not None)
    for incoming in sorted((ROOT / "locales" / "incoming").glob("*.json")):
        for msgid, translations in json.loads(incoming.read_text(encoding="utf-8")).items():
            if msgid in ids:
                text += "".join(translations.values())
    return "".join(sorted(set(text) - set("\n\t")))


def load_source(path: str) -> TTFont:
    if path.endswith((".ttc", ".otc")):
        for font in TTCollection(path).fonts:
            if "CJK SC" in font["name"].getDebugName(4) and "Mono" not in font["name"].getDebugName(4):
                return font
        raise SystemExit(f"no Noto Sans CJK SC face in {path}")
    return TTFont(path)


def build(source: str) -> int:
    font = load_source(source)
    wanted = characters()
    options = subset.Options()
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.layout_features = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=wanted)
    subsetter.subset(font)
    names = font["name"]
    for record in list(names.names):  # a modified font takes a name of its own
        if record.nameID in (1, 16):
            record.string = FAMILY
        elif record.nameID in (3, 4):
            record.string = f"{FAMILY} Regular"
        elif record.nameID == 6:
            record.string = "QunbotCJK-Regular"
    font.save(str(TARGET))
    print(f"{TARGET.name}: {len(wanted)} characters, {TARGET.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(build(sys.argv[1]))
