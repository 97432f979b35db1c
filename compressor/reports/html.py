"""One self-contained HTML report per run folder (PNG plots embedded as base64), from its JSON files.

`compressor report RUN_DIR` and the end of compress/tune/search call ``write_html``. It reads
whatever the folder holds: report.json (compress), tune.json (tune), search.json (search, plus
best/report.json of the chosen artifact). A section that cannot be drawn shows its error
instead of failing the run: the figures in the JSON are the record, the plots only show them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compressor.pipeline.layout import RunLayout, StudyLayout, run_name
from compressor.reports.compress_sections import compress_sections
from compressor.reports.html_blocks import Section, guarded, page
from compressor.reports.report_shapes import check_shape
from compressor.reports.search_sections import search_sections
from compressor.reports.tune_sections import tune_sections
from compressor.runtime.atomic import write_text
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import RUN_FILE_BYTES, load_json_file


def write_html(run_dir: str | Path, progress: Callable[[str], None] | None = None, *, name: str | None = None) -> Path:
    """Write RUN_DIR/report.html from the JSON files in RUN_DIR; returns its path.

    ``name`` is the run's name in the title; by default the folder's, where a run still being built in
    its hidden ``.NAME.partial`` folder is NAME (the folder it is renamed to when complete).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run folder")
    builders = (
        ("search", StudyLayout(run_dir, "search").result, search_sections),
        ("tune", StudyLayout(run_dir, "tune").result, tune_sections),
        ("compress", RunLayout(run_dir).report_json, compress_sections),
    )
    sources = [(kind, path, build, _read(kind, path)) for kind, path, build in builders if path.is_file()]
    sections: list[Section] = []
    kinds = []
    for _kind, path, build, data in sources:  # every file checked above, before anything is drawn
        kinds.append(path.name)
        sections += guarded(path.name, lambda d=data, b=build: b(d, run_dir))
    if not kinds:
        raise UserError(
            f"{run_dir} has no report.json, tune.json or search.json: is it a compress, tune or search run folder?"
        )
    out = write_text(
        RunLayout(run_dir).report_html, page(f"compressor report: {name or run_name(run_dir)}", kinds, sections)
    )
    if progress is not None:
        progress(f"report: {out}")
    return out


def _read(kind: str, path: Path) -> dict:
    """The JSON of ``path``, refused in one line when it is not valid JSON or not a ``kind`` report."""
    data = load_json_file(path, str(path), limit=RUN_FILE_BYTES)
    check_shape(kind, path, data)
    return data
