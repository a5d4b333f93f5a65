"""`qunbot verify-lottery`: recompute a lottery's draw from its published values alone (no database, no token).

    qunbot verify-lottery --seed HEX --entrants lottery-12-entrants.txt --winners 1 [--commitment SHA] [--list-hash SHA]
    qunbot verify-lottery --seed HEX --ids 101,205,333 --winners 2

It prints the entrant list's SHA-256, checks the seed against the commitment shown before the draw, and prints
the picks in order: the first --winners are the winners; with --picks N it prints N picks, so rerolls (which
continue the same sequence) can be checked too. The algorithm is in models/lottery.py and the README.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "verify-lottery", help="recompute a lottery draw from its published values",
        description="Recompute a lottery's winners from the revealed seed and the published entrant list, and "
        "check the seed against the commitment shown before the draw. Needs no database.",
    )  # fmt: skip
    parser.add_argument("--seed", required=True, help="the revealed seed (64 hex characters)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--entrants", metavar="FILE", help="the published entrant list (one user id per line)")
    source.add_argument("--ids", help="entrant user ids, comma-separated")
    parser.add_argument("--winners", type=int, required=True, help="how many winners the lottery announced")
    parser.add_argument("--picks", type=int, default=0, help="print this many picks (winners, then rerolls)")
    parser.add_argument("--commitment", help="the SHA-256 shown on the lottery post before the draw")
    parser.add_argument("--list-hash", help="the entrant list SHA-256 published with the result")


def run(args: argparse.Namespace) -> int:
    """Print the recomputation; 0 if every given check passed, 1 if one failed, 2 for unusable input."""
    from models.lottery import commitment_of, entrant_list_text, list_hash_of, next_picks, parse_entrant_ids

    seed = args.seed.strip().lower()
    if len(seed) != 64 or any(ch not in "0123456789abcdef" for ch in seed):
        print("verify-lottery: --seed must be 64 hex characters", file=sys.stderr)
        return 2
    try:
        raw = Path(args.entrants).read_text(encoding="utf-8") if args.entrants else args.ids
        ids = parse_entrant_ids(raw)
    except (OSError, ValueError) as error:
        print(f"verify-lottery: cannot read the entrant ids: {error}", file=sys.stderr)
        return 2
    if args.winners < 1:
        print("verify-lottery: --winners must be at least 1", file=sys.stderr)
        return 2
    ok = True
    text = entrant_list_text(ids)
    ordered = [int(line) for line in text.split("\n")] if text else []
    if len(ordered) != len(ids):
        print(f"note: {len(ids) - len(ordered)} duplicate ids ignored")
    list_hash = list_hash_of(text)
    print(f"entrants: {len(ordered)}")
    print(f"entrant list sha256: {list_hash}")
    if args.list_hash:
        same = args.list_hash.strip().lower() == list_hash
        ok &= same
        print(f"list hash check: {'OK' if same else 'MISMATCH (published ' + args.list_hash.strip() + ')'}")
    commitment = commitment_of(seed)
    print(f"seed sha256 (commitment): {commitment}")
    if args.commitment:
        same = args.commitment.strip().lower() == commitment
        ok &= same
        print(f"commitment check: {'OK' if same else 'MISMATCH (published ' + args.commitment.strip() + ')'}")
    count = max(args.winners, args.picks)
    picks, _next = next_picks(seed, list_hash, len(ordered), count)
    for number, (index, counter) in enumerate(picks, start=1):
        role = "winner" if number <= args.winners else "reroll"
        print(f"{number}. {ordered[index]}  ({role}; counter {counter}, index {index})")
    return 0 if ok else 1
