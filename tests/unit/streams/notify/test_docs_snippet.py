"""The verification snippet of docs/webhooks.md, run as a receiver would run it, accepts
what the notify worker signs and refuses tampering, another secret and an old request."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from processors import webhooks
from tests.unit.streams.notify import events

DOC = Path(__file__).resolve().parents[4] / "docs" / "webhooks.md"


def _snippet() -> Callable[[bytes, bytes, str, str], bool]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    (code,) = [b for b in blocks if "def verify(" in b]
    scope: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), scope)
    return scope["verify"]  # type: ignore[return-value]


def test_the_documented_check_accepts_our_signature_and_refuses_the_rest() -> None:
    verify = _snippet()
    event = webhooks.from_done(events.done())
    assert event is not None
    now = int(time.time())
    sent = webhooks.headers(event, b"the-secret", now)
    stamp, signature = sent["X-Pixelfleet-Timestamp"], sent["X-Pixelfleet-Signature"]
    assert verify(b"the-secret", event.body, stamp, signature)
    assert not verify(b"the-secret", event.body + b" ", stamp, signature)
    assert not verify(b"another", event.body, stamp, signature)
    old = webhooks.headers(event, b"the-secret", now - 3600)
    stale = (old["X-Pixelfleet-Timestamp"], old["X-Pixelfleet-Signature"])
    assert not verify(b"the-secret", event.body, *stale)
