"""A group's own spam classifier, learned from the samples its admins confirmed. Pure: no Telegram, no database.

Features are the character 2- and 3-grams of the normalized text (models/detection.normalize) plus its Latin and
Cyrillic words, so Chinese, which has no spaces between words, is cut the same way as any other script. Each
feature counts once per message. Two signals decide:

- naive Bayes over those features, trained on the group's confirmed spam against its ham samples: the sum of
  the features' log-odds, divided by the square root of their number (long messages do not win by length);
  the threshold is calibrated on the ham samples so that at most 1% of them would score above it;
- the cosine similarity to the nearest confirmed spam sample: a near copy of a confirmed ad is spam whatever
  the Bayes score says (spammers repost the same text with a new number).

The verdict carries the score and the nearest sample so the moderation log can show why.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.detection import normalize

MAX_TEXT = 1000  # characters of a message or sample looked at
SPAM_SCORE = 8.0  # the Bayes threshold when there are too few ham samples to calibrate it
NEAR_COPY = 0.8  # cosine similarity to a confirmed spam sample above which a message is a copy of it
HAM_FALSE_POSITIVES = 0.01  # the share of the group's ham samples the calibrated threshold may call spam
MIN_CALIBRATION = 20  # ham samples needed before the threshold is calibrated on them
_SMOOTHING = 0.1
_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"[a-zа-яё0-9]+")


def features(text: str) -> frozenset[str]:
    """The character 2- and 3-grams of `text`, normalized, whitespace runs as one space, plus its words."""
    folded = _SPACES.sub(" ", normalize(text[:MAX_TEXT])).strip()
    grams = {folded[i : i + size] for size in (2, 3) for i in range(len(folded) - size + 1)}
    grams.update("w:" + word for word in _WORDS.findall(folded))
    return frozenset(grams)


@dataclass(frozen=True)
class Judgement:
    """The classifier's view of one message: `spam`, the Bayes `score`, the similarity to the nearest confirmed
    spam sample and that sample."""

    spam: bool
    score: float
    similarity: float
    nearest: str | None

    def detail(self) -> str:
        """One line for the moderation log: score, similarity and the start of the nearest sample."""
        nearest = " ".join((self.nearest or "").split())[:40]
        return f"score {self.score:.1f}, {self.similarity:.0%} like “{nearest}”"


class SpamModel:
    """Naive Bayes and nearest-sample similarity over a group's confirmed spam and ham samples."""

    def __init__(self, spam: Iterable[str], ham: Iterable[str] = ()) -> None:
        self.samples: list[tuple[str, frozenset[str]]] = []
        self.spam_counts: Counter[str] = Counter()
        self.ham_counts: Counter[str] = Counter()
        for text in spam:
            found = features(text)
            if found:
                self.samples.append((text, found))
                self.spam_counts.update(found)
        hams = [features(text) for text in ham]
        for found in hams:
            self.ham_counts.update(found)
        self.spam_total = len(self.samples)
        self.ham_total = len(hams)
        self.threshold = SPAM_SCORE
        if self.samples and self.ham_total >= MIN_CALIBRATION:
            self.threshold = self._calibrated(hams)

    def _calibrated(self, hams: list[frozenset[str]]) -> float:
        """The score at most HAM_FALSE_POSITIVES of the ham samples exceed, each half scored by a model that
        learned only from the other half (a sample the model learned from would score too low)."""
        scores: list[float] = []
        for fold in (hams[0::2], hams[1::2]):
            held_out: Counter[str] = Counter()
            for found in fold:
                held_out.update(found)
            ham_counts = self.ham_counts - held_out
            scores += [self._score(found, ham_counts, self.ham_total - len(fold)) for found in fold]
        scores.sort(reverse=True)
        return max(scores[int(len(scores) * HAM_FALSE_POSITIVES)], 0.0)

    def __bool__(self) -> bool:
        return bool(self.samples)

    def _score(self, found: frozenset[str], ham_counts: Counter[str] | None = None, hams: int | None = None) -> float:
        """Sum of the features' log-odds (spam against ham), over the square root of their number."""
        ham_counts = self.ham_counts if ham_counts is None else ham_counts
        spam_total = self.spam_total + 2 * _SMOOTHING
        ham_total = (self.ham_total if hams is None else hams) + 2 * _SMOOTHING
        total = 0.0
        for feature in found:
            spam, ham = self.spam_counts.get(feature, 0), ham_counts.get(feature, 0)
            if spam or ham:
                total += math.log(((spam + _SMOOTHING) / spam_total) / ((ham + _SMOOTHING) / ham_total))
        return total / math.sqrt(len(found)) if found else 0.0

    def judge(self, text: str) -> Judgement:
        """Score `text` against the samples (a model with no spam sample calls nothing spam)."""
        found = features(text)
        if not self.samples or not found:
            return Judgement(False, 0.0, 0.0, None)
        score = self._score(found)
        similarity, nearest = 0.0, None
        for sample, sample_features in self.samples:
            shared = len(found & sample_features)
            if shared:
                cosine = shared / math.sqrt(len(found) * len(sample_features))
                if cosine > similarity:
                    similarity, nearest = cosine, sample
        return Judgement(similarity >= NEAR_COPY or score > self.threshold, score, similarity, nearest)


def split_halves(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """Alternate lines into two halves (train, test): what the classifier's proof trains and scores on."""
    return list(texts[0::2]), list(texts[1::2])
