"""Translations: gettext catalogs in locales/<locale>/LC_MESSAGES/messages.po, loaded straight from the .po
files (compiled in memory by Babel at start-up, so there is no manual compile step and no .mo to forget)."""

from __future__ import annotations

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

import locales
from models.groups import LOCALES

LOCALES_DIR = Path(locales.__file__).resolve().parent
DOMAIN = "messages"


class CatalogI18n(I18n):
    """aiogram's I18n, reading .po catalogs (fuzzy entries are left out, as msgfmt would)."""

    @contextmanager
    def context(self) -> Iterator[I18n]:
        # aiogram's gettext() looks up I18n's own context slot; a subclass would get a slot of its own.
        token = I18n.set_current(self)
        try:
            yield self
        finally:
            I18n.reset_current(token)

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        translations: dict[str, gettext.GNUTranslations] = {}
        for folder in sorted(self.path.iterdir()):
            po_path = folder / "LC_MESSAGES" / f"{self.domain}.po"
            if not po_path.is_file():
                continue
            with po_path.open("rb") as handle:
                catalog = read_po(handle, locale=None, domain=self.domain)
            buffer = BytesIO()
            write_mo(buffer, catalog, use_fuzzy=False)
            buffer.seek(0)
            translations[folder.name] = gettext.GNUTranslations(buffer)
        return translations


def create_i18n(default_locale: str) -> CatalogI18n:
    return CatalogI18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


def locale_for_language_code(language_code: str | None, default: str) -> str:
    """Map a Telegram language_code (IETF tag) to one of our locales.

    zh-hans, zh-cn, zh-sg and plain zh -> zh_Hans; zh-hant, zh-tw, zh-hk, zh-mo -> zh_Hant; en* -> en;
    anything else -> `default`.
    """
    if not language_code:
        return default
    code = language_code.strip().lower().replace("_", "-")
    if code.startswith("zh"):
        if any(tag in code for tag in ("hant", "-tw", "-hk", "-mo")):
            return "zh_Hant"
        return "zh_Hans"
    if code.startswith("en"):
        return "en"
    return default


__all__ = ["LOCALES", "LOCALES_DIR", "CatalogI18n", "create_i18n", "locale_for_language_code"]
