"""Run one benchmark job in this (fresh) process and print its figures as JSON on the last line.

    python -m benchmarks.job MODULE:FUNCTION '{"arg": ...}'

Wall time covers the whole process, TensorFlow import included, as a user would see it;
peak RSS is this process's own maximum resident set (ru_maxrss).
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time

T0 = time.perf_counter()


def main() -> None:
    target, args = sys.argv[1], json.loads(sys.argv[2])
    module, function = target.split(":")
    result = getattr(importlib.import_module(module), function)(**args)
    figures = {
        "wall_s": time.perf_counter() - T0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "result": result,
    }
    print("BENCH_RESULT " + json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
