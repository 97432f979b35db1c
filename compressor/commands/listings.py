"""Listings: the reference architectures and the recipe presets and step types."""

from __future__ import annotations

import click

from compressor.commands.app import cli, emit


@cli.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(as_json):
    """List the reference architectures and their arguments."""
    from compressor.models import MODELS

    data = {
        name: {"summary": s.summary, "input_shape": list(s.default_input_shape), "params": s.params}
        for name, s in MODELS.items()
    }
    text = "\n".join(
        f"{name:14s} {d['summary']}\n" + "".join(f"    {k}: {v}\n" for k, v in d["params"].items())
        for name, d in data.items()
    )
    emit(data, as_json, text.rstrip())


@cli.command("recipes")
@click.option("--json", "as_json", is_flag=True)
def recipes_cmd(as_json):
    """List the built-in recipe presets and the step types with their parameters."""
    from compressor.recipes import load_recipe, preset_names, step_types
    from compressor.recipes.finetune import FineTuneParams

    presets = {name: load_recipe(name).description for name in preset_names()}
    steps = {name: s.describe() for name, s in step_types().items()}
    shared = set(FineTuneParams.model_fields)
    lines = ["presets:"] + [f"  {n:18s} {d}" for n, d in presets.items()] + ["", "step types:"]
    for name, s in steps.items():
        lines.append(f"  {name:18s} [{s['kind']}] {s['summary']}")
        lines += [
            f"      {k} = {v['default']!r}  {v['description']}".rstrip()
            for k, v in s["params"].items()
            if k not in shared or v["default"] != FineTuneParams.model_fields[k].default
        ]
    lines += ["", "fine-tuning options of every [train] step (defaults; a step's own defaults are listed above):"]
    lines += [
        f"      {k} = {f.default!r}  {f.description or ''}".rstrip() for k, f in FineTuneParams.model_fields.items()
    ]
    emit({"presets": presets, "steps": steps}, as_json, "\n".join(lines))
