"""`python -m compressor` is the `compressor` command."""

from compressor.commands.cli import main

main()
