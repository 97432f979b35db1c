"""`python -m compressor` is the `compressor` command."""

from compressor.cli import main

main()
