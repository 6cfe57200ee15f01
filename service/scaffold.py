"""``acceptd new-operation NAME``: a handler module with its input schema, and its config stanza."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

TEMPLATE = '''"""The {name} operation."""

from __future__ import annotations

from typing import Any

from service.handlers import Context, RejectedInput, operation

INPUT_SCHEMA: dict[str, Any] = {{
    "type": "object",
    "required": ["text"],
    "properties": {{"text": {{"type": "string", "examples": ["hello"]}}}},
    "additionalProperties": False,
}}


@operation(input_schema=INPUT_SCHEMA, summary="{summary}")
async def {func}(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    """Replace with the work: report progress, return JSON, or raise RejectedInput."""
    await ctx.progress(50, "working")
    if not data["text"].strip():
        raise RejectedInput("text must not be blank")
    return {{"text": data["text"].upper()}}
'''

NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def new_operation(name: str, package: str, root: Path) -> tuple[Path, str]:
    """Write ``root/package/<module>.py`` (and the package's ``__init__.py``); the path written
    and the ``config.yaml`` stanza that serves it. Never overwrites a file."""
    if not NAME.match(name):
        raise ValueError("the name must be lowercase letters, digits and dashes, e.g. resize")
    func = name.replace("-", "_")
    if keyword.iskeyword(func) or not package.isidentifier():
        raise ValueError(f"{func!r} or {package!r} is not a usable Python name")
    folder = root / package
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").touch(exist_ok=True)
    module = folder / f"{func}.py"
    if module.exists():
        raise FileExistsError(f"{module} exists; not overwritten")
    module.write_text(TEMPLATE.format(name=name, func=func, summary=name.replace("-", " ")))
    stanza = f"operations:\n  {name}: {{handler: {package}.{func}:{func}, timeout: 60}}\n"
    return module, stanza
