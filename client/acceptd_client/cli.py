"""``acceptd-client``: call an operation and watch it live, or look up and cancel requests.

The live line (queue position, ETA, then a progress bar) goes to stderr; stdout gets only the
result JSON, so ``acceptd-client call echo '{}' | jq`` works. Exit 0 on success, 1 with the
problem on stderr when the request or the call failed, 130 when interrupted (the request goes
on; its id is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from acceptd_client.core import Event, Monitor
from acceptd_client.errors import AcceptdError
from acceptd_client.sync import Client, Request

DEFAULT_URL = "http://127.0.0.1:8080"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acceptd-client", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("ACCEPTD_URL", DEFAULT_URL),
                        help="the service's base URL (env ACCEPTD_URL)")  # fmt: skip
    parser.add_argument("--key", default=os.environ.get("ACCEPTD_API_KEY"),
                        help="API key (env ACCEPTD_API_KEY)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop waiting after N seconds (the request goes on)")  # fmt: skip
    parser.add_argument("--quiet", "-q", action="store_true", help="no live line")
    commands = parser.add_subparsers(dest="command", required=True)
    call = commands.add_parser("call", help="submit, show progress, print the result")
    call.add_argument("operation")
    call.add_argument("input", help="the input as JSON, or @file to read it from a file")
    call.add_argument("--priority", type=int, default=None)
    call.add_argument("--idempotency-key", default=None)
    call.add_argument("--queue-timeout", type=float, default=None)
    for name, what in (
        ("watch", "follow a request, print its result"),
        ("get", "print a request's status monitor"),
        ("cancel", "cancel a request, print its monitor"),
    ):
        commands.add_parser(name, help=what).add_argument("id")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit code."""
    args = _parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    try:
        with Client(args.url, api_key=args.key) as client:
            if args.command == "get":
                return _print(out, client.request(args.id).monitor)
            if args.command == "cancel":
                return _print(out, client.request(args.id).cancel())
            if args.command == "call":
                request = client.submit(
                    args.operation,
                    _read_input(args.input),
                    priority=args.priority,
                    idempotency_key=args.idempotency_key,
                    queue_timeout=args.queue_timeout,
                )
            else:
                request = client.request(args.id)
            return _follow(request, args.timeout, out, err, live=not args.quiet)
    except AcceptdError as exc:
        err.print_json(data=exc.problem or {"detail": str(exc)})
        return 1
    except KeyboardInterrupt:
        return 130


def _read_input(text: str) -> Any:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SystemExit(f"acceptd-client: the input is not JSON: {exc}") from None


def _print(out: Console, data: Any) -> int:
    if out.is_terminal:
        out.print_json(data=data)
    else:  # piped: one line of plain JSON
        print(json.dumps(data, ensure_ascii=False))
    return 0


def _follow(request: Request, timeout: float | None, out: Console, err: Console, live: bool) -> int:
    """Wait with a live line on stderr, then print the result (or raise its problem)."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not live,
    )
    task = progress.add_task(describe(request.monitor), total=None)

    def on_event(event: Event) -> None:
        _show(progress, task, request.monitor)

    try:
        with progress:
            _show(progress, task, request.monitor)
            request.wait(timeout=timeout, on_event=on_event)
    except KeyboardInterrupt:
        err.print(f"interrupted; the request goes on: {request.id}")
        raise
    return _print(out, request.result())


def _show(progress: Progress, task: TaskID, monitor: Monitor) -> None:
    done = monitor.get("progress") or {}
    percent = done.get("percent")
    total = 100.0 if percent is not None or monitor.get("status") == "succeeded" else None
    completed = 100.0 if monitor.get("status") == "succeeded" else float(percent or 0)
    progress.update(task, description=describe(monitor), total=total, completed=completed)


def describe(monitor: Monitor) -> str:
    """The live line's text: status, then the queue position and ETA, or the progress message."""
    parts = [f"{monitor.get('operation', '')} {monitor.get('id', '')[:10]}…",
             str(monitor.get("status", ""))]  # fmt: skip
    if monitor.get("status") == "queued" and monitor.get("position") is not None:
        parts.append(f"position {monitor['position']}")
    eta = monitor.get("eta_seconds")
    if eta is not None and monitor.get("status") in ("queued", "running"):
        parts.append(f"ETA {eta:.0f} s")
    message = (monitor.get("progress") or {}).get("message")
    if message:
        parts.append(str(message))
    return " · ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
