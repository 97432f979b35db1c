"""Microcontroller targets: validate on the TFLite Micro interpreter, measure the arena, emit C sources."""
