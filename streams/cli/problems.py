"""Settings errors said to a person: which setting and what is wrong, never the value given
(pydantic quotes the input, and the input of a webhook subscription or of the S3 section
holds a secret)."""

from __future__ import annotations

from pydantic import ValidationError


def settings_problem(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = [
        f"  {'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return "the settings are not valid:\n" + "\n".join(lines)
