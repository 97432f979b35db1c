"""The data options every command that reads data shares: --preprocess and --image-fit, and --stream
for the commands that can read their data batch by batch.

--data / --data-dir / --seed stay on each command (their defaults differ per command).
"""

from __future__ import annotations

import click

from compressor.runtime.image_fit import FITS

PREPROCESS_HELP = (
    "How raw values become model inputs. auto (default): the mode recorded with the model, else none "
    "when the model preprocesses its own input (Rescaling, Normalization, x/c at the input), else "
    "scale. none: raw values; scale: the format's default (x/255 for 8-bit data, x/16 for digits, "
    "floats as read); scale:F: x*F (e.g. scale:1/255); mean-std: scale, then per-channel "
    "standardisation with the training split's statistics."
)
IMAGE_FIT_HELP = (
    "Image folders: how images of any size are fitted to the model input. resize: stretched; crop: "
    "shorter side scaled, centre cut out; pad: longer side scaled, zeros around."
)


def _check_mode(ctx, param, value):
    """A misspelt mode fails before any model or data is loaded (one line, exit 2)."""
    from compressor.datasets.choice import parse_mode

    return parse_mode(value)


def data_options(fn):
    """Add --preprocess and --image-fit (passed as ``preprocess`` and ``image_fit``)."""
    fn = click.option("--image-fit", default="resize", show_default=True, type=click.Choice(FITS), help=IMAGE_FIT_HELP)(
        fn
    )
    fn = click.option(
        "--preprocess", default="auto", show_default=True, metavar="MODE", callback=_check_mode, help=PREPROCESS_HELP
    )(fn)
    return fn


STREAM_HELP = "Stream the data (shard or image folders) instead of loading it; default: stream above 64 MiB of inputs."


def stream_option(fn):
    """Add --stream/--no-stream (passed as ``stream``: True, False or None for auto; datasets/source.py)."""
    return click.option("--stream/--no-stream", default=None, help=STREAM_HELP)(fn)
