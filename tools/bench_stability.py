"""Do ``rpclab bench``'s headline figures hold from run to run? Run it several times and compare.

    python tools/bench_stability.py                      # 3 normal runs of every transport
    python tools/bench_stability.py --quick --transports raw,socketrpc,grpc
    python tools/bench_stability.py --runs 3 --keep results/   # keep each run's JSON

Each run is ``python -m rpclab.cli bench --json FILE`` in a fresh process, one after another.
The headline figures are each transport's ratios to raw -- ``time ÷ raw`` and ``CPU ÷ raw``
-- in every arrangement measured (rpclab.bench.report.headline_figures). For each, this prints
every run's value and the largest distance of a run from the runs' median, in percent, and
says whether every figure stayed within ``--tolerance`` (10% by default). It also prints the
socket RPC's CPU per call against raw's on one connection, in each arrangement, against
``--cpu-goal`` (1.2), and, when ``json-floor`` was measured too (``--transports
raw,json-floor,socketrpc``), the floor's: what any JSON-RPC in Python pays.

Wall-clock ratios move with everything else the machine runs: run this on a quiet machine.
Exit status: 0 if every figure held, 1 if one did not, 2 if a run failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(path: Path, quick: bool, transports: str | None) -> dict:
    command = [sys.executable, "-m", "rpclab.cli", "bench", "--json", str(path)]
    if quick:
        command.append("--quick")
    if transports:
        command += ["--transports", transports]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if finished.returncode != 0 or not path.exists():
        sys.stderr.write(finished.stdout + finished.stderr)
        raise SystemExit(f"bench_stability: a run failed (exit {finished.returncode})")
    return json.loads(path.read_text())


def spread(values: list[float]) -> float:
    """The largest distance of a value from the values' median, as a fraction of the median."""
    middle = statistics.median(values)
    return max(abs(v - middle) for v in values) / middle if middle else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="rpclab bench --quick")
    parser.add_argument("--transports", metavar="A,B", help="rpclab bench --transports A,B")
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--cpu-goal", type=float, default=1.2)
    parser.add_argument("--keep", metavar="DIR", help="keep each run's JSON in DIR")
    args = parser.parse_args(argv)
    if not 2 <= args.runs <= 20:
        parser.error("--runs must be between 2 and 20")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rpclab-stability-"))
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for number in range(1, args.runs + 1):
        print(f"run {number}/{args.runs} ...", flush=True)
        data = run_once(folder / f"bench-{number}.json", args.quick, args.transports)
        load = data["machine"].get("load_average")
        print(f"  {data['seconds']:.0f} s; load average before: {load}", flush=True)
        runs.append(data)
    keys = [k for k in runs[0]["headline"] if all(k in r["headline"] for r in runs)]
    width = max((len(k) for k in keys), default=10)
    print()
    print(f"{'figure':<{width}} " + " ".join(f"{f'run {i}':>7}" for i in range(1, len(runs) + 1))
          + f" {'spread':>8}")  # fmt: skip
    held = True
    for key in keys:
        values = [r["headline"][key] for r in runs]
        apart = spread(values)
        ok = apart <= args.tolerance
        held &= ok
        print(
            f"{key:<{width}} " + " ".join(f"{v:7.2f}" for v in values)
            + f" {apart:7.1%}{'' if ok else '  <- over ' + format(args.tolerance, '.0%')}"
        )  # fmt: skip
    print()
    print(f"every figure within ±{args.tolerance:.0%} of its median: {'yes' if held else 'no'}")
    goal = [k for k in keys if k.startswith("socketrpc |") and k.endswith("| CPU ÷ raw")]
    for key in goal:
        values = [r["headline"][key] for r in runs]
        verdict = "met" if max(values) <= args.cpu_goal else "not met"
        print(
            f"socketrpc CPU per call ÷ raw's, {key.split(' | ')[1]}: "
            + ", ".join(f"{v:.2f}" for v in values)
            + f" (goal at most {args.cpu_goal}: {verdict})"
        )
        floor = key.replace("socketrpc |", "json-floor |", 1)
        if floor in keys:  # measured when named: --transports raw,json-floor,socketrpc
            print(
                "  json-floor, the least JSON-RPC work in Python, there: "
                + ", ".join(f"{r['headline'][floor]:.2f}" for r in runs)
            )
    if not args.keep:
        print(f"(each run's JSON is in {folder})")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
