"""Run the property-based checks of tests/fuzz_properties.py for N minutes with many more examples.

    python benchmarks/fuzz.py --minutes 3

Each property gets an equal share of the time, in rounds of fresh random examples (no example
database, a new seed each round). Prints, per property, the cases tried and the failures found
(each failure shrunk to a small example by hypothesis and printed once).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from fuzz_properties import PROPERTIES  # noqa: E402


def fuzz(name: str, seconds: float, batch: int) -> tuple[int, list[str]]:
    strategy, check = PROPERTIES[name]
    tried, failures = 0, []

    def counted(value):
        nonlocal tried
        tried += 1
        check(value)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run = settings(max_examples=batch, deadline=None, database=None, suppress_health_check=list(HealthCheck))(
            seed(random.getrandbits(64))(given(strategy)(counted)))
        try:
            run()
        except Exception as e:  # a broken property: hypothesis re-raises it after shrinking
            message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if message not in failures:
                failures.append(message)
    return tried, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="total time, shared by all properties")
    parser.add_argument("--only", nargs="*", default=list(PROPERTIES), help="properties to run")
    parser.add_argument("--batch", type=int, default=500, help="examples per hypothesis run")
    args = parser.parse_args()
    share = args.minutes * 60 / len(args.only)
    total_fail = 0
    print(f"{'property':28s} {'cases':>8s} {'failures':>8s}")
    for name in args.only:
        tried, failures = fuzz(name, share, args.batch)
        total_fail += len(failures)
        print(f"{name:28s} {tried:8d} {len(failures):8d}", flush=True)
        for f in failures:
            print(f"    {f[:300]}")
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
