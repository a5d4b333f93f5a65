"""Extract every translatable string and merge it into the three catalogs: `python -m locales.update`.

Then translate the new (empty) entries in locales/<locale>/LC_MESSAGES/messages.po. The bot reads .po files
directly (bot/i18n.py), so there is nothing to compile. tests/test_i18n.py fails while any catalog lacks a
string or has an empty or fuzzy one.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES_DIR = ROOT / "locales"
SOURCES = ("bot", "handlers", "scheduler", "models")
LOCALES = ("zh_Hans", "zh_Hant", "en")
KEYWORDS = {"_": None, "__": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2), "lazy_ngettext": (1, 2)}
METHODS = [("**.py", "python")]


def extract() -> Catalog:
    """Every string marked with _(), __(), ngettext() in the bot's source."""
    catalog = Catalog(project="qunbot", msgid_bugs_address="", fuzzy=False)
    for folder in SOURCES:
        for filename, lineno, message, comments, context in extract_from_dir(
            ROOT / folder, METHODS, keywords=KEYWORDS, comment_tags=("i18n:",), strip_comment_tags=True
        ):
            if "sandbox" in filename:
                continue
            catalog.add(message, None, [(f"{folder}/{filename}", lineno)], auto_comments=comments, context=context)
    return catalog


def catalog_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"


def update() -> None:
    template = extract()
    with (LOCALES_DIR / "messages.pot").open("wb") as handle:
        write_po(handle, template, omit_header=False, sort_output=False, width=120)
    for locale in LOCALES:
        path = catalog_path(locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as handle:
                catalog = read_po(handle, locale=locale)
        else:
            catalog = Catalog(locale=locale.replace("_Hans", "_Hans_CN").replace("_Hant", "_Hant_TW"),
                              project="qunbot", fuzzy=False)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        if locale == "en":  # the source strings are English
            for message in catalog:
                if not message.id:
                    continue
                if isinstance(message.id, tuple):
                    if not all(message.string or ()):
                        message.string = message.id
                elif not message.string:
                    message.string = message.id
        with path.open("wb") as handle:
            write_po(handle, catalog, width=120, omit_header=False)
        missing = sum(1 for m in catalog if m.id and not (all(m.string) if isinstance(m.string, tuple) else m.string))
        print(f"{locale}: {len(catalog)} strings, {missing} to translate")


if __name__ == "__main__":
    update()
