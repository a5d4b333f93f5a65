"""Moderation on public corpora (tests/corpora/SOURCES.md): real spam is caught and real chat is left alone,
with the standard preset, through the same decision the bot makes (bot/spam_eval.py)."""

from __future__ import annotations

from pathlib import Path

from bot.cli import main
from bot.spam_eval import preset_rules, read_samples, score

CORPORA = Path(__file__).parent / "corpora"


def test_telegram_spam_samples_are_caught() -> None:
    scores = score(read_samples(CORPORA / "telegram_spam.jsonl"), preset_rules("standard"))
    assert scores.spam == 175
    assert scores.recall >= 0.50, scores.missed[:10]


def test_general_chinese_chat_is_left_alone() -> None:
    scores = score(read_samples(CORPORA / "zh_chat_lccc.jsonl"), preset_rules("standard"))
    assert scores.ham == 2500
    assert scores.false_positive_rate <= 0.005, scores.false_positives


def test_spam_eval_prints_recall_false_positives_and_misses(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "mine.jsonl"
    corpus.write_text(
        '{"text": "加微信 abc12345 领券", "label": "spam"}\n'
        '{"text": "今天的团购几点开始？", "label": "ham"}\n'
        '{"text": "好东西，速来", "label": "spam"}\n'
        '\n'
        '{"text": "看看 https://spam.example.com", "label": "ham"}\n', encoding="utf-8")
    assert main(["spam-eval", str(corpus), "--preset", "relaxed"]) == 0
    out = capsys.readouterr().out
    assert "spam: 1/2 caught, recall 50.0%" in out
    assert "ham:  0/2 removed, false-positive rate 0.00%" in out  # relaxed allows links
    assert "missed spam (1):\n  好东西，速来" in out
    assert main(["spam-eval", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "ham:  1/2 removed, false-positive rate 50.00%" in out
    assert "[links link:spam.example.com] 看看 https://spam.example.com" in out


def test_spam_eval_names_a_bad_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": "hi", "label": "spam"}\n{"text": "x", "label": "maybe"}\n', encoding="utf-8")
    assert main(["spam-eval", str(corpus)]) == 2
    assert "bad.jsonl:2: unknown label 'maybe'" in capsys.readouterr().err
