"""Fuzzing support for tests/test_fuzz.py: seeds, hypothesis mutators and the harness that runs a command.

seeds.py      the real inputs mutated (a bundle, its manifest, recipe and space YAMLs, .tflite files)
mutators.py   byte-level mutations (flip, overwrite, truncate, extend, splice)
trees.py      structure-aware mutations of JSON/YAML documents
zips.py       structure-aware mutations of bundle zips (entries, manifest, headers)
flatbuf.py    structure-aware mutations of .tflite flatbuffers (shapes, buffer and opcode indices)
harness.py    the sandbox (snapshot before/after), running a command, checking the property
"""
