"""What ``rpclab bench`` prints and writes: the tables, the verdicts, the JSON, and the command.

Used by notebook 13 and by ``rpclab bench``; the measuring itself is harness.py.

Every column has one meaning. ``time ÷ raw`` and ``CPU ÷ raw`` are both ratios of *times* (a
transport's median latency, or CPU per call, over raw's in the same round and arrangement):
above 1 means costlier than raw. Rates (calls per second) are never turned into ratios here.
About 450 lines: the tables, the verdicts, the JSON and the command are one report, read in
that order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from rpclab.bench import harness, placement
from rpclab.bench.echo import NOT_RPC
from rpclab.bench.harness import LIMITS, WHERE, Settings, transport_names
from rpclab.bench.results import Result, Summary, format_size, summaries

__all__ = [
    "Choice",
    "choices",
    "headline_figures",
    "format_table",
    "format_choices",
    "to_json",
    "ProgressLine",
    "benchmark",
    "add_arguments",
    "main",
]


def _arrangement(where: str, place: str) -> str:
    return f"{WHERE[where]}, {placement.DESCRIPTIONS[place]}"


@dataclass(frozen=True)
class Choice:
    """The transport that did best in one situation, by how much, and the measured figure behind
    it."""

    situation: str
    transport: str
    figure: str  # the winner's measured value, formatted
    runner_up: str | None = None
    margin: float | None = None  # how many times better than the runner-up (>= 1)

    @property
    def close_call(self) -> bool:
        """Within 10% of the runner-up: a rerun may well swap them."""
        return self.margin is not None and self.margin < 1.1

    def __str__(self) -> str:
        text = f"{self.situation}: {self.transport} ({self.figure}"
        if self.runner_up is not None and self.margin is not None:
            text += f"; {self.margin:.2f} x better than {self.runner_up}"
            if self.close_call:
                text += ", a near tie"
        return text + ")"


def choices(results: dict[str, Result], baseline: str = "raw") -> list[Choice]:
    """The best RPC transport in each situation, in the first arrangement measured, computed from
    the results (``baseline`` and the measuring sticks of echo.NOT_RPC left out)."""
    first = next(iter(results.values()), None)
    if first is None:
        return []
    where, place = first.headline
    candidates = [
        s
        for s in summaries(results, baseline)
        if s.transport != baseline
        and s.transport not in NOT_RPC
        and (s.where, s.placement) == (where, place)
    ]
    picks: list[Choice] = []

    def pick(
        situation: str,
        value: Callable[[Summary], float | None],
        lower_is_better: bool,
        show: Callable[[float], str],
    ) -> None:
        scored = [
            (v, s.transport)
            for s in candidates
            if (v := value(s)) is not None and v > 0 and math.isfinite(v)
        ]
        if not scored:
            return
        scored.sort(reverse=not lower_is_better)
        (best, winner), rest = scored[0], scored[1:]
        margin = None
        if rest:
            margin = rest[0][0] / best if lower_is_better else best / rest[0][0]
        picks.append(Choice(situation, winner, show(best), rest[0][1] if rest else None, margin))

    pick(
        "lowest latency, one call at a time",
        lambda s: s.median_us,
        True,
        lambda v: f"median {v:,.0f} µs",
    )
    pick("least CPU per call", lambda s: s.cpu_us, True, lambda v: f"{v:,.0f} µs per call")
    pick(
        "steadiest latency (lowest 99th percentile over median)",
        lambda s: s.p99_us / s.median_us if s.median_us else None,
        True,
        lambda v: f"p99 {v:,.1f} x its median",
    )
    connections = max((s.connections for s in candidates), default=0)
    if connections:
        pick(
            f"most calls per second, {connections} at once",
            lambda s: s.concurrent_rate,
            False,
            lambda v: f"{v:,.0f} calls/s",
        )
    by_name = {
        r.transport: r for name, r in results.items() if name != baseline and name not in NOT_RPC
    }
    sizes = sorted({p.size for r in by_name.values() for p in r.payload if p.calls})
    if sizes:
        largest = sizes[-1]
        scored = [
            (v, name) for name, r in by_name.items() if (v := r.payload_us(largest)) is not None
        ]
        if scored:
            scored.sort()
            (best, winner), rest = scored[0], scored[1:]
            picks.append(
                Choice(
                    f"largest payloads ({format_size(largest)} echoed)",
                    winner,
                    f"{best / 1000:,.1f} ms per echo",
                    rest[0][1] if rest else None,
                    rest[0][0] / best if rest else None,
                )
            )
    return picks


def headline_figures(results: dict[str, Result]) -> dict[str, float]:
    """Each transport's ratios to raw, wall and CPU, in every arrangement: the figures that should
    hold from run to run. Keys read ``"socketrpc | kernel, one-cpu | time ÷ raw"``."""
    figures: dict[str, float] = {}
    for s in summaries(results):
        if s.transport == "raw":
            continue
        for label, value in (("time ÷ raw", s.wall_vs_raw), ("CPU ÷ raw", s.cpu_vs_raw)):
            if value is not None:
                figures[f"{s.transport} | {s.arrangement} | {label}"] = value
    return figures


def _us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


def _format_us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1000:,.1f} ms"


def format_table(results: dict[str, Result]) -> str:
    """Plain-text tables: one per arrangement (one call at a time), calls per second with several
    connections at once, then the payload sweep, then any errors."""
    lines: list[str] = []
    all_summaries = summaries(results)
    arrangements = list(dict.fromkeys((s.where, s.placement) for s in all_summaries))
    for where, place in arrangements:
        rows = [s for s in all_summaries if (s.where, s.placement) == (where, place)]
        cpus = next(
            (r.cpus for res in results.values() for r in res.rounds_in(where, place) if r.cpus),
            [],
        )
        pinned = f" (CPU {', '.join(map(str, cpus))})" if cpus else ""
        rounds = max(s.rounds for s in rows)
        lines += [
            f"One call at a time, a new connection each round ({rounds} rounds): "
            f"{_arrangement(where, place)}{pinned}",
        ]
        head = (
            f"{'transport':<10} {'median µs':>10} {'rounds low-high':>16} {'p99 µs':>8} "
            f"{'CPU µs/call':>12} {'time ÷ raw':>11} {'CPU ÷ raw':>10} {'calls/s':>9}"
        )
        lines += [head, "-" * len(head)]
        for s in rows:
            spread = f"{_us(s.low_us)}-{_us(s.high_us)}"
            wall = f"{s.wall_vs_raw:.2f}" if s.wall_vs_raw is not None else "-"
            cpu = f"{s.cpu_vs_raw:.2f}" if s.cpu_vs_raw is not None else "-"
            lines.append(
                f"{s.transport:<10} {_us(s.median_us):>10} {spread:>16} {_us(s.p99_us):>8} "
                f"{_us(s.cpu_us):>12} {wall:>11} {cpu:>10} {s.rate:>9,.0f}"
            )
        lines.append("")
    connections = max((r.connections for r in results.values()), default=0)
    together = [
        (w, p) for w, p in arrangements
        if any(c.where == w and c.placement == p for r in results.values() for c in r.concurrent)
    ]  # fmt: skip
    if connections and together:
        labels = [f"{w}, {p}" for w, p in together]
        width = max(17, *(len(label) for label in labels))
        lines.append(
            f"{connections} connections at once: calls per second (and CPU µs per call, both sides)"
        )
        head = f"{'transport':<10} " + " ".join(f"{label:>{width}}" for label in labels)
        lines += [head, "-" * len(head)]
        for name in results:
            cells = []
            for where, place in together:
                s = next(
                    (
                        x
                        for x in all_summaries
                        if x.transport == name and (x.where, x.placement) == (where, place)
                    ),
                    None,
                )
                if s is None or s.concurrent_rate is None:
                    cells.append(f"{'-':>{width}}")
                else:
                    cpu = f" ({_us(s.concurrent_cpu_us)})" if s.concurrent_cpu_us else ""
                    cells.append(f"{f'{s.concurrent_rate:,.0f}{cpu}':>{width}}")
            lines.append(f"{name:<10} " + " ".join(cells))
        lines.append("")
    sizes = sorted({p.size for r in results.values() for p in r.payload})
    if sizes:
        first = next(iter(results.values())).headline
        head = f"{'echo of':<10} " + " ".join(f"{format_size(s):>10}" for s in sizes)
        lines += [
            f"Payload sweep, median time per echo (median of the rounds): {_arrangement(*first)}",
            head,
            "-" * len(head),
        ]
        for r in results.values():
            lines.append(
                f"{r.transport:<10} "
                + " ".join(f"{_format_us(r.payload_us(s)):>10}" for s in sizes)
            )
    for r in results.values():
        for error in r.errors[:3]:
            lines.append(f"  ! {r.transport}: {error}")
        if len(r.errors) > 3:
            lines.append(f"  ! {r.transport}: ... and {len(r.errors) - 3} more errors")
    return "\n".join(lines).rstrip("\n")


def format_choices(results: dict[str, Result]) -> str:
    """One line per situation: the best RPC transport measured, and by how much."""
    return "\n".join(f"- {choice}" for choice in choices(results))


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": placement.usable_cpus(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def to_json(
    results: dict[str, Result],
    settings: Settings,
    seconds: float | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Every round and the summaries, with the conditions they were measured in, for json.dump.

    Each round carries its latency quantiles in µs (not every call); ``summaries`` one entry per
    transport and arrangement; ``headline`` the ratios :func:`headline_figures` gives.
    """
    return {
        "rpclab_bench": 2,  # the version of this layout
        "machine": _machine(),
        "settings": asdict(settings),
        "seconds": seconds,
        "notes": list(notes),
        "arrangements": {
            "where": dict(WHERE),
            "placement": dict(placement.DESCRIPTIONS),
        },
        "limits": {name: LIMITS.get(name, "") for name in results},
        "summaries": [asdict(s) for s in summaries(results)],
        "headline": headline_figures(results),
        "rounds": [
            {
                **{k: v for k, v in asdict(r).items() if k != "latencies_ns"},
                "rate": r.rate,
                "quantiles_us": r.quantiles(),
            }
            for result in results.values()
            for r in result.rounds
        ],
        "concurrent_rounds": [
            {**asdict(c), "rate": c.rate} for result in results.values() for c in result.concurrent
        ],
        "payload": {
            name: [{**asdict(p), "mib_per_second": p.mib_per_second} for p in r.payload]
            for name, r in results.items()
        },
        "errors": {name: list(r.errors) for name, r in results.items()},
        "choices": [asdict(choice) for choice in choices(results)],
    }


# =========================================================================== running it


class ProgressLine:
    """A progress bar on one line of a stream (stderr by default), rewritten in place; ``finish()``
    wipes it."""

    def __init__(self, stream: TextIO | None = None, width: int = 24):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self._length = 0

    def __call__(self, done: int, total: int, what: str) -> None:
        filled = self.width * done // max(total, 1)
        text = (
            f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {what}"
            f"  {time.perf_counter() - self.start:.0f} s"
        )
        self.stream.write("\r" + text.ljust(self._length))
        self.stream.flush()
        self._length = len(text)

    def finish(self) -> None:
        if self._length:
            self.stream.write("\r" + " " * self._length + "\r")
            self.stream.flush()
            self._length = 0


def benchmark(
    transports: str | Iterable[str] | None = None,
    *,
    quick: bool = False,
    json_file: str | None = None,
    settings: Settings | None = None,
    progress: bool | TextIO | None = None,
    out: TextIO | None = None,
    show_choices: bool = True,
) -> dict[str, Result]:
    """What ``rpclab bench`` does, as a function: measure, print the tables and choices, optionally
    write JSON.

    The command's options are its arguments: ``--transports a,b`` is
    ``transports="a,b"`` (or a list), ``--quick`` is ``quick=True``, ``--json
    FILE`` is ``json_file="FILE"``. ``settings`` overrides both presets.
    ``progress``: a progress bar on stderr (True), on the given stream, or none
    (False); by default, only when stderr is a terminal. ``show_choices=False`` leaves out the
    best transport in each situation (:func:`choices` computes them). Returns the results.
    """
    names = transport_names(transports)
    quick_settings, normal_settings = harness.QUICK, harness.NORMAL  # read now: tests replace them
    settings = settings if settings is not None else quick_settings if quick else normal_settings
    out = out if out is not None else sys.stdout
    if progress is None:
        progress = sys.stderr.isatty()
    bar = ProgressLine(None if progress is True else progress) if progress else None
    kind = (
        "quick"
        if settings == quick_settings
        else "normal"
        if settings == normal_settings
        else "custom"
    )
    print(
        f"Measuring {', '.join(names)}: {settings.rounds} rounds ({kind} run), each on new "
        f"connections, in every arrangement of where the server runs ({', '.join(settings.where)}) "
        f"and where threads run ({', '.join(settings.placements)}); this machine lets this "
        f"process use {len(placement.usable_cpus()) or os.cpu_count()} CPUs.",
        file=out,
        flush=True,
    )
    notes: list[str] = []
    started = time.perf_counter()
    try:
        results = harness.run(names, settings, progress=bar, notes=notes)
    finally:
        if bar is not None:
            bar.finish()
    seconds = time.perf_counter() - started
    for note in notes:
        print(f"note: {note}", file=out)
    print(format_table(results), file=out)
    print(f"({seconds:.1f} s of measuring; µs are per call)", file=out)
    lines = format_choices(results) if show_choices else ""
    if lines:
        first = next(iter(results.values())).headline
        print(
            f"\nBest RPC transport in each situation, as measured in this run "
            f"({_arrangement(*first)}):\n" + lines,
            file=out,
        )
    if json_file:
        with open(json_file, "w", encoding="utf-8") as handle:
            json.dump(to_json(results, settings, seconds, notes), handle, indent=1)
            handle.write("\n")
        print(f"wrote {json_file}", file=out)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rpclab bench`` (the parameters of :func:`benchmark`), as rpclab.cli also
    declares them."""
    parser.add_argument("--quick", action="store_true", help="a short run, under a minute")
    parser.add_argument(
        "--json", metavar="FILE", help="also write every round and the summaries as JSON to FILE"
    )
    parser.add_argument(
        "--transports", metavar="A,B", help="measure only these, comma-separated (default: all)"
    )


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``rpclab bench [--quick] [--json FILE] [--transports A,B]``: 0 if all went well, 1 on errors,
    2 on bad options."""
    if args is None or not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(
            prog="rpclab bench",
            description="Measure every transport against a raw socket, in rounds.",
        )
        add_arguments(parser)
        args = parser.parse_args(args)
    try:
        names = transport_names(getattr(args, "transports", None))
    except ValueError as exc:
        print(f"rpclab bench: {exc}", file=sys.stderr)
        return 2
    try:
        results = benchmark(
            names, quick=getattr(args, "quick", False), json_file=getattr(args, "json", None)
        )
    except KeyboardInterrupt:
        print("\nrpclab bench: interrupted; every server it started is stopped.", file=sys.stderr)
        return 130
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
