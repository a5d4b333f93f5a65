"""Every user-facing string is translated in zh_Hans, zh_Hant and en, and the translations keep the
placeholders and HTML tags the code fills in."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from bot.i18n import create_i18n, locale_for_language_code
from locales.update import LOCALES, catalog_path, extract

PLACEHOLDER = re.compile(r"\{[a-z_0-9]*\}")
TAG = re.compile(r"</?[a-z]+>")


@pytest.fixture(scope="module")
def source_ids() -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in extract() if m.id}


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_has_every_string_translated(locale: str, source_ids: set[str]) -> None:
    with catalog_path(locale).open("rb") as handle:
        catalog = read_po(handle)
    translated = {}
    for message in catalog:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert not message.fuzzy, f"{locale}: fuzzy entry {key!r}"
        assert all(strings), f"{locale}: empty translation for {key!r}"
        translated[key] = strings
    missing = source_ids - set(translated)
    assert not missing, f"{locale} lacks: {sorted(missing)[:5]}"
    for key, strings in translated.items():
        for string in strings:
            assert sorted(PLACEHOLDER.findall(string)) == sorted(PLACEHOLDER.findall(key)), (locale, key)
            assert sorted(TAG.findall(string)) == sorted(TAG.findall(key)), (locale, key)


def test_the_bot_loads_all_three_locales() -> None:
    i18n = create_i18n("zh_Hans")
    assert set(i18n.available_locales) == set(LOCALES)
    assert i18n.gettext("Only group admins can do that.", locale="zh_Hans") == "只有群管理员可以这样做。"
    assert i18n.gettext("Only group admins can do that.", locale="zh_Hant") == "只有群管理員可以這樣做。"


@pytest.mark.parametrize(
    ("code", "locale"),
    [
        ("zh-hans", "zh_Hans"), ("zh-CN", "zh_Hans"), ("zh", "zh_Hans"), ("zh-hant", "zh_Hant"),
        ("zh-TW", "zh_Hant"), ("zh-hk", "zh_Hant"), ("en", "en"), ("en-GB", "en"), ("ru", "zh_Hans"), (None, "zh_Hans"),
    ],
)
def test_language_code_maps_to_a_locale(code: str | None, locale: str) -> None:
    assert locale_for_language_code(code, "zh_Hans") == locale
