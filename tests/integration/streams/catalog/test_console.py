"""The web console against the real stack: its endpoints over records on the topic, then the
pages themselves in Debian's Chromium (driven by Playwright), with the image stages running:
two uploads and one URL reach done, a near-duplicate is opened, the filters work, no
console error, no broken image, every control reachable with Tab. Then, with the key that
may act and the keyboard alone, an image is replayed and another deleted (each confirmed in
its dialog), a dead letter is redriven from the Fleet page, and a key that may only read is
shown no action.

Set PIXELFLEET_CONSOLE_SCREENSHOTS to a folder (docs/console) to keep the screenshots.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from processors.compress import VariantSpec
from schemas.events import ErrorInfo
from streams.app.registry import builtin
from streams.app.settings import Settings
from tests.conftest import Stack
from tests.integration.streams.catalog.conftest import Launch
from tests.integration.streams.catalog.console_actions import (
    delete_with_the_keyboard,
    read_only_key_sees_no_action,
    redrive_with_the_keyboard,
    replay_with_the_keyboard,
    wait_for,
)
from tests.integration.streams.fetch.test_fetch_stage import fetch_fleet
from tests.integration.streams.runner.fleet import init_fleet, start_thread
from tests.support.catalog_kit import (
    ACTING_KEY,
    HEADERS,
    fake_record,
    linked_to,
    publish,
)
from tests.support.http_servers import LoopbackServer
from tests.support.photos import big_photo, encode

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
STAGES = ("fetch", "validate", "categorize", "enhance", "compress")
DESKTOP: Any = {"width": 1280, "height": 900}
PHONE: Any = {"width": 390, "height": 844}
DONE_TIMEOUT_MS = 240_000


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as running:
        yield running


def test_the_list_and_fleet_endpoints_over_the_topic(
    catalog_fleet: Settings, launch: Launch
) -> None:
    rng = random.Random(5)
    records = [fake_record(f"img-{n:03d}", rng) for n in range(120)]
    error = ErrorInfo(
        stage="validate", reason_class="too_small", reason="x", at="2026-12-02T08:00:00Z"
    )
    records += [fake_record(f"bad-{n}", rng, status="rejected") for n in range(3)]
    records[-3:] = [msgspec.structs.replace(r, errors=[error]) for r in records[-3:]]
    publish(catalog_fleet, records)
    catalog = launch(catalog_fleet)
    wait_for(catalog, "/v1/stats", lambda s: s["images"] == 123)

    seen: list[str] = []
    cursor = ""
    for _ in range(10):  # 123 images at 50 a page: three pages
        _, page = catalog.get(f"/v1/images?limit=50{cursor}")
        seen += [i["image_id"] for i in page["images"]]
        assert all("X-Amz-Signature=" in i["thumb_url"] for i in page["images"])
        if page["cursor"] is None:
            break
        cursor = f"&cursor={page['cursor']}"
    assert sorted(seen) == sorted(r.image_id for r in records)
    _, rejected = catalog.get("/v1/images?status=rejected")
    assert {i["image_id"] for i in rejected["images"]} == {"bad-0", "bad-1", "bad-2"}

    _, fleet = catalog.get("/v1/fleet")
    assert [s["stage"] for s in fleet["stages"]] == [
        "fetch",
        "validate",
        "categorize",
        "enhance",
        "restore",
        "compress",
    ]
    assert all(s["lag"] == 0 and s["p95_s"] is None for s in fleet["stages"])
    assert fleet["dead_letters"] == [{"stage": "validate", "reason": "too_small", "images": 3}]
    assert fleet["facets"]["status"] == {"done": 120, "rejected": 3}
    assert catalog.get("/v1/fleet", auth=False)[0] == 401
    status, page = catalog.get("/", auth=False)
    assert status == 200 and b"pixelfleet console" in page


# --- in a browser ---------------------------------------------------------------------------


def _console_fleet(stack: Stack, prefix: str, port: int) -> Settings:
    """A fleet fetching from the test's loopback server, never routing to restore (no torch
    here), with few variants (two cores) and the original kept for the comparison."""
    base = fetch_fleet(stack, prefix, port)
    stages = base.stages.model_copy(
        update={
            "validate_": base.stages.validate_.model_copy(
                update={"upscale_below": 0.0, "denoise_above": 1000.0}
            ),
            "compress": base.stages.compress.model_copy(
                update={
                    "keep_original": True,
                    "variants": (
                        VariantSpec(name="thumbnail", longest_side=150, formats=("webp",)),
                        VariantSpec(name="preview", longest_side=500, formats=("webp", "jpeg")),
                    ),
                }
            ),
        }
    )
    return base.model_copy(update={"stages": stages})


def _watch_errors(page: Any, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page: {e}"))
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )


def _images_load(page: Any) -> None:
    """Every image on the page loaded (naturalWidth > 0) from a presigned URL."""
    page.wait_for_function("() => [...document.images].every((i) => i.complete)", timeout=30_000)
    images = page.evaluate(
        "() => [...document.images].map((i) => [i.currentSrc || i.src, i.naturalWidth])"
    )
    for src, width in images:
        assert width > 0, f"broken image {src}"
        assert "X-Amz-Signature=" in src, f"unsigned image URL {src}"


def _tab_reaches_every_control(page: Any) -> None:
    count = page.evaluate(
        """() => {
          const all = [...document.querySelectorAll('a[href], button, input, select, textarea')]
            .filter((e) => !e.hidden && !e.disabled && e.getClientRects().length > 0);
          all.forEach((e, i) => e.setAttribute('data-kb', String(i)));
          document.activeElement && document.activeElement.blur();
          return all.length;
        }"""
    )
    reached: set[str] = set()
    for _ in range(count * 2 + 10):  # bounded: twice round the page at most
        page.keyboard.press("Tab")
        mark = page.evaluate("() => document.activeElement?.getAttribute('data-kb')")
        if mark is not None:
            reached.add(mark)
        if len(reached) == count:
            break
    missing = page.evaluate(
        "(got) => [...document.querySelectorAll('[data-kb]')].filter((e) => "
        "!got.includes(e.getAttribute('data-kb'))).map((e) => e.outerHTML.slice(0, 80))",
        sorted(reached),
    )
    assert not missing, f"not reachable with Tab: {missing}"


def _shoot(page: Any, folder: Path, name: str, *, full: bool = True) -> None:
    page.evaluate("() => document.activeElement?.blur()")  # no focus ring in the pictures
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)
        page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=full)
        # Nothing wider than the window: at a phone's width the page does not scroll sideways.
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} at {label} width is {overflow} px too wide"
    page.set_viewport_size(DESKTOP)


def _upload_and_wait(page: Any, files: list[Path], urls: list[str]) -> None:
    page.goto(page.url.split("#")[0] + "#/upload")
    before = page.locator(".uploads .s-done").count()
    page.set_input_files("#u-files", [str(f) for f in files])
    page.fill("#u-title", "console test")
    page.fill("#u-keywords", "cup, test")
    page.fill("#u-urls", "\n".join(urls))
    page.click("text=Submit")
    wanted = before + len(files) + len(urls)
    page.wait_for_function(
        f"() => document.querySelectorAll('.uploads .s-done').length >= {wanted}",
        timeout=DONE_TIMEOUT_MS,
    )
    values = page.evaluate(
        "() => [...document.querySelectorAll('.uploads progress')].map((p) => p.value)"
    )
    assert values and all(v == 100 for v in values), values


def test_the_console_in_chromium(
    stack: Stack,
    unique_name: Callable[[str], str],
    server: LoopbackServer,
    launch: Launch,
    tmp_path: Path,
) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is needed: apt-get install chromium"
    from playwright.sync_api import sync_playwright

    fleet = _console_fleet(stack, unique_name("con"), server.port)
    init_fleet(fleet)
    catalog = launch(fleet)
    linked = linked_to(fleet, catalog.url)
    cup = big_photo("coffee", 1400)
    (tmp_path / "cup.jpg").write_bytes(encode(cup, "JPEG", quality=90))
    (tmp_path / "cup-small.jpg").write_bytes(encode(cup.resize((840, 600)), "JPEG", quality=70))
    (tmp_path / "rocket.jpg").write_bytes(encode(big_photo("rocket", 900), "JPEG", quality=88))
    server.serve_bytes(
        "/shop/astronaut.jpg",
        encode(big_photo("astronaut", 1000), "JPEG"),
        content_type="image/jpeg",
    )
    shots = Path(os.environ.get("PIXELFLEET_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    workers = [start_thread(linked, builtin(name, linked)) for name in STAGES]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport=DESKTOP)
            _watch_errors(page, errors)
            page.goto(catalog.url + "/")
            page.fill("#key-input", ACTING_KEY)
            page.keyboard.press("Enter")
            page.wait_for_selector("tr[data-stage=validate]")
            # One upload and one URL first, the near-duplicate and another photo after them,
            # so validate finds the first cup in the index.
            _upload_and_wait(page, [tmp_path / "cup.jpg"], [server.url("/shop/astronaut.jpg")])
            _upload_and_wait(page, [tmp_path / "cup-small.jpg", tmp_path / "rocket.jpg"], [])
            _tab_reaches_every_control(page)
            _shoot(page, shots, "upload")
            _fleet_page(page, shots)
            _a_dead_thumbnail_is_renewed(page, errors)
            near_id = _images_page(page, shots)
            _image_page(page, shots, near_id)
            _unknown_image_page(page, catalog.url, errors)
            page.goto(catalog.url + "/#/images?q=" + near_id[:20])
            page.wait_for_function("() => document.querySelectorAll('.gallery .card').length === 1")
            page.goto(catalog.url + "/#/images?q=console+test")  # the uploads' title
            _cards(page, 4)
            replay_with_the_keyboard(page, _shoot, shots)
            delete_with_the_keyboard(page, catalog, near_id, fleet)
            bad = httpx.post(
                catalog.url + "/v1/images",
                headers=HEADERS,
                json={"url": server.url("/shop/missing.jpg")},
                timeout=30,
            )
            assert bad.status_code == 202, bad.text
            redrive_with_the_keyboard(page, _shoot, shots)
            read_only_key_sees_no_action(page)
            browser.close()
    finally:
        for worker in workers:
            worker.stop()
    assert all(w.error is None for w in workers), [w.error for w in workers]
    assert not errors, errors


def _fleet_page(page: Any, shots: Path) -> None:
    page.click("a[data-page=fleet]")
    page.wait_for_function(
        "() => document.querySelector('[data-figure=done]')?.textContent === '4'",
        timeout=60_000,
    )
    lag = page.locator("tr[data-stage=validate] td").first.text_content()
    assert lag is not None and re.fullmatch(r"\d[\d,]*", lag), lag
    _tab_reaches_every_control(page)
    _shoot(page, shots, "fleet")


def _cards(page: Any, count: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('.gallery .card').length === {count}")


def _images_page(page: Any, shots: Path) -> str:
    """Uses the filters; opens the near-duplicate; its id."""
    page.click("a[data-page=images]")
    _cards(page, 4)
    _images_load(page)
    _tab_reaches_every_control(page)
    _shoot(page, shots, "images")
    page.select_option("#f-status", "done")
    page.wait_for_function("() => location.hash.includes('status=done')")
    _cards(page, 4)
    page.select_option("#f-duplicate", "near")
    page.wait_for_function("() => location.hash.includes('duplicate=near')")
    _cards(page, 1)
    near_card = page.locator(".gallery .card a").first
    near_id = near_card.locator(".id").text_content()
    assert near_id
    near_card.click()
    return str(near_id)


def _a_dead_thumbnail_is_renewed(page: Any, errors: list[str]) -> None:
    """A thumbnail whose link S3 refuses (as it refuses an expired one: 403) asks the catalog
    for a fresh link and loads. The signature is spoilt rather than waited out: the
    shortest expiry the catalog allows is a minute."""
    page.click("a[data-page=images]")
    _cards(page, 4)
    _images_load(page)
    seen = len(errors)
    first = "document.querySelector('.gallery .card img')"
    card_id = page.locator(".gallery .card .id").first.text_content()
    with page.expect_response(lambda r: "/v1/images?ids=" in r.url, timeout=30_000) as asked:
        spoilt = page.evaluate(
            f"""() => {{
              const img = {first};
              img.src = img.src.replace(/X-Amz-Signature=(.)/,
                (_, c) => `X-Amz-Signature=${{c === '0' ? '1' : '0'}}`);
              return img.src;
            }}"""
        )
    assert asked.value.status == 200
    assert [i["image_id"] for i in asked.value.json()["images"]] == [card_id]
    page.wait_for_function(
        f"(spoilt) => {first}.src !== spoilt && {first}.complete && {first}.naturalWidth > 0",
        arg=spoilt,
        timeout=30_000,
    )
    _images_load(page)
    # Only the spoilt link's refusal may be recorded.
    caused = errors[seen:]
    del errors[seen:]
    assert all("403" in e for e in caused), caused


def _unknown_image_page(page: Any, url: str, errors: list[str]) -> None:
    """An id the catalog does not know says so (a fresh submission may be on its way), and
    a stray "%" in the address still draws a page."""
    seen = len(errors)
    for typed in ("not-an-image-id", "50%"):
        page.goto(f"{url}/#/image/{typed}")
        page.wait_for_selector("text=Not in the catalog yet")
        assert page.locator("h1 .id").text_content() == typed
    # The answers this asked for were 404s, which the watch counts as errors: only those.
    caused = errors[seen:]
    del errors[seen:]
    assert caused and all("404" in e for e in caused), caused


def _image_page(page: Any, shots: Path, near_id: str) -> None:
    page.wait_for_function(f"() => location.hash === '#/image/{near_id}'")
    page.wait_for_selector("section[aria-label=Near-duplicates] .card a")
    page.wait_for_selector(".badge.s-done")
    _images_load(page)
    links = page.eval_on_selector_all("a[download]", "(all) => all.map((a) => a.href)")
    assert links and all("X-Amz-Signature=" in link for link in links)
    assert page.locator(".compare img").count() == 2
    captions = page.locator(".compare figcaption").all_text_contents()
    assert captions[0].startswith("original upload") and captions[1].startswith("finished")
    assert "X-Amz-Signature=" in (page.locator(".compare img").first.get_attribute("src") or "")
    _tab_reaches_every_control(page)
    _shoot(page, shots, "image")
    page.locator("section[aria-label=Near-duplicates] .card a").first.click()
    page.wait_for_function(f"() => !location.hash.endsWith('{near_id}')")
    page.wait_for_selector("section[aria-label=Variants] a[download]")
    page.wait_for_selector(".badge.s-done")
    _images_load(page)
