"""`qunbot spam-eval FILE.jsonl [--preset P]`: score a labelled corpus through the decision the bot makes.

Each line of the file is a JSON object: "text" (the message), "label" ("spam" or "ham"; also true/false or 1/0),
and optionally "urls" (text-link and button urls), "entities" ([type, value] pairs as Telegram marks them),
"new_member" (a newcomer wrote it) and "forwarded". Every message goes through models.moderation_policy's
find_violation with the preset's rules, as a group message from a member (no flood or repeat counting: each line
stands alone). Prints recall on spam, the false-positive rate on ham, and the misses; needs no database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models import detection
from models.moderation import PRESETS, ModerationRules
from models.moderation_policy import CompiledRules, MessageFacts, Violation, find_violation

_SPAM = {"spam", "1", "true", "yes", "ad", "ads"}
_HAM = {"ham", "0", "false", "no", "ok"}


@dataclass(frozen=True)
class Sample:
    """One labelled message of a corpus."""

    text: str
    spam: bool
    urls: tuple[str, ...] = ()
    entities: tuple[tuple[str, str], ...] = ()
    new_member: bool = False
    forwarded: bool = False


@dataclass
class Scores:
    """What spam-eval prints: counts, the rates, which rules fired, and the misses (spam kept, ham removed)."""

    spam: int = 0
    caught: int = 0
    ham: int = 0
    flagged: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)  # spam the decision let through
    false_positives: list[tuple[str, Violation]] = field(default_factory=list)  # ham it would remove

    @property
    def recall(self) -> float:
        return self.caught / self.spam if self.spam else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.flagged / self.ham if self.ham else 0.0


def parse_sample(line: str) -> Sample:
    """One JSONL line as a Sample; ValueError when it is not an object with a text and a known label."""
    record: Any = json.loads(line)
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise ValueError("expected an object with a \"text\" string")
    label = str(record.get("label", record.get("spam", ""))).strip().lower()
    if label not in _SPAM | _HAM:
        raise ValueError(f"unknown label {label!r} (expected spam or ham)")
    entities = tuple((str(kind), str(value)) for kind, value in record.get("entities") or ())
    return Sample(record["text"], label in _SPAM, tuple(map(str, record.get("urls") or ())), entities,
                  bool(record.get("new_member")), bool(record.get("forwarded")))


def read_samples(path: Path) -> Iterator[Sample]:
    """The samples of a JSONL file (blank lines skipped); ValueError names the first bad line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield parse_sample(line)
                except (ValueError, TypeError) as error:
                    raise ValueError(f"{path}:{number}: {error}") from error


def preset_rules(preset: str) -> CompiledRules:
    """The rules a group has right after `/modset preset <preset>` (no banned words or allowed domains)."""
    rules = ModerationRules(**PRESETS[preset])
    banned = detection.compile_banned(rules.banned_words) if rules.banned_words else None
    return CompiledRules(datetime.now(UTC), rules, banned)


def verdict(sample: Sample, compiled: CompiledRules) -> Violation | None:
    """The bot's decision on one sample, as a message from a member in a group."""
    facts = MessageFacts(chat_id=-1, sender_id=1, text=sample.text, urls=sample.urls, has_buttons=bool(sample.urls),
                         forwarded=sample.forwarded, entities=sample.entities)
    return find_violation(facts, compiled, new_member=sample.new_member, pace=None)


def score(samples: Iterable[Sample], compiled: CompiledRules) -> Scores:
    """Run every sample through the decision and count."""
    scores = Scores()
    for sample in samples:
        found = verdict(sample, compiled)
        if sample.spam:
            scores.spam += 1
            if found is None:
                scores.missed.append(sample.text)
            else:
                scores.caught += 1
                scores.rules[found.rule] += 1
        else:
            scores.ham += 1
            if found is not None:
                scores.flagged += 1
                scores.false_positives.append((sample.text, found))
    return scores


def _line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def report(scores: Scores, *, misses: int) -> str:
    """The printed summary: recall, false-positive rate, rules, then up to `misses` misses of each kind."""
    lines = [
        f"spam: {scores.caught}/{scores.spam} caught, recall {scores.recall:.1%}",
        f"ham:  {scores.flagged}/{scores.ham} removed, false-positive rate {scores.false_positive_rate:.2%}",
    ]
    if scores.rules:
        lines.append("rules: " + ", ".join(f"{rule} {count}" for rule, count in scores.rules.most_common()))
    if scores.false_positives and misses:
        lines.append(f"false positives ({len(scores.false_positives)}):")
        lines += [f"  [{v.rule} {v.detail}] {_line(text)}" for text, v in scores.false_positives[:misses]]
    if scores.missed and misses:
        lines.append(f"missed spam ({len(scores.missed)}):")
        lines += [f"  {_line(text)}" for text in scores.missed[:misses]]
    return "\n".join(lines)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "spam-eval", help="score a labelled corpus through moderation's decision",
        description="Run every message of a JSONL file ({\"text\": ..., \"label\": \"spam\"|\"ham\"} per line) "
        "through the decision the bot makes with a preset's rules, and print recall on spam, the false-positive "
        "rate on ham and the misses. Needs no database or token.",
    )  # fmt: skip
    parser.add_argument("file", metavar="FILE.jsonl", help="the labelled messages")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard", help="rules to apply "
                        "(default: standard)")
    parser.add_argument("--misses", type=int, default=20, help="how many misses of each kind to print (default 20)")


def run(args: argparse.Namespace) -> int:
    """Print the scores; 0 when the file was read, 2 when it could not be."""
    try:
        scores = score(read_samples(Path(args.file)), preset_rules(args.preset))
    except (OSError, ValueError) as error:
        print(f"spam-eval: {error}", file=sys.stderr)
        return 2
    print(f"preset {args.preset}, {args.file}")
    print(report(scores, misses=max(args.misses, 0)))
    return 0
