"""Where every file of a run lives: the one owner of the output-folder layout.

A `compress` run (``RunLayout``)::

    OUT/run.json                         what was asked: model, data spec, recipes, versions
    OUT/float32/model.tflite|.onnx       the float reference exports
    OUT/<recipe>/steps/NN-<type>/        each step's output and meta.json (``step_dir``)
    OUT/<recipe>/model.tflite|.onnx      the recipe's artifacts
    OUT/report.json, OUT/report.html     every measured figure

It is built in the hidden sibling ``.OUT.partial`` and renamed to OUT when complete. Every
output folder carries the marker ``.compressor-output.json`` (``--overwrite`` replaces only a
marked or empty folder) and, while a run writes it, the lock file ``.OUT.lock`` beside it. A
`tune`/`search` run (``StudyLayout``) keeps one folder per trial (``TrialLayout``) and the
compress runs of its chosen configuration; a `train` run (``TrainLayout``) a model, its card and
its history. Readers and writers ask these objects for paths instead of spelling them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressor.runtime.atomic import write_json

RUN_RECORD = "run.json"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
MODEL_CARD = "compressor-model.json"  # next to a trained model: architecture, data, preprocessing
REFERENCE = "float32"  # the float reference's folder and report row; no recipe may take this name
PARTIAL_SUFFIX = ".partial"
OUTPUT_MARKER = ".compressor-output.json"  # "this folder is a compressor output": --overwrite may replace it
FINGERPRINT = "resume-fingerprint.json"  # what a run was started from: --resume checks it


def output_marker(folder: Path) -> Path:
    return Path(folder) / OUTPUT_MARKER


def mark_output(folder: Path, kind: str) -> Path:
    """Mark ``folder`` as an output of this tool, so a later ``--overwrite`` may replace it."""
    return write_json(output_marker(folder), {"tool": "compressor", "kind": kind})


def lock_file(out: Path) -> Path:
    """The lock file beside an output folder: ``.OUT.lock``, held while a run writes OUT."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


def step_dir(steps: Path, index: int, step_type: str) -> Path:
    """A recipe step's folder: numbered, so the chain's order shows in a directory listing."""
    return Path(steps) / f"{index:02d}-{step_type}"


def partial_dir(out: Path) -> Path:
    """The hidden sibling a run is built in before it is renamed to ``out``."""
    out = Path(out)
    return out.parent / f".{out.name}{PARTIAL_SUFFIX}"


def run_name(folder: Path) -> str:
    """The name a run folder is known by: ``.OUT.partial`` is OUT while it is being built."""
    name = Path(folder).resolve().name
    if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
        return name[1 : -len(PARTIAL_SUFFIX)]
    return name


@dataclass(frozen=True)
class RunLayout:
    """The paths of one `compress` run rooted at ``root`` (the final folder or its partial)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def partial(self) -> RunLayout:
        return RunLayout(partial_dir(self.root))

    @property
    def run_record(self) -> Path:
        return self.root / RUN_RECORD

    @property
    def fingerprint(self) -> Path:
        return self.root / FINGERPRINT

    @property
    def report_json(self) -> Path:
        return self.root / REPORT_JSON

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    def reference(self, fmt: str) -> Path:
        """The float reference export in ``fmt`` (tflite or onnx)."""
        return self.root / REFERENCE / f"model.{fmt}"

    def recipe_dir(self, recipe: str) -> Path:
        return self.root / recipe

    def steps(self, recipe: str) -> Path:
        return self.recipe_dir(recipe) / "steps"

    def step(self, recipe: str, index: int, step_type: str) -> Path:
        return step_dir(self.steps(recipe), index, step_type)

    def artifact(self, recipe: str, fmt: str, variant: str | None = None) -> Path:
        """``<recipe>/model.<fmt>``; an alternative ONNX quantizer's output is ``model.<variant>.onnx``."""
        name = f"model.{variant}.{fmt}" if variant else f"model.{fmt}"
        return self.recipe_dir(recipe) / name

    @staticmethod
    def finished_step_in(root: Path) -> bool:
        """Whether any recipe step completed in the run folder ``root``: a partial run worth keeping."""
        return any(Path(root).glob("*/steps/*/meta.json"))

    def relocate(self, path: Path, to: RunLayout) -> Path:
        """The same file under another root (a path in the partial folder -> its final place)."""
        return to.root / Path(path).relative_to(self.root)


@dataclass(frozen=True)
class StudyLayout:
    """The paths of a `tune` or `search` run (``kind``) rooted at ``root``."""

    root: Path
    kind: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """Written when the study starts: it marks the folder as this kind of run and resumes it."""
        return self.root / f"{self.kind}-config.json"

    @property
    def result(self) -> Path:
        return self.root / f"{self.kind}.json"

    @property
    def study_db(self) -> Path:
        return self.root / "study.db"

    def trial(self, number: int) -> Path:
        return self.root / "trials" / f"{number:04d}"

    def trial_steps(self, number: int) -> Path:
        return TrialLayout(self.trial(number)).steps

    @property
    def narrowed_space(self) -> Path:
        """Ranges around the best trials, for a coarse-to-fine second study."""
        return self.root / "narrowed-space.yaml"

    def recipe_file(self, what: str) -> Path:
        """``best-recipe.yaml`` / ``baseline-recipe.yaml``: the chosen configuration as a recipe file."""
        return self.root / f"{what}-recipe.yaml"

    def run(self, what: str) -> RunLayout:
        """The compress run (or refit) of the chosen configuration: ``best`` / ``baseline``."""
        return RunLayout(self.root / what)


@dataclass(frozen=True)
class TrialLayout:
    """One search trial's folder (or the temporary folder it is written in)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def steps(self) -> Path:
        return self.root / "steps"

    @property
    def artifact(self) -> Path:
        return self.root / "model.tflite"

    @property
    def result(self) -> Path:
        return self.root / "result.json"


@dataclass(frozen=True)
class TrainLayout:
    """A `compressor train` output: the SavedModel, its card and its training curves."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def card(self) -> Path:
        return self.root / MODEL_CARD

    @property
    def history(self) -> Path:
        return self.root / "history.json"


@dataclass(frozen=True)
class DemoLayout:
    """`compressor demo OUT`: the trained model in OUT/base, its compress run in OUT/compress."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def train(self) -> TrainLayout:
        return TrainLayout(self.root / "base")

    @property
    def compress(self) -> RunLayout:
        return RunLayout(self.root / "compress")
