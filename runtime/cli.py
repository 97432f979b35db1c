"""``compressor-runtime``: verify, validate and benchmark models on the device (no TensorFlow).

    compressor-runtime verify bundle.zip
    compressor-runtime validate bundle.zip [--data test.npz|photos/] [--min-accuracy 0.9] [--max-latency-ms 5]
    compressor-runtime bench bundle.zip|model.tflite [--threads 4] [--litert-benchmark]

Exit codes (runtime/exit_codes.py, the same as ``compressor``'s): 0 passed, 1 a gate or the
self-test failed, 2 a problem with the input or the environment (one line on stderr; --debug shows
the traceback), 130 interrupted, 70 an internal error (a bug). argparse, not click: the device
installs numpy and ai-edge-litert only.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from .atomic import write_json
from .exit_codes import GATE_FAILED, OK, USER_ERROR, outcome


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compressor-runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="store_true", help="print the runtime's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the full report as JSON on stdout")
    common.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE (atomically)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    common.add_argument("-v", "--verbose", action="store_true", help="show the interpreters' native log lines")
    common.add_argument(
        "--key",
        metavar="PUB",
        help="Ed25519 public key (PEM): refuse a bundle it did not sign (default: $COMPRESSOR_RUNTIME_KEY if set)",
    )

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("target", metavar="BUNDLE_OR_MODEL", help="bundle .zip, or a .tflite/.onnx file")
    run.add_argument(
        "--model",
        dest="fmt",
        choices=("tflite", "onnx"),
        help="which model of a bundle (default: the first, the .tflite)",
    )
    run.add_argument("--threads", type=_positive, default=1, help="interpreter threads (default 1)")
    run.add_argument("--no-xnnpack", action="store_true", help="LiteRT builtin kernels only, no XNNPACK delegate")
    run.add_argument("--runs", type=_positive, default=100, help="timed latency runs (default 100)")
    run.add_argument("--warmup", type=_non_negative, default=10, help="warm-up runs (default 10)")
    run.add_argument("--max-latency-ms", type=float, help="gate: p90 latency in ms")

    sub.add_parser("verify", parents=[common], help="check a bundle's schema and every file's sha256").add_argument(
        "target", metavar="BUNDLE"
    )
    v = sub.add_parser("validate", parents=[common, run], help="self-test, accuracy on --data, latency, gates")
    v.add_argument(
        "--data",
        metavar="NPZ|FOLDER",
        help="RAW labelled inputs: x_test, y_test in an .npz, or a folder of images with one subfolder per label "
        "(the manifest's preprocessing is applied)",
    )
    v.add_argument("--batch-size", type=_positive, default=256, help="samples per interpreter call (1 = one at a time)")
    v.add_argument("--min-accuracy", type=float, help="gate: top-1 accuracy on --data, a fraction (0.9 = 90%%)")
    v.add_argument(
        "--max-accuracy-drop", type=float, help="gate: drop from the bundle's float32 reference accuracy (0.01 = 1 pt)"
    )
    b = sub.add_parser("bench", parents=[common, run], help="latency, init time, memory, size")
    b.add_argument("--litert-benchmark", action="store_true", help="also run litert-benchmark and compare medians")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command, print; return the exit code (for tests and ``main``)."""
    args = _parser().parse_args(argv)
    if args.version:
        from .commands import versions

        print(f"compressor-runtime {versions().get('compressor-runtime') or versions().get('compressor', '?')}")
        return OK
    if args.command is None:
        _parser().print_help(sys.stderr)
        return USER_ERROR
    if args.verbose:
        from .quiet import set_verbose

        set_verbose(True)

    def progress(msg: str) -> None:
        if not args.quiet and not args.json:
            print(msg, file=sys.stderr)

    try:
        report = _dispatch(args, progress)
        if args.report:
            write_json(args.report, report)
    except (Exception, KeyboardInterrupt) as e:  # one line and its exit code; the traceback behind --debug
        code, line = outcome(e)
        if args.debug:
            traceback.print_exc()
        print(line, file=sys.stderr)
        return code
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return OK if report["passed"] else GATE_FAILED


def _dispatch(args: argparse.Namespace, progress) -> dict:
    from . import commands
    from .gates import Gates
    from .signing import default_key

    key = default_key(args.key)
    if args.command == "verify":
        return commands.verify(args.target, key=key)
    options = dict(
        key=key,
        fmt=args.fmt,
        threads=args.threads,
        xnnpack=not args.no_xnnpack,
        runs=args.runs,
        warmup=args.warmup,
        progress=progress,
    )
    if args.command == "validate":
        gates = Gates(args.min_accuracy, args.max_accuracy_drop, args.max_latency_ms)
        return commands.validate(args.target, data=args.data, batch_size=args.batch_size, gates=gates, **options)
    return commands.bench(
        args.target, gates=Gates(max_latency_ms=args.max_latency_ms), reference=args.litert_benchmark, **options
    )


def format_report(r: dict) -> str:
    """The human summary; --json prints every figure."""
    if r["command"] == "verify":
        files = ", ".join(f"{n} ({f['bytes']:,} B)" for n, f in r["files"].items())
        model = r["model"]
        return (
            f"ok: {r['target']} ({r['bundle_schema']}): {model['name']} v{model['version']}, "
            f"recipe {model['recipe']}\n  signature: {_signature_line(r['signature'])}\n  sha256 verified: {files}"
        )
    m = r["model"]
    lines = [
        f"{r['target']}: {m.get('name', m['file'])} [{m['format']} on {r['backend']}, {r['threads']} thread(s)"
        + (", no XNNPACK" if r.get("xnnpack") is False else "")
        + "]"
    ]
    if r.get("signature") is not None:
        lines.append(f"  signature    {_signature_line(r['signature'])}")
    if "self_test" in r:
        s = r["self_test"]
        lines.append(
            f"  self-test    {'ok' if s['passed'] else 'FAILED'}: {s['samples']} samples, max abs diff "
            f"{s['max_abs_diff']:.3g} (tolerance {s['atol']:.3g}), top-1 agreement {s['top1_agreement']:.0%}"
        )
        lines += [f"               {f}" for f in s["failures"]]
    if "accuracy" in r:
        a = r["accuracy"]
        host = f", host {a['host_accuracy']:.2%}" if "host_accuracy" in a else ""
        lines.append(
            f"  accuracy     top-1 {a['top1']:.2%}"
            + (f", top-5 {a['top5']:.2%}" if "top5" in a else "")
            + f" on {a['samples']} samples{host}"
        )
        if not a["preprocessing_applied"]:
            lines.append("               (no preprocessing recorded with this model: --data was fed as model inputs)")
    lat, size = r["latency"], r["size"]
    lines.append(
        f"  latency      median {lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms "
        f"({lat['runs']} runs), init {lat['init_ms']:.1f} ms, peak memory {lat['peak_rss_mb'] or 0:.0f} MB"
    )
    lines.append(f"  size         {size['bytes'] / 1024:.1f} KB ({size['gzip_bytes'] / 1024:.1f} KB gzip)")
    if "litert_benchmark" in r:
        ref = r["litert_benchmark"]
        lines.append(
            f"  litert-benchmark median {ref['median_ms']:.2f} ms vs ours {ref['our_median_ms']:.3f} ms "
            f"({'within' if ref['within_10_percent'] else 'NOT within'} 10%, their resolution 0.01 ms)"
        )
    lines += [f"  GATE FAILED  {f}" for f in r["gates"]["failed"]]
    return "\n".join(lines)


def _signature_line(signature: dict | None) -> str:
    if signature is None:
        return "none (unsigned bundle)"
    if signature["verified"]:
        return f"verified, Ed25519 key {signature['key_id']}"
    return f"present (key {signature['key_id']}), NOT checked: pass --key PUB to require it"


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
