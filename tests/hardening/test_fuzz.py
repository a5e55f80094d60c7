"""Schemathesis against each service's own OpenAPI document: generated requests, valid and invalid, never
get a 5xx, and every refusal is a JSON `{"error": ...}` without a stack trace.

Bounded: at most MAX_EXAMPLES cases per operation and generation mode, derandomised (same cases each run).
Needs `pip install schemathesis==4.32.5` (skipped without it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, Stack, shared_stack

pytestmark = pytest.mark.stack

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

MAX_EXAMPLES = 40
SERVICES = ("detector", "embedder", "index", "gateway")
MODES = ("positive", "negative")


@pytest.fixture(scope="module")
def stack() -> Stack:
    return shared_stack()


def _known_item_ids(stack: Stack) -> list[str]:
    """Real catalog ids, so that item operations are exercised past the 404."""
    resp = httpx.post(
        stack.url("index") + "/v1/query", json={"vectors": [[1.0] * _dim(stack)], "k": 5}, trust_env=False, timeout=30
    )
    return [hit["item_id"] for hit in resp.json()["results"][0]]


def _dim(stack: Stack) -> int:
    return int(httpx.get(stack.url("index") + "/readyz", trust_env=False).json()["index"]["dim"])


def _strategy(op: Any, mode: str, item_ids: list[str]) -> Any:
    st = hypothesis.strategies
    generation_mode = schemathesis.GenerationMode(mode)
    generated = op.as_strategy(generation_mode=generation_mode)
    if "{item_id}" not in op.path or mode != "positive":
        return generated
    with_real_id = st.sampled_from(item_ids).flatmap(
        lambda item_id: op.as_strategy(generation_mode=generation_mode, path_parameters={"item_id": item_id})
    )
    return st.one_of(generated, with_real_id)


def _fuzz_operation(op: Any, mode: str, base: str, item_ids: list[str], codes: Counter[int]) -> list[str]:
    """Run one operation's generated cases; return a description of each bad answer."""
    problems: list[str] = []
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}  # reach the admin code, not only the guard

    @hypothesis.given(case=_strategy(op, mode, item_ids))
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case: Any) -> None:
        resp = case.call(base_url=base, headers=headers, timeout=60)
        codes[resp.status_code] += 1
        if resp.status_code >= 500:
            problems.append(f"{resp.status_code} {resp.text[:200]!r} for {case.as_curl_command()}")
        elif resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            if not (isinstance(body, dict) and set(body) == {"error"}) or "Traceback" in resp.text:
                problems.append(f"{resp.status_code} not a plain JSON error: {resp.text[:200]!r}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing to negate (an operation without parameters or body)
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_generated_requests_never_get_a_5xx_or_a_stack_trace(stack: Stack, service: str) -> None:
    base = stack.url(service)
    spec = httpx.get(base + "/openapi.json", trust_env=False).json()
    schema = schemathesis.openapi.from_dict(spec)
    item_ids = _known_item_ids(stack)
    codes: Counter[int] = Counter()
    problems: dict[str, list[str]] = {}
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        for mode in MODES:
            found = _fuzz_operation(op, mode, base, item_ids, codes)
            if found:
                problems[f"{op.label} ({mode})"] = found[:3]
    assert operations >= 4
    assert problems == {}
    assert sum(n for code, n in codes.items() if code >= 500) == 0
    assert codes[200] > 0 and sum(n for code, n in codes.items() if 400 <= code < 500) > 0, codes
    for name in SERVICES:  # the fuzzing took nobody down
        assert httpx.get(stack.url(name) + "/readyz", trust_env=False, timeout=10).status_code == 200
