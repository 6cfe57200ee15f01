"""Operations: each configured name bound to its handler, input schema and limits."""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from service.handlers import SPEC_ATTR, Handler, OperationSpec, RunIn
from service.queue.keys import op_code
from service.queue.store import Limits
from service.runtime.config import ConfigError, OperationSettings, Settings


@dataclass(frozen=True)
class Operation:
    """A configured operation, ready to validate input and run."""

    name: str
    handler: Handler
    spec: OperationSpec
    settings: OperationSettings
    validator: Draft202012Validator
    run_in: RunIn
    max_input_bytes: int | None
    accepts_anything: bool = False

    @functools.cached_property
    def limits(self) -> Limits:
        """The limits the queue applies at submit (settings do not change once loaded)."""
        s = self.settings
        return Limits(s.attempts, s.timeout, s.result_ttl, s.max_queue_depth, s.retry_backoff)

    def validate(self, data: Any) -> list[dict[str, str]]:
        """Every schema violation of ``data`` as ``{"path", "message"}`` (empty when valid)."""
        if self.accepts_anything:
            return []
        errors = []
        for err in sorted(self.validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            path = "/" + "/".join(str(p) for p in err.absolute_path)
            errors.append({"path": path, "message": err.message})
        return errors


# Keywords that describe but never constrain: a schema of only these accepts any JSON.
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "examples", "$comment"})


def load_handler(path: str, where: str) -> Handler:
    """Import ``module:function``."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ConfigError(f"{where}: {module_name!r} has no callable {attr!r}")
    return fn  # type: ignore[no-any-return]


def build_operations(settings: Settings) -> dict[str, Operation]:
    """Bind every configured operation; raise ConfigError naming the bad key."""
    ops: dict[str, Operation] = {}
    codes: dict[str, str] = {}
    for name, cfg in settings.operations.items():
        where = f"operations.{name}.handler"
        handler = load_handler(cfg.handler, where)
        spec = getattr(handler, SPEC_ATTR, None)
        if spec is None:
            spec = OperationSpec(input_schema={})
        try:
            Draft202012Validator.check_schema(spec.input_schema)
        except SchemaError as exc:
            raise ConfigError(f"{where}: invalid input schema: {exc.message}") from exc
        code = op_code(name)
        if code in codes:
            raise ConfigError(f"operations.{name}: id code collides with {codes[code]!r}; rename")
        codes[code] = name
        is_async = inspect.iscoroutinefunction(handler)
        run_in: RunIn = cfg.run_in or spec.run_in or ("loop" if is_async else "thread")
        ops[name] = Operation(
            name=name,
            handler=handler,
            spec=spec,
            settings=cfg,
            validator=Draft202012Validator(spec.input_schema),
            run_in=run_in,
            max_input_bytes=cfg.max_input_bytes or spec.max_input_bytes,
            accepts_anything=not (set(spec.input_schema) - ANNOTATIONS),
        )
    return ops


def by_code(ops: dict[str, Operation]) -> dict[str, Operation]:
    """Operations keyed by the code their request ids end with."""
    return {op_code(name): op for name, op in ops.items()}
