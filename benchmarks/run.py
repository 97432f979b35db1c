"""`make bench`: run every section, write bench.json and BENCHMARKS.md (one run, one machine).

    python -m benchmarks.run [--quick] [--only SECTION,...]

A failing section is recorded as an error in both files; the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from compressor.recipes import preset_names
from compressor.reports.summary import versions
from compressor.runtime.atomic import write_json, write_text

from . import sections
from .markdown import render

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):  # no /proc (not Linux): the CPU stays "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer models/recipes (a smoke run, not for publishing)")
    parser.add_argument("--work", default=str(ROOT / ".bench"))
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated sections to (re)run; the others are kept "
        "from the existing bench.json (each section records its own date)",
    )
    args = parser.parse_args()
    names = [n for n, _ in sections.ALL]
    only = args.only.split(",") if args.only else names
    unknown = sorted(set(only) - set(sections.STANDALONE)) if args.only else []
    if unknown:
        parser.error(
            f"section(s) {', '.join(unknown)} cannot run alone; --only takes "
            f"{', '.join(sections.STANDALONE)} (the others need the models and runs of a full run)"
        )
    work = Path(args.work)
    if not args.only:  # --only keeps the folder: an interrupted section's studies resume
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    bench: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "quick": args.quick,
        "presets": preset_names(),
        "sections": {},
    }
    if args.only and (ROOT / "bench.json").is_file():
        old = json.loads((ROOT / "bench.json").read_text())
        bench.update(date=old["date"], seconds=old.get("seconds", 0), sections=old["sections"])
    ctx = sections.Context(work=work, quick=args.quick, bench=bench)
    for name, fn in sections.ALL:
        if name not in only:
            continue
        t0 = time.time()
        print(f"[bench] {name} ...", flush=True)
        try:
            bench["sections"][name] = {"ok": True, "data": fn(ctx)}
        except Exception as e:  # one broken section must not hide the others
            traceback.print_exc()
            bench["sections"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        bench["sections"][name]["seconds"] = round(time.time() - t0, 1)
        bench["sections"][name].update(date=datetime.now(UTC).isoformat(timespec="seconds"), alone=bool(args.only))
        print(f"[bench] {name} done in {time.time() - t0:.0f} s", flush=True)
    if not args.only or "seconds" not in bench:
        bench["seconds"] = round(time.time() - started, 1)
    bench["targets"] = sections.targets(bench)
    write_json(ROOT / "bench.json", bench)
    write_text(ROOT / "BENCHMARKS.md", render(bench))
    checked = [t for t in bench["targets"] if t["status"] != "retired"]
    failed = [t for t in checked if t["status"] != "pass"]
    print(
        f"[bench] wrote BENCHMARKS.md and bench.json in {bench['seconds']:.0f} s; "
        f"{len(checked) - len(failed)}/{len(checked)} targets pass"
    )


if __name__ == "__main__":
    main()
