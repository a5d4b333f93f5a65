"""Merge translations handed in as JSON files: `python -m locales.merge_incoming`.

Each file in locales/incoming/ maps an English msgid to {"zh_Hans": "...", "zh_Hant": "..."}. The script first
extracts new strings (locales.update), then fills the Chinese catalogs from the files; the files are removed once
every entry they hold has landed in a catalog.
"""

from __future__ import annotations

import json
import sys

from babel.messages.pofile import read_po, write_po

from locales.update import LOCALES_DIR, catalog_path, update


def merge() -> int:
    update()
    incoming = sorted((LOCALES_DIR / "incoming").glob("*.json"))
    translations: dict[str, dict[str, str]] = {}
    for path in incoming:
        translations.update(json.loads(path.read_text(encoding="utf-8")))
    missing = 0
    for locale in ("zh_Hans", "zh_Hant"):
        path = catalog_path(locale)
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        for message in catalog:
            if not message.id or isinstance(message.id, tuple):
                continue
            given = translations.get(message.id, {}).get(locale)
            if given and not message.string:
                message.string = given
            if not message.string:
                missing += 1
                print(f"{locale}: untranslated: {message.id[:70]!r}", file=sys.stderr)
        with path.open("wb") as handle:
            write_po(handle, catalog, width=120, sort_output=False)
    if not missing:
        for path in incoming:
            path.unlink()
    return missing


if __name__ == "__main__":
    sys.exit(1 if merge() else 0)
