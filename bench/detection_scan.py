"""How the cost of scanning a message grows with its length, on ordinary and on adversarial text.

For each input shape, scans it at 4,000 characters (about Telegram's limit) and at 16,000 (text AND the same
string as an entity URL, with plain, wildcard and regex banned words) and prints the time per character at both
sizes and their ratio: about 1 means linear; catastrophic backtracking would show as ratios of 4 and more.
(Below about 2,000 characters the per-character cost is lower still: the strings fit the CPU cache.) Uses the
best of several runs, so other load on the machine matters less.

    python -m bench.detection_scan

Then the median time to scan one typical message (the first 2,000 lines of the public Chinese chat corpus in
bench/corpora and tg-spam's spam samples), with every detector the standard preset turns on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from pathlib import Path

from models.detection import compile_banned, scan

SHAPES = {
    "ordinary zh": "这个39.9元，订单号 202611220012345678，11月22日 20:00 开抢。",
    "ordinary en": "Is this still available? $39.99, v1.2, e.g. photo.jpg. ",
    "spam mix": "加微信 abc12345 看 example[dot]com t.me/+AbC 电话 138 1234 5678 ",
    "letters": "a",
    "label dots": "a.",
    "digits and spaces": "1 ",
    "digit dashes": "1-",
    "cue repeat": "微信",
    "vx colon": "vx:",
    "t.me": "t.me/",
    "dot words": "a[dot]",
    "ideographic dot": "a 。",
    "zero-width": "\u200b",
    "scheme": "http://a",
    "banned prefix": "兼职",
}


def per_char_micros(text: str, banned: object, repeat: int) -> float:
    best = min(timeit.repeat(lambda: scan(text, [text], banned=banned), number=1, repeat=repeat))
    return best / len(text) * 1e6


def main(repeat: int) -> None:
    banned = compile_banned(["代购", "*刷单*", "免费?送", r"re:兼职.*日结", r"re:earn\s*\$?\d+\s*(a|per)\s+day"])
    print(f"{'input':20} {'µs/char @4k':>12} {'µs/char @16k':>12} {'ratio':>6}")
    worst = 0.0
    for name, fragment in SHAPES.items():
        small = per_char_micros((fragment * 4000)[:4000], banned, repeat)
        large = per_char_micros((fragment * 16000)[:16000], banned, repeat)
        worst = max(worst, large / small)
        print(f"{name:20} {small:12.2f} {large:12.2f} {large / small:6.2f}")
    print(f"worst growth of the per-character cost from 4k to 16k characters: {worst:.2f}x")
    typical_message(banned, repeat)


CORPORA = (Path(__file__).parent / "corpora" / "zh_chat_lccc.jsonl",
           Path(__file__).parent.parent / "tests" / "corpora" / "telegram_spam.jsonl")


def typical_message(banned: object, repeat: int) -> None:
    """Median and 99th percentile of one scan (best of `repeat`) over real messages."""
    texts: list[str] = []
    for path in CORPORA:
        with path.open(encoding="utf-8") as lines:
            texts += [json.loads(line)["text"] for _, line in zip(range(2000), lines, strict=False)]
    times = sorted(
        min(timeit.repeat(lambda t=text: scan(t, banned=banned, scam_phrases=True), number=1, repeat=repeat)) * 1e6
        for text in texts
    )
    print(f"typical message ({len(texts)} real ones, standard preset's detectors): median "
          f"{statistics.median(times):.1f} µs, p99 {times[int(len(times) * 0.99)]:.1f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    main(parser.parse_args().repeat)
