"""The console's actions driven with the keyboard alone in Chromium (for test_console.py):
each opened from its button, confirmed in its dialog after reading what it will do, and
its effect checked where it happens (the record, MinIO, the dead-letter list)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streams.app.settings import Settings
from streams.io import clients
from tests.support.catalog_kit import API_KEY, CatalogProcess

DONE_TIMEOUT_MS = 240_000
Shoot = Any  # test_console._shoot: (page, folder, name, *, full) -> None


def wait_for(catalog: CatalogProcess, path: str, test: Callable[[Any], bool]) -> Any:
    """The answer of a GET once it is 200 and passes `test`; fails after 60 s."""
    deadline = time.monotonic() + 60
    body: Any = None
    while time.monotonic() < deadline:
        status, body = catalog.get(path)
        if status == 200 and test(body):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{path}: {body}")


def tab_to(page: Any, selector: str) -> None:
    for _ in range(80):  # bounded: round a dialog or a page a few times
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def _confirm(
    page: Any, shoot: Shoot | None = None, shots: Path | None = None, name: str = ""
) -> tuple[str, str]:
    """In the open dialog: what it says it will do, then Confirm with the keyboard; what it
    says it did. The dialog is left open, focus on its Close button."""
    page.wait_for_selector("dialog.act[open]")
    page.wait_for_function(
        "() => !document.querySelector('#act-confirm').disabled", timeout=120_000
    )
    said = page.locator("#act-text").inner_text()
    if shoot is not None and shots is not None:
        shoot(page, shots, name, full=False)  # the window, where the dialog is
    tab_to(page, "#act-confirm")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('#act-result')?.classList.contains('ok')", timeout=120_000
    )
    done = page.locator("#act-result").inner_text()
    assert page.evaluate("() => document.activeElement?.id") == "act-cancel"
    return said, done


def replay_with_the_keyboard(page: Any, shoot: Shoot, shots: Path) -> None:
    page.locator(".gallery .card a").last.click()
    page.wait_for_selector("#act-replay")
    page.wait_for_selector(".badge.s-done")
    before = page.locator("main p:has(.badge)").first.inner_text()
    page.select_option("#act-stage", "compress")
    tab_to(page, "#act-replay")
    page.keyboard.press("Enter")
    said, done = _confirm(page, shoot, shots, "replay")
    assert "compress input of image" in said and "run again" in said, said
    assert done.startswith("Sent as replay p-") and "from compress" in done, done
    page.keyboard.press("Enter")  # Close
    page.wait_for_selector("dialog.act", state="detached")
    # The page follows the new run: a newer record, done again.
    page.wait_for_function(
        "(old) => { const p = document.querySelector('main p:has(.badge)');"
        " return p && p.innerText !== old && p.querySelector('.badge.s-done'); }",
        arg=before,
        timeout=DONE_TIMEOUT_MS,
    )


def delete_with_the_keyboard(
    page: Any, catalog: CatalogProcess, image_id: str, fleet: Settings
) -> None:
    page.goto(f"{catalog.url}/#/image/{image_id}")
    page.wait_for_selector("#act-delete")
    tab_to(page, "#act-delete")
    page.keyboard.press("Enter")
    said, done = _confirm(page)
    assert f"Erases image {image_id} for good" in said and "cannot be undone" in said, said
    assert done.startswith("Deleted 1 image"), done
    page.keyboard.press("Enter")  # Close: back to the gallery
    page.wait_for_function("() => location.hash === '#/images'")
    s3 = clients.s3(fleet.s3)
    b = fleet.buckets
    left = [
        o.object_name
        for bucket in (b.incoming, b.work, b.images, b.quarantine)
        for o in s3.list_objects(bucket, recursive=True)
        if image_id in (o.object_name or "")
    ]
    assert left == []
    wait_for(catalog, f"/v1/images?ids={image_id}", lambda body: body["images"] == [])


def redrive_with_the_keyboard(page: Any, shoot: Shoot, shots: Path) -> None:
    page.goto(page.url.split("#")[0] + "#/fleet")
    page.wait_for_selector("button.show-letters[data-stage=fetch]", timeout=120_000)
    tab_to(page, "button.show-letters[data-stage=fetch]")
    page.keyboard.press("Enter")
    page.wait_for_selector("button.redrive", timeout=60_000)
    tab_to(page, "button.redrive")
    page.keyboard.press("Enter")
    said, done = _confirm(page, shoot, shots, "redrive")
    assert "Re-sends dead letter" in said and "once" in said, said
    assert done.startswith("Re-sent as redrive r-"), done
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog.act", state="detached")
    page.wait_for_selector("text=re-sent by r-")


def read_only_key_sees_no_action(page: Any) -> None:
    page.click("#forget-key")
    page.fill("#key-input", API_KEY)
    page.keyboard.press("Enter")
    page.wait_for_selector("tr[data-stage=validate]")
    page.click("a[data-page=images]")
    page.locator(".gallery .card a").first.click()
    page.wait_for_selector("text=This key may read only")
    assert page.locator("#act-replay, #act-delete").count() == 0
