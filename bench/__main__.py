"""Run every benchmark side by side and print one table.

python -m bench                 # all
python -m bench ingest eval     # a subset: ingest, eval, memory, labels, checkpoint, hotpath,
                                #   detect, cbpe, payloads
"""

from __future__ import annotations

import argparse
import sys

from bench import cbpe, checkpoint, detect, evaluation, hotpath, ingest, labels, memory, payloads

SUITES = {
    "ingest": ingest.run,
    "eval": evaluation.run,
    "memory": memory.run,
    "labels": labels.run,
    "checkpoint": checkpoint.run,
    "hotpath": hotpath.run,
    "detect": detect.run,
    "cbpe": cbpe.run,
    "payloads": payloads.run,
}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("suites", nargs="*", help=f"any of {', '.join(SUITES)} (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = p.parse_args()
    unknown = set(args.suites) - set(SUITES)
    if unknown:
        p.error(f"unknown suite(s): {', '.join(sorted(unknown))}; choose from {', '.join(SUITES)}")
    rows: list[tuple[str, str, str, str]] = []
    for name in args.suites or SUITES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(SUITES[name](args.quick))
    widths = [
        max(len(r[i]) for r in [("benchmark", "measured", "result", "target"), *rows])
        for i in range(4)
    ]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format("benchmark", "measured", "result", "target"))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
