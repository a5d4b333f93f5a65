"""models/spam_classifier.py: a group's classifier learned from its confirmed samples (CJK-aware features)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.spam_eval import Sample, preset_rules, verdict
from models.spam_classifier import SpamModel, features, split_halves

CORPORA = Path(__file__).parent / "corpora"


def texts(name: str) -> list[str]:
    with (CORPORA / name).open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def test_features_cut_chinese_into_character_ngrams() -> None:
    assert {"兼职", "兼职日", "职日", "日结"} <= features("兼職日結")  # Traditional folds like the detectors
    assert {"w:earn", "w:500"} <= features("Earn 500 today")


def test_a_near_copy_of_a_confirmed_ad_is_caught_and_named() -> None:
    model = SpamModel(["招聘宝妈在家兼职，手机操作，日结300，有意者私聊"], [])
    judgement = model.judge("招聘宝妈在家兼职，手机操作，日结500，有意者私聊！")
    assert judgement.spam
    assert judgement.nearest == "招聘宝妈在家兼职，手机操作，日结300，有意者私聊"
    assert judgement.detail().startswith("score ")
    assert not model.judge("今天的团购几点开始？").spam


def test_a_model_with_no_confirmed_spam_calls_nothing_spam() -> None:
    assert not SpamModel([], ["hello"]).judge("earn money fast").spam


def test_trained_on_half_a_groups_spam_it_catches_the_other_half_of_its_newcomers_spam() -> None:
    """The proof on a real group's samples (tg-spam's spam and ham, MIT): learned from half its confirmed spam and
    half its ham, the classifier with the standard detectors catches >= 80% of the other half of the spam, and
    the classifier adds <= 1% false positives on the other half of the ham."""
    spam_train, spam_test = split_halves(texts("telegram_spam.jsonl"))
    ham_train, ham_test = split_halves(texts("telegram_ham.jsonl"))
    model = SpamModel(spam_train, ham_train)
    rules = preset_rules("standard")
    caught = [verdict(Sample(t, True), rules) is not None or model.judge(t).spam for t in spam_test]
    learned_false_positives = [model.judge(t).spam for t in ham_test]
    assert sum(caught) / len(caught) >= 0.80
    assert sum(learned_false_positives) / len(learned_false_positives) <= 0.01
    chat = texts("zh_chat_lccc.jsonl")
    assert sum(model.judge(t).spam for t in chat) / len(chat) <= 0.005  # another group's chat is not this spam
