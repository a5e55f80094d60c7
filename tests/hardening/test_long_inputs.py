"""Ids and categories longer than any catalog allows are refused at once (400), on the index's and the
gateway's routes, and a text a caller makes long is masked in linear time (real processes).

Before: masking an error about a 16,000-character id blocked the index's event loop for 6.5 s, and three
requests of 20,000 characters made its `/livez` take 21 s.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pytest

from imgcore.index_wire import MAX_CATEGORY_LENGTH, MAX_ITEM_ID_LENGTH
from services.common.errors import MAX_PUBLIC_CHARS, public_text
from tests.helpers import Stack, shared_stack
from tests.helpers.http import metric_value

LONG = 20_000
# A /livez that takes longer than this is the event loop blocked (a healthy one answers in milliseconds).
LIVEZ_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


def _routes(stack: Stack) -> list[tuple[str, str]]:
    """(service, path) of every public route that takes an item id or a category in its URL."""
    long_id, long_cat = quote("a?" * (LONG // 2), safe=""), "a-" * (LONG // 2)
    known = "fmnist-train-00001"
    paths = [
        f"/v1/items/{long_id}",
        f"/v1/items/{long_id}/similar",
        f"/v1/items/{long_id}/image",
        f"/v1/items/{known}/similar?category={long_cat}",
    ]
    out = [("index", p) for p in paths]
    out += [("gateway", p) for p in paths[1:]]
    return out


@pytest.mark.stack
def test_over_long_ids_and_categories_are_400_at_once_and_livez_stays_fast(stack: Stack) -> None:
    routes = _routes(stack)
    before = {name: httpx.get(stack.url(name) + "/metrics", trust_env=False).text for name in ("index", "gateway")}
    with ThreadPoolExecutor(len(routes)) as pool:
        calls = [pool.submit(httpx.get, stack.url(name) + path, trust_env=False, timeout=60) for name, path in routes]
        for name in ("index", "gateway"):  # while the long requests are being answered
            assert httpx.get(stack.url(name) + "/livez", trust_env=False, timeout=LIVEZ_TIMEOUT_S).status_code == 200
        answers = [call.result() for call in calls]
    for (name, path), resp in zip(routes, answers, strict=True):
        assert resp.status_code == 400, (name, path[:60], resp.status_code, resp.text[:200])
        error = resp.json()["error"]
        assert "longer than" in error and len(error) < 200, error[:200]
    for name, reason in (("index", "bad_item_id"), ("index", "bad_category"), ("gateway", "bad_item_id")):
        after = httpx.get(stack.url(name) + "/metrics", trust_env=False).text
        counted = metric_value(after, "imgsearch_rejections_total", reason=reason)
        assert counted > metric_value(before[name], "imgsearch_rejections_total", reason=reason)


@pytest.mark.stack
def test_longest_allowed_id_and_category_are_looked_up_not_refused(stack: Stack) -> None:
    unknown = "x" * MAX_ITEM_ID_LENGTH
    resp = httpx.get(f"{stack.url('index')}/v1/items/{unknown}", trust_env=False)
    assert resp.status_code == 404, resp.text
    known = "fmnist-train-00001"
    resp = httpx.get(f"{stack.url('index')}/v1/items/{known}/similar?category={'c' * MAX_CATEGORY_LENGTH}")
    assert resp.status_code == 404 and resp.json()["error"], resp.text


@pytest.mark.parametrize("unit", ["a?", "a-", "a.", "a:", "a/", "x.a", "a@", "1.", "a://"])
def test_public_text_of_a_long_adversarial_text_is_cut_and_still_masked(unit: str) -> None:
    message = "GET https://b.s3.example.com/k.png?X-Amz-Signature=abc failed: " + unit * 50_000
    text = public_text(message)
    assert len(text) <= MAX_PUBLIC_CHARS + 10
    assert text.startswith("GET <uri> failed: ") and "example.com" not in text
