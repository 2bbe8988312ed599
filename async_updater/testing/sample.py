"""Sample input: a deterministic CSV of N users over M accounts (``scripts/gen_users``, demo)."""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import uuid
from collections.abc import Iterator

from ..model import UserRecord

__all__ = ["generate_users", "main", "sample_records", "write_users"]

HEADER = ("account_id", "user_id", "inbound_calling", "outbound_calling", "sms")
# Ids a real directory can hold and a naive client would mangle in the path.
TRICKY_USER_IDS = ("user/with/slashes", "user with spaces", "100%-done", "ünïcødé-用户", "q?x#y")


def sample_records(users: int, accounts: int = 1, *, seed: int = 0) -> Iterator[UserRecord]:
    """``users`` distinct users spread round-robin over ``accounts`` accounts; settings random."""
    if users < 0 or accounts < 1:
        raise ValueError("users must be >= 0 and accounts >= 1")
    rng = random.Random(seed)
    account_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(accounts)]
    for i in range(users):
        if i < len(TRICKY_USER_IDS) and users >= 100:
            user_id = TRICKY_USER_IDS[i]
        else:
            user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        bits = rng.getrandbits(3)
        yield UserRecord(
            account_ids[i % accounts],
            user_id,
            bool(bits & 1),
            bool(bits & 2),
            bool(bits & 4),
            i + 2,
        )


def write_users(path: str | os.PathLike[str], records: Iterator[UserRecord]) -> int:
    """Write records as an input CSV; returns the number of rows."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        for r in records:
            writer.writerow(
                (
                    r.account_id,
                    r.user_id,
                    _b(r.inbound_calling),
                    _b(r.outbound_calling),
                    _b(r.sms),
                )
            )
            n += 1
    return n


def generate_users(
    path: str | os.PathLike[str], users: int, accounts: int = 1, *, seed: int = 0
) -> int:
    return write_users(path, sample_records(users, accounts, seed=seed))


def _b(value: bool) -> str:
    return "true" if value else "false"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gen_users", description="Write a sample input CSV of N users over M accounts."
    )
    parser.add_argument("path", help="CSV file to write ('-' for standard output)")
    parser.add_argument("--users", "-n", type=int, default=1000, help="number of users")
    parser.add_argument("--accounts", "-m", type=int, default=1, help="number of accounts")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")
    args = parser.parse_args(argv)
    if args.users < 0 or args.accounts < 1:
        parser.error("--users must be >= 0 and --accounts >= 1")
    target = "/dev/stdout" if args.path == "-" else args.path
    n = generate_users(target, args.users, args.accounts, seed=args.seed)
    if args.path != "-":
        print(f"wrote {n} users over {args.accounts} account(s) to {args.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
