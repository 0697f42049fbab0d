"""Command lines: which argument tokens are usual per program, and how surprising a new one is. Pure.

Ingestion reduces each command line to a script and a set of normalized tokens
(``telemetry.normalize.command_parts``: numbers, GUIDs, blobs and random path parts folded).
The training window hands them over aggregated, one row per distinct (host, name, tokens) with
its count (:class:`CommandTable`), so the cost grows with distinct command lines, not records.

:class:`CommandBaseline` keeps, per program, the tokens seen with it on each host and on the
hosts of each OS, and how often the program shows a token nobody had shown before: the
Good–Turing estimate of the chance of a new token, ``N1 / N`` (tokens seen in exactly one
observation over observations with arguments). A program whose command lines never change
(``sshd -D``, a service with its fixed flags) has ``N1 / N`` near 0, so a new token is strong
news; an editor opened on a new file every time has it near 1, so a new file is no news.

``novelty`` of a row: 0 when it shows no token unseen with its program (on this host or on a
host of the same OS), otherwise ``(1 - N1/N) * s / (s + novelty_support)``, ``s`` the
program's observations with arguments: a habit seen a few times is weak evidence.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class CommandTable:
    """One row per distinct (host, name, tokens) of the window, with its count; tokens space-separated."""

    host: list[str]
    name: list[str]
    args: list[str]
    count: list[int]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> CommandTable:
        table = cls([], [], [], [])
        for host, name, args, count in rows:
            if args and count:
                table.host.append(str(host))
                table.name.append(str(name))
                table.args.append(str(args))
                table.count.append(int(count))
        return table

    def __len__(self) -> int:
        return len(self.host)


class CommandBaseline:
    """The tokens usual per program, per host and per OS. Picklable."""

    def __init__(self, commands: CommandTable | None, host_os: dict[str, str], novelty_support: float = 2.0) -> None:
        self.novelty_support = novelty_support
        self.host_tokens: dict[tuple[str, str], frozenset[str]] = {}
        self.os_tokens: dict[tuple[str, str], frozenset[str]] = {}
        self.weight: dict[tuple[str, str], float] = {}  # (os, name) -> (1 - N1/N) * s / (s + support)
        if commands is None or not len(commands):
            return
        host_tokens: dict[tuple[str, str], set[str]] = defaultdict(set)
        token_obs: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        observations: dict[tuple[str, str], int] = defaultdict(int)
        for host, name, args, count in zip(commands.host, commands.name, commands.args, commands.count):
            os_name = host_os.get(host, "")
            tokens = args.split(" ")
            host_tokens[(host, name)].update(tokens)
            per = token_obs[(os_name, name)]
            for t in tokens:
                per[t] += count
            observations[(os_name, name)] += count
        self.host_tokens = {k: frozenset(v) for k, v in host_tokens.items()}
        for key, per in token_obs.items():
            self.os_tokens[key] = frozenset(per)
            n = observations[key]
            singletons = sum(1 for c in per.values() if c == 1)
            self.weight[key] = (1.0 - min(1.0, singletons / n)) * n / (n + novelty_support)

    def unusual(self, host: str, os_name: str, name: str, args: str) -> tuple[list[str], float]:
        """(tokens never seen with this program here or on its OS, the novelty they carry)."""
        if not args:
            return [], 0.0
        weight = self.weight.get((os_name, name), 0.0)
        if weight <= 0.0:
            return [], 0.0
        here = self.host_tokens.get((host, name), frozenset())
        fleet = self.os_tokens.get((os_name, name), frozenset())
        new = [t for t in args.split(" ") if t not in here and t not in fleet]
        return new, weight if new else 0.0

    def novelty(self, host: list[str], os_label: list[str], name: list[str],
                args: list[str]) -> tuple[np.ndarray, list[list[str]]]:
        out = np.zeros(len(host))
        tokens: list[list[str]] = [[] for _ in range(len(host))]
        if not self.weight:
            return out, tokens
        cache: dict[tuple, tuple[list[str], float]] = {}
        for i, a in enumerate(args):
            if not a:
                continue
            key = (host[i], os_label[i], name[i], a)
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self.unusual(*key)
            tokens[i], out[i] = hit
        return out, tokens


def usual_parents(host: list[str], name: list[str], parent: list[str], count) -> dict[tuple[str, str], str]:
    """(host, name) -> the parent it most often starts from in the window (for the reasons' words)."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for h, n, p, c in zip(host, name, parent, count):
        if p:
            totals[(h, n, p)] += int(c)
    best: dict[tuple[str, str], tuple[int, str]] = {}
    for (h, n, p), c in totals.items():
        if (h, n) not in best or c > best[(h, n)][0]:
            best[(h, n)] = (c, p)
    return {k: p for k, (_, p) in best.items()}
