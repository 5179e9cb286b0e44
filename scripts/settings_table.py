"""README's table of the seed's model parameters, made from their declarations: each row's flag
from the ``upsample-prompts`` command, its variable from its name, its default and "what it does"
from :mod:`cosmos_workflow.settings` (the description ``--help`` shows). The README holds this
script's output; ``tests/unit/test_settings_table.py`` checks that they agree.

    python scripts/settings_table.py        # prints the table (markdown)
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup, TyperOption

from cosmos_workflow.cli import app
from cosmos_workflow.cli.options import OPTIONS, setting_of
from cosmos_workflow.settings import UpsampleSettings

#: the table's rows: the seed's model parameters, then the refiner's (issue 25)
ROWS = (
    "offload_prompt_upsampler",
    "num_gpu",
    "cuda_devices",
    "model",
    "preset",
    "system_prompt_file",
    "system_prompt",
    "ascii_only",
    "encoder_tokenizer",
    "encoder_limit",
)
HEADER = (
    "| setting (`[upsample]`, keyword) | flag | variable | default | what it does |\n|---|---|---|---|---|"
)


def flags() -> dict[str, str]:
    """Each ``[upsample]`` setting's flags in ``upsample-prompts``, as the table shows them."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands["upsample-prompts"]
    shown: dict[str, str] = {}
    for param in command.params:
        if isinstance(param, TyperOption) and param.name in OPTIONS:
            setting = next(n for n, f in UpsampleSettings.model_fields.items() if f is setting_of(param.name))
            switch = "/".join([*param.opts, *param.secondary_opts]) if param.secondary_opts else None
            shown[setting] = f"`{switch}`" if switch else ", ".join(f"`{opt}`" for opt in param.opts)
    return shown


def default(setting: str) -> str:
    value = UpsampleSettings.model_fields[setting].default
    if value is None:
        return "unset"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def table() -> str:
    given = flags()
    rows = [
        f"| `{name}` | {given.get(name, 'none')} | `COSMOS_{name.upper()}` | {default(name)} | "
        f"{UpsampleSettings.model_fields[name].description} |"
        for name in ROWS
    ]
    return "\n".join([HEADER, *rows])


if __name__ == "__main__":
    print(table())
