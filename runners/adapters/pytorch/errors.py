"""Python exceptions to the suite's neutral error kinds (spec/ADAPTERS.md)."""
from __future__ import annotations

from typing import Any


class Unsupported(Exception):
    """A step or feature this adapter cannot run on this PyTorch."""


def kind_of(error: BaseException) -> str:
    message = str(error)
    if isinstance(error, Unsupported):
        return "unsupported"
    if isinstance(error, AssertionError):
        if "has already been applied" in message:
            return "already_applied"
        return "assertion"
    if isinstance(error, RuntimeError) and "Composable distributed API implementations cannot modify" in message:
        return "fqn_modified"
    if isinstance(error, RuntimeError) and message.startswith("FSDP state has already been lazily initialized"):
        return "lazy_init"
    if isinstance(error, NotImplementedError):
        return "not_implemented"
    if isinstance(error, (ValueError, TypeError, KeyError, IndexError, AttributeError)):
        return "invalid_argument"
    return "runtime_error"


def error_json(error: BaseException, step: str) -> dict[str, Any]:
    """Protocol 2's error: kind, message and the failing step's path; the runner derives the phase."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, KeyError):
        message = f"KeyError: {message!r}"
    return {"kind": kind_of(error), "message": str(message), "step": step}
