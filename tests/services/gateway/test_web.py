"""The web page at `/`, driven in headless Chromium against the real gateway.

Needs Debian's `chromium` (/usr/bin/chromium) and PyPI `playwright` (no browser download): CI installs both.
A missing browser fails the test with a clear message instead of skipping it.

The stack (four services as real processes on free ports, small demo index) is `tests.helpers.shared_stack()`.
`IMGSEARCH_WEB_URL=http://127.0.0.1:PORT/` points the test at an already running gateway instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.paths import REPO

CHROMIUM = Path(os.environ.get("IMGSEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHOTO = REPO / "services" / "static" / "samples" / "person-dog-horse.jpg"
SCREENSHOT = REPO / "docs" / "screenshot.png"
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    override = os.environ.get("IMGSEARCH_WEB_URL")
    if override:
        yield override.rstrip("/") + "/"
        return
    from tests.helpers import shared_stack

    yield shared_stack().gateway_url.rstrip("/") + "/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it (Debian: apt-get install -y chromium) "
            "or set IMGSEARCH_CHROMIUM to its path",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("PyPI package `playwright` is missing: pip install playwright==1.65.2", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class PageWatch:
    """Collects what a page did that it should not: console errors, page errors, requests off the origin."""

    def __init__(self, page: Any, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []
        self.searches: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("request", self._request)
        self.expected_console: list[str] = []

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(s in msg.text for s in self.expected_console):
            self.problems.append(f"console error: {msg.text}")

    def _request(self, req: Any) -> None:
        url = req.url
        if url.startswith(("data:", "blob:")):
            return
        if not url.startswith(self.origin):
            self.problems.append(f"request off the origin: {url}")
        if urlsplit(url).path.endswith("/v1/search"):
            self.searches.append(url)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def _no_horizontal_overflow(page: Any) -> bool:
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth "
            "&& document.body.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def _save_for_docs(src: Path, dest: Path) -> None:
    """The README's copy of a screenshot: 256 colours keep it small (about a third of the size)."""
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        small.save(dest, optimize=True)


def _cards_ok(page: Any) -> int:
    """Every result card shows a title, a category and a score; returns how many there are."""
    cards = page.get_by_test_id("result")
    n = cards.count()
    for i in range(n):
        card = cards.nth(i)
        assert card.locator(".card-title").inner_text().strip()
        assert card.locator(".cat").inner_text().strip()
        assert "score" in card.locator(".score").inner_text()
        assert card.get_by_role("button", name="More like").count() == 1
    return n


def _images_text(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _enter(page: Any, test_id: str, text: str) -> None:
    """Types `text` into a field and commits it with Enter (its change event)."""
    page.get_by_test_id(test_id).fill(text)
    page.get_by_test_id(test_id).press("Enter")


def _filtered_search(page: Any, act: Callable[[], None]) -> dict[str, Any]:
    """The answer of the search that `act` starts, once the page shows it."""
    from playwright.sync_api import expect

    with page.expect_response(lambda r: "/v1/search" in r.url) as info:
        act()
    expect(page.locator("body")).not_to_have_class("busy")
    body: dict[str, Any] = info.value.json()
    return body


def _listing_filters(page: Any, base_url: str) -> None:
    """Brand, highest price and stock (issue 28) become the search's filter, every card passes it, each card
    shows how many images its product has, and the URL keeps the filters across a reload."""
    from playwright.sync_api import expect

    _filtered_search(page, lambda: _enter(page, "brand", "Mori"))
    priced = _filtered_search(page, lambda: _enter(page, "max-price", "15000"))["items"][0]["results"]
    expect(page.get_by_test_id("result")).to_have_count(len(priced))
    assert page.get_by_test_id("sold-out").count() == sum(h["attrs"]["in_stock"] is False for h in priced)
    body = _filtered_search(page, lambda: page.get_by_test_id("in-stock").check())
    sent = parse_qs(urlsplit(page.url).query)
    assert sent == {"brand": ["Mori"], "max_price": ["15000"], "in_stock": ["1"]}, sent
    results = body["items"][0]["results"]
    assert results, body["items"][0]
    for hit in results:
        assert hit["attrs"]["brand"] == "Mori" and hit["attrs"]["price"] <= 15000 and hit["attrs"]["in_stock"] is True
    expect(page.get_by_test_id("result")).to_have_count(len(results))
    assert page.get_by_test_id("images").all_inner_texts() == [_images_text(h["images"]) for h in results]
    assert {h["images"] for h in results} <= {1, 2}  # the demo: some products have a shopper's photo too
    expect(page.get_by_test_id("sold-out")).to_have_count(0)  # in stock only

    page.reload()
    expect(page.get_by_test_id("brand")).to_have_value("Mori")
    expect(page.get_by_test_id("max-price")).to_have_value("15000")
    expect(page.get_by_test_id("in-stock")).to_be_checked()
    with page.expect_request(lambda r: "/v1/search" in r.url) as again:
        page.set_input_files('[data-testid="upload"]', str(PHOTO))
    query = parse_qs(urlsplit(again.value.url).query)
    assert query["filter"] == ['brand = "Mori" AND price <= 15000 AND in_stock = true'], query
    expect(page.get_by_test_id("result").first).to_be_visible()


def test_web_page(browser: Any, base_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = PageWatch(page, _origin(base_url))

    # --- the page loads, with its own assets only
    resp = page.goto(base_url)
    assert resp is not None and resp.ok, f"GET / -> {resp.status if resp else 'no response'}"
    expect(page.get_by_role("heading", name="imgsearch")).to_be_visible()
    upload = page.get_by_test_id("upload")
    expect(upload).to_have_count(1)

    # --- upload a real photo: boxes appear, each with label and score
    page.set_input_files('[data-testid="upload"]', str(PHOTO))
    boxes = page.get_by_test_id("box")
    expect(boxes.first).to_be_visible()
    n_boxes = boxes.count()
    assert n_boxes >= 1
    assert page.locator("#photo").evaluate("img => img.naturalWidth") > 0
    for i in range(n_boxes):
        label = boxes.nth(i).get_attribute("aria-label") or ""
        assert label and "similar" in label, label
        assert boxes.nth(i).locator(".tag").inner_text().strip()
    search_url = watch.searches[-1]
    assert "k=10" in search_url and "box=" not in search_url
    # shop the look (#15): the person is drawn as its garments, each box with its kind
    kinds = {boxes.nth(i).locator(".tag").inner_text().split()[0] for i in range(n_boxes)}
    assert kinds == {"top", "bottom", "footwear"}, kinds

    # timings per stage and the index version are shown
    meta = page.get_by_test_id("meta")
    for stage in ("decode", "detect", "embed", "search", "total"):
        expect(meta).to_contain_text(stage)
    expect(page.get_by_test_id("index-version")).not_to_have_text("")

    # --- clicking a box shows its similar items as a grid of cards with thumbnails
    target = boxes.first
    target.click()
    expect(target).to_have_attribute("aria-pressed", "true")
    results = page.get_by_test_id("result")
    expect(results.first).to_be_visible()
    assert _cards_ok(page) >= 1
    # a garment's results title names the categories its kind was searched among
    expect(page.locator("#results-title")).to_contain_text(re.compile(r"Similar to (top|bottom|footwear) in \w.*, "))
    # thumbnails really load from the gateway
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=result] img')].some(i => i.complete && i.naturalWidth > 0)"
    )

    page.screenshot(path=str(tmp_path / "screenshot.png"), full_page=True)
    if os.environ.get("IMGSEARCH_UPDATE_SCREENSHOT"):  # a test run must not change tracked files by default
        _save_for_docs(tmp_path / "screenshot.png", SCREENSHOT)

    # --- keyboard: a box is focusable and Enter/Space select it
    first = boxes.first
    first.focus()
    page.keyboard.press("Enter")
    expect(first).to_have_attribute("aria-pressed", "true")
    if n_boxes > 1:
        boxes.nth(1).focus()
        page.keyboard.press(" ")
        expect(boxes.nth(1)).to_have_attribute("aria-pressed", "true")
        expect(first).to_have_attribute("aria-pressed", "false")

    # --- "more like this" searches by catalog item id
    with page.expect_response(lambda r: "/similar" in r.url) as similar_info:
        results.first.get_by_role("button", name="More like").click()
    similar = similar_info.value
    assert similar.ok, f"{similar.url} -> {similar.status}"
    assert urlsplit(similar.url).path.split("/")[-3] == "items"
    expect(page.locator("#results-title")).to_contain_text("More like")
    expect(results.first).to_be_visible()
    assert _cards_ok(page) >= 1

    # --- a category chip re-runs the search with the category, and the page's URL keeps it
    boxes.first.click()
    with page.expect_request(lambda r: "/v1/search" in r.url and "category=Bag" in r.url):
        page.get_by_role("button", name="Bag", exact=True).click()
    expect(page.get_by_role("button", name="Bag", exact=True)).to_have_attribute("aria-pressed", "true")
    assert parse_qs(urlsplit(page.url).query)["category"] == ["Bag"]
    expect(page.locator("body")).not_to_have_class("busy")
    expect(boxes.first).to_be_visible()
    for cat in page.locator("[data-testid=result] .cat").all_inner_texts():
        assert cat == "Bag", cat
    with page.expect_request(lambda r: "/v1/search" in r.url and "category" not in r.url):
        page.get_by_role("button", name="All", exact=True).click()
    expect(page.locator("body")).not_to_have_class("busy")
    assert "category" not in parse_qs(urlsplit(page.url).query)

    # --- drawing a box with the mouse searches that region, in original pixel coordinates
    photo = page.locator("#photo")
    rect = photo.bounding_box()
    assert rect is not None
    natural = photo.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    fx0, fy0, fx1, fy1 = 0.12, 0.2, 0.55, 0.85
    with page.expect_response(lambda r: "/v1/search" in r.url and "box=" in r.url) as region_info:
        page.mouse.move(rect["x"] + fx0 * rect["width"], rect["y"] + fy0 * rect["height"])
        page.mouse.down()
        for step in range(1, 11):
            t = step / 10
            page.mouse.move(
                rect["x"] + (fx0 + t * (fx1 - fx0)) * rect["width"],
                rect["y"] + (fy0 + t * (fy1 - fy0)) * rect["height"],
            )
        page.mouse.up()
    region = region_info.value
    assert region.ok, f"{region.url} -> {region.status}"
    sent = [int(v) for v in parse_qs(urlsplit(region.url).query)["box"][0].split(",")]
    want = [fx0 * natural[0], fy0 * natural[1], fx1 * natural[0], fy1 * natural[1]]
    assert all(abs(s - w) <= 0.02 * max(natural) for s, w in zip(sent, want, strict=True)), (sent, want)
    assert 0 <= sent[0] < sent[2] <= natural[0] and 0 <= sent[1] < sent[3] <= natural[1]
    expect(page.locator("#clear-region")).to_be_visible()
    expect(boxes).to_have_count(len(region.json()["items"]))
    expect(results.first).to_be_visible()
    assert _cards_ok(page) >= 1

    _listing_filters(page, base_url)

    # --- a corrupt file gives a readable error, not a blank page
    alert = page.get_by_role("alert")
    watch.expected_console.append("Failed to load resource")
    page.set_input_files(
        '[data-testid="upload"]',
        files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff\xe0 not really a jpeg"}],
    )
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("Search failed")
    expect(alert).to_contain_text("HTTP 4")
    expect(page.get_by_role("heading", name="imgsearch")).to_be_visible()

    # --- a network failure is a readable error too
    page.route("**/v1/search*", lambda route: route.abort("connectionrefused"))
    page.set_input_files('[data-testid="upload"]', str(PHOTO))
    expect(alert).to_contain_text("Could not reach the search service")
    page.unroute("**/v1/search*")

    # --- a backend outage (503) reads as such
    page.route(
        "**/v1/search*",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body='{"error": "embedder unavailable"}'
        ),
    )
    page.set_input_files('[data-testid="upload"]', str(PHOTO))
    expect(alert).to_contain_text("not available")
    expect(alert).to_contain_text("embedder unavailable")
    page.unroute("**/v1/search*")

    # --- recovers: a photo dropped on the drop zone works and clears the error
    transfer = page.evaluate_handle(
        """async (src) => {
            const blob = await (await fetch(src)).blob();
            const dt = new DataTransfer();
            dt.items.add(new File([blob], "dropped.jpg", {type: blob.type}));
            return dt;
        }""",
        "static/samples/dog-bicycle.jpg",
    )
    searches_before = len(watch.searches)
    with page.expect_response(lambda r: "/v1/search" in r.url):
        page.locator("#drop").dispatch_event("drop", {"dataTransfer": transfer})
    expect(boxes.first).to_be_visible()
    expect(alert).to_be_hidden()
    assert len(watch.searches) == searches_before + 1, watch.searches[searches_before:]

    assert not watch.problems, watch.problems
    context.close()


def test_web_page_phone_width(browser: Any, base_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watch = PageWatch(page, _origin(base_url))
    page.goto(base_url)
    assert _no_horizontal_overflow(page)

    # a sample photo, picked by tapping it: a lone item on a plain background, which the detector
    # does not find, so the gateway searches the whole photo and the page says so
    with page.expect_response(lambda r: "/v1/search" in r.url) as info:
        page.get_by_role("button", name="Sample: ankle boot").tap()
    body = info.value.json()
    assert body.get("fallback") == "whole_image" or any(
        item.get("fallback") == "whole_image" for item in body["items"]
    ), f"the ankle-boot sample is expected to take the whole-image fallback: {body['items']}"
    expect(page.locator("#notice")).to_contain_text("whole photo was searched")
    boxes = page.get_by_test_id("box")
    expect(boxes).to_have_count(1)

    # the flat-lay sample: each item on the plain background is a box of its own, searched on its own
    with page.expect_response(lambda r: "/v1/search" in r.url) as info:
        page.get_by_role("button", name="Sample: flat lay of four items").tap()
    flat = info.value.json()
    assert [item.get("source") for item in flat["items"]] == ["foreground"] * 4, flat["items"]
    expect(boxes).to_have_count(4)
    expect(page.locator("#notice")).to_contain_text("searched one by one")
    best = set()
    for i in range(4):
        boxes.nth(i).tap()
        expect(boxes.nth(i)).to_have_attribute("aria-pressed", "true")
        best.add(page.locator("[data-testid=result] .cat").first.inner_text())
    assert {"Trouser", "Bag", "Sneaker"} <= best and best & {"T-shirt/top", "Shirt"}, best

    # a photo with several detected items
    page.get_by_role("button", name="Sample: person").tap()
    expect(page.locator("#notice")).to_be_hidden()
    expect(boxes.nth(1)).to_be_visible()
    boxes.nth(1).tap()
    expect(boxes.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("result").first).to_be_visible()
    photo_box = page.locator("#photo").bounding_box()
    assert photo_box is not None and photo_box["x"] >= 0 and photo_box["x"] + photo_box["width"] <= 375

    # drawing a region by touch: switch drawing on, then drag a finger across the photo
    draw = page.get_by_role("button", name="Draw a region")
    draw.tap()
    expect(draw).to_have_attribute("aria-pressed", "true")
    # Results render below the photo on a phone and may scroll the page: measure where the photo is now.
    page.locator("#photo").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    photo_box = page.locator("#photo").bounding_box()
    assert photo_box is not None
    x0, y0 = photo_box["x"] + 0.1 * photo_box["width"], photo_box["y"] + 0.1 * photo_box["height"]
    x1, y1 = photo_box["x"] + 0.6 * photo_box["width"], photo_box["y"] + 0.9 * photo_box["height"]
    # A pointer drag (CDP touch events did not reach the page's pointer handlers in headless Chromium).
    with page.expect_response(lambda r: "/v1/search" in r.url and "box=" in r.url) as region_info:
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=8)
        page.mouse.up()
    assert region_info.value.ok
    expect(boxes).to_have_count(1)
    expect(page.get_by_test_id("result").first).to_be_visible()
    assert _no_horizontal_overflow(page), page.evaluate("() => document.documentElement.scrollWidth")
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    assert not watch.problems, watch.problems
    context.close()


def test_api_docs_render_with_the_network_cut(browser: Any, base_url: str) -> None:
    """/docs (Swagger UI) and /redoc work where no CDN can be reached: every request off the service's own
    origin is aborted, as in an air-gapped cluster."""
    from playwright.sync_api import expect

    origin = _origin(base_url)
    blocked: list[str] = []

    def only_local(route: Any) -> None:
        url = route.request.url
        if url.startswith((origin, "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", only_local)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    resp = page.goto(base_url + "docs")
    assert resp is not None and resp.ok
    expect(page.locator(".swagger-ui .opblock-summary-path", has_text="/v1/search").first).to_be_visible(
        timeout=TIMEOUT_MS
    )
    resp = page.goto(base_url + "redoc")
    assert resp is not None and resp.ok
    expect(page.get_by_role("heading", name=re.compile("imgsearch gateway")).first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("/v1/search").first).to_be_attached(timeout=TIMEOUT_MS)
    assert blocked == [], blocked
    context.close()
