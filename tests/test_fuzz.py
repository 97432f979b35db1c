"""Fuzzing: mutated bundles, manifests, recipe and space files and .tflite models, fed to the real commands.

The property (tests/fuzzing/harness.py): exit code 0, 1 or 2 only, no traceback, no internal error, no
signal, no hang, and no file created, modified or deleted outside the output folder. Commands that
hand bytes to native code (the interpreters) run in a subprocess; pure-Python parsers run in-process.

`make test` runs a small fixed budget per target (derandomized: CI sees the same inputs every time);
`make fuzz` sets COMPRESSOR_FUZZ_EXAMPLES (inputs per target) for the long run. Every failure is kept
(one saved input per distinct failure) and the test fails at the end with all of them listed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzzing.flatbuf import mutated_tflite, tflite_slots
from tests.fuzzing.harness import Campaign, Sandbox, changed_paths, problems, run_in_process, run_subprocess
from tests.fuzzing.mutators import mutated_bytes
from tests.fuzzing.seeds import build_seeds
from tests.fuzzing.trees import mutated_tree, to_json, to_yaml
from tests.fuzzing.zips import mutated_bundle

RUNTIME = str(Path(sys.executable).with_name("compressor-runtime"))
LONG_RUN = int(os.environ.get("COMPRESSOR_FUZZ_EXAMPLES", "0"))
# Inputs per target in `make test`: the file stays well under a minute once the seeds exist.
SUITE_BUDGET = {"bundle": 12, "tflite": 12, "manifest": 60, "recipe": 80, "space": 60}

settings.register_profile(
    "fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: a failure is recorded, not raised, so the run keeps its fixed length.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def budget(target: str):
    return settings(settings.get_profile("fuzz"), max_examples=LONG_RUN or SUITE_BUDGET[target])


@pytest.fixture(scope="session")
def seeds(request, tmp_path_factory):
    """Built once per session from an int8 `compressor compress` run of the tiny model: conftest.py's
    int8_run (read-only), or the run folder COMPRESSOR_FUZZ_RUN names."""
    run = os.environ.get("COMPRESSOR_FUZZ_RUN")
    return build_seeds(
        None, tmp_path_factory.mktemp("fuzz-seeds"), Path(run) if run else request.getfixturevalue("int8_run")
    )


@pytest.fixture
def campaign(request, tmp_path_factory):
    """One Campaign per test; prints its counts (shown by `make fuzz`, which runs pytest -s) and must end clean."""
    target = request.node.name.removeprefix("test_fuzz_")
    failures = Path(os.environ.get("COMPRESSOR_FUZZ_FAILURES") or tmp_path_factory.mktemp("fuzz-failures"))
    c = Campaign(target, failures)
    c.base = tmp_path_factory.mktemp(f"fuzz-{target}")
    yield c
    print("\n" + c.summary())


def check(campaign: Campaign, box: Sandbox, run, argv: list[str], data: bytes, description: list[str]) -> None:
    """Snapshot, run, snapshot; record what broke the property."""
    before = box.snapshot()
    try:
        outcome = run()
        found = problems(outcome, changed_paths(before, box.snapshot()))
        campaign.record(outcome, found, description, argv, box, data)
    finally:
        box.close()


def assert_clean(campaign: Campaign, at_least: int) -> None:
    assert campaign.inputs >= at_least, campaign.summary()
    assert not campaign.failures, campaign.summary()


def test_fuzz_bundle(seeds, campaign):
    """compressor-runtime verify/validate on mutated bundle zips (subprocess: the interpreter runs them)."""
    slots = tflite_slots(seeds.entries["model.tflite"])
    extra = st.sampled_from([["verify"], ["validate"], ["validate", "--model", "onnx"]])

    @budget("bundle")
    @given(mutated_bundle(seeds, slots), extra)
    def run(mutation, command):
        data, description = mutation
        box = Sandbox(campaign.base)
        path = box.put("bundle.zip", data)
        argv = [RUNTIME, command[0], str(path), *command[1:], "--report", str(box.out / "report.json")]
        if command[0] == "validate":
            argv += ["--runs", "1", "--warmup", "0"]
        check(campaign, box, lambda: run_subprocess(argv, box), argv, data, [*description, " ".join(command)])

    run()
    assert_clean(campaign, budget("bundle").max_examples)


def test_fuzz_tflite(seeds, campaign):
    """compressor-runtime validate --data / bench --runs 1 on mutated .tflite files (subprocess)."""
    slots = {name: tflite_slots(data) for name, data in seeds.tflite.items()}
    which = st.sampled_from(sorted(seeds.tflite))

    @st.composite
    def mutated(draw):
        name = draw(which)
        if draw(st.integers(0, 2)):
            data, done = draw(mutated_tflite(seeds.tflite[name], slots[name]))
        else:
            data, done = draw(mutated_bytes(seeds.tflite[name], seeds.all_bytes())), ["bytes"]
        return data, [name, *done]

    @budget("tflite")
    @given(mutated(), st.sampled_from(["validate", "bench"]))
    def run(mutation, command):
        data, description = mutation
        box = Sandbox(campaign.base)
        path = box.put("model.tflite", data)
        argv = [RUNTIME, command, str(path), "--runs", "1", "--warmup", "0", "--report", str(box.out / "r.json")]
        if command == "validate":
            argv += ["--data", str(box.put("data.npz", seeds.data_npz))]
        check(campaign, box, lambda: run_subprocess(argv, box), argv, data, [*description, command])

    run()
    assert_clean(campaign, budget("tflite").max_examples)


def test_fuzz_manifest(seeds, campaign):
    """compressor-runtime verify (in-process: pure Python up to the sha256 checks) on mutated manifests."""
    from compressor.runtime.cli import run as runtime_cli
    from tests.fuzzing.zips import build_zip

    files = [(n, d) for n, d in seeds.entries.items() if n != "manifest.json"]

    @budget("manifest")
    @given(mutated_tree(seeds.manifest))
    def run(mutation):
        tree, raws, description = mutation
        data = build_zip([("manifest.json", to_json(tree, raws).encode()), *files])
        box = Sandbox(campaign.base)
        argv = ["verify", str(box.put("bundle.zip", data)), "--report", str(box.out / "report.json")]
        check(campaign, box, lambda: run_in_process(lambda: runtime_cli(argv), box), argv, data, description)

    run()
    assert_clean(campaign, budget("manifest").max_examples)


def _yaml_mutation(seed_texts: dict[str, str], others: list[bytes]):
    """(name, YAML bytes, description): structure-aware two times in three, byte-level otherwise."""

    @st.composite
    def mutated(draw):
        name = draw(st.sampled_from(sorted(seed_texts)))
        if draw(st.integers(0, 2)):
            tree, raws, done = draw(mutated_tree(yaml.safe_load(seed_texts[name])))
            return name, to_yaml(tree, raws).encode(), [name, *done]
        return name, draw(mutated_bytes(seed_texts[name].encode(), others)), [name, "bytes"]

    return mutated()


def test_fuzz_recipe(seeds, campaign):
    """compressor compress MODEL --recipe FILE --dry-run (in-process: YAML and the schema are pure Python)."""
    from compressor.commands.cli import cli

    @budget("recipe")
    @given(_yaml_mutation(seeds.recipes, seeds.all_bytes()), st.booleans())
    def run(mutation, as_json):
        _, data, description = mutation
        box = Sandbox(campaign.base)
        path = box.put("recipe.yaml", data)
        argv = ["compress", "model.keras", "--recipe", str(path), "--dry-run", "--out", str(box.out / "run")]
        argv += ["--json"] if as_json else []
        call = lambda: cli.main(argv, prog_name="compressor")  # noqa: E731  (standalone: exits with the code)
        check(campaign, box, lambda: run_in_process(call, box), argv, data, description)

    run()
    assert_clean(campaign, budget("recipe").max_examples)


def test_fuzz_space(seeds, campaign):
    """The tune and search space loaders (in-process) on mutated space YAMLs; a UserError is exit code 2."""
    from compressor.runtime.errors import UserError
    from compressor.tuning.hparam_space import load_space
    from compressor.tuning.recipe_space import load_search_space

    loaders = {"train": load_space, "recipes": load_search_space}

    def load(name: str, path: Path) -> int:
        try:
            loaders[name](str(path))
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    @budget("space")
    @given(_yaml_mutation(seeds.spaces, seeds.all_bytes()))
    def run(mutation):
        name, data, description = mutation
        box = Sandbox(campaign.base)
        path = box.put("space.yaml", data)
        argv = [loaders[name].__name__, str(path)]
        check(campaign, box, lambda: run_in_process(lambda: load(name, path), box), argv, data, description)

    run()
    assert_clean(campaign, budget("space").max_examples)
