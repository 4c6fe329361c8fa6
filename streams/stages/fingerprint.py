"""The fingerprint of the processing settings an image is made under.

Two submissions of the same bytes are the same work only when the settings that shape the
result are the same: the stages' parameters (variants, formats, qualities, profiles, models,
thresholds) and what the submission asked for. Fetch's politeness settings do not change a
pixel, so they are left out.
"""

from __future__ import annotations

import hashlib
import json

import msgspec

from schemas.events import Request
from streams.stages.settings import StageSettings


def fingerprint(settings: StageSettings, request: Request) -> str:
    """16 hex digits; equal exactly when the settings and the request are."""
    # Keys sorted: settings equal to pydantic (mappings written in another order) are equal.
    shaping = settings.model_dump(mode="json", exclude={"fetch"}, by_alias=True)
    asked = msgspec.to_builtins(msgspec.structs.replace(request, force=False))
    text = json.dumps([shaping, asked], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
