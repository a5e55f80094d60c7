"""The query log and `imgsearch replay`: sampled searches reach the store in batches (image, parameters, result
ids, versions) without changing any answer; rate 0 writes nothing; old objects are deleted; a replay against a
production gateway finds the logged answers again.

Unit tests on the record format and retention; then real gateway processes on the shared stack's backends:
one logging every search, one configured with a log but sampling none (the production gateway).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from imgcore.image import DecodeLimits, decode, plan_decode
from imgcore.storage import open_store
from services.cli.replay import item_overlaps
from services.common.decode_budget import DecodeBudget
from services.common.settings import GatewaySettings
from services.gateway import query_log as query_log_module
from services.gateway.query_log import QueryLog, batch_key, delete_expired, key_time
from services.gateway.search import SearchParams
from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import shared_stack
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.http import encode, metric_value, search
from tests.helpers.paths import PHOTOS
from tests.helpers.wait import wait_until

FLUSH_S = 1.0
OLD = datetime(2020, 1, 1, tzinfo=UTC)


def _records(root: Path) -> list[dict[str, object]]:
    store = open_store(root.as_uri())
    keys = [key for key in store.list("queries-") if key_time(key) is not None]
    lines = [line for key in keys for line in store.get_bytes(key).splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def _small(name: str, side: int) -> bytes:
    """A real photo shrunk to `side` pixels at most: kept as uploaded by the log, so a replay sends the same bytes."""
    image = Image.open(PHOTOS / name).convert("RGB")
    image.thumbnail((side, side))
    return encode(np.asarray(image), "JPEG", quality=90)


# --------------------------------------------------------------------------- units


def test_keys_carry_their_utc_time_and_retention_deletes_only_older_objects(tmp_path: Path) -> None:
    now = datetime(2026, 11, 29, 8, 30, 5, tzinfo=UTC)
    key = batch_key(now)
    assert key_time(key) == now and key != batch_key(now)  # two replicas in the same second never collide
    assert key_time("queries-notatime-ab.jsonl") is None and key_time("other.jsonl") is None
    assert key_time(key + "\n") is None and key_time(f"queries-x/{key}") is None  # the whole key, at the top
    store = open_store(tmp_path.as_uri())
    old, fresh = batch_key(now - timedelta(days=31)), batch_key(now - timedelta(days=29))
    for name in (old, fresh, "README.txt"):
        store.put_bytes(name, b"{}\n")
    assert delete_expired(store, now - timedelta(days=30)) == 1
    assert sorted(store.list()) == sorted([fresh, "README.txt"])


def _logged(data: bytes, max_side: int) -> tuple[bytes, str]:
    """What the writer keeps of an upload: itself less its metadata, else re-encoded (services/gateway/query_log)."""
    plan = plan_decode(data, DecodeLimits(), max_side)
    kept = query_log_module.kept_image(data, plan, max_side)
    return kept or query_log_module.reencoded(data, DecodeLimits(), max_side)


def test_small_uploads_are_kept_as_sent_and_large_ones_downscaled_to_jpeg() -> None:
    small = _small("person.jpg", 480)
    assert _logged(small, 480) == (small, "image/jpeg")
    large = (PHOTOS / "dog.jpg").read_bytes()  # 768 x 576
    kept, media_type = _logged(large, 0)  # 0: always as uploaded, less its metadata
    assert media_type == "image/jpeg" and len(kept) < len(large)
    assert np.array_equal(decode(kept).pixels, decode(large).pixels)
    data, media_type = _logged(large, 512)
    shrunk = Image.open(io.BytesIO(data))
    assert media_type == "image/jpeg" and shrunk.format == "JPEG" and shrunk.size == (512, 384)
    png = encode(np.zeros((600, 20, 3), np.uint8))
    assert Image.open(io.BytesIO(_logged(png, 512)[0])).size == (17, 512)


def test_item_overlap_matches_items_by_order() -> None:
    logged = [{"results": [str(i) for i in range(10)]}, {"results": ["a", "b"]}]
    same = [{"results": [{"item_id": str(i)} for i in range(10)]}, {"results": [{"item_id": "b"}, {"item_id": "a"}]}]
    assert item_overlaps(logged, same) == [1.0, 1.0]
    shifted = [{"results": [{"item_id": str(i)} for i in range(3, 13)]}]  # and the second item is missing
    assert item_overlaps(logged, shifted) == [0.7, 0.0]


def test_item_overlap_is_the_shadows_overlap_at_10() -> None:
    # A logged item with 2 results whose new answer has 4: over the longer list (2/4), as the shadow's metric.
    logged = [{"results": ["a", "b"]}, {"results": []}, {"results": ["c"]}]
    answer = [{"results": [{"item_id": i} for i in "abxy"]}, {"results": []}, {"results": []}]
    assert item_overlaps(logged, answer) == [0.5, 0.0]  # the item empty both times is left out


# --------------------------------------------------------------------------- real gateway processes


@dataclass
class Gateways:
    logging: ServiceProcess
    production: ServiceProcess
    log_dir: Path
    off_dir: Path
    old_key: str
    look_alikes: list[str]  # expired-looking names retention must not delete
    kept: list[str]  # those of them still there once the writer's retention ran (removed then: not records)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    stack = shared_stack()
    log_dir, off_dir = tmp_path_factory.mktemp("query-log"), tmp_path_factory.mktemp("query-log-off")
    old_key, extended = batch_key(OLD), batch_key(OLD)
    look_alikes = [extended, extended + ".keep", f"queries-archive/{batch_key(OLD)}"]
    for name in (old_key, *look_alikes):  # written long before the retention
        (log_dir / name).parent.mkdir(exist_ok=True)
        (log_dir / name).write_text("{}\n")
    # no detector timeout on a loaded test machine: both gateways must see the same detections
    base = [*stack.args["gateway"], "--detect-timeout-s", "60"]
    logging_args = ["--query-log-uri", log_dir.as_uri(), "--query-log-sample-rate", "1.0"]
    logging_args += ["--query-log-flush-s", str(FLUSH_S), "--query-log-batch", "4"]
    off_args = ["--query-log-uri", off_dir.as_uri(), "--query-log-sample-rate", "0"]
    procs = [
        start_service("gateway", free_port(), args=[*base, *args], log_path=stack.root / "logs" / f"gateway-{name}.log")
        for name, args in (("qlog", logging_args), ("qlog-off", off_args))
    ]
    try:
        for proc in procs:
            assert proc.wait_ready(120), proc.log_tail()
        wait_until(lambda: "query log: deleted" in procs[0].log_tail(400), 30, service=procs[0])
        kept = [name for name in look_alikes if (log_dir / name).exists()]
        for name in kept:
            (log_dir / name).unlink()
        yield Gateways(procs[0], procs[1], log_dir, off_dir, old_key, look_alikes, kept)
    finally:
        for proc in procs:
            proc.stop()


def _photos() -> list[tuple[bytes, dict[str, object]]]:
    rng = np.random.default_rng(18)
    noise = [encode(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(2)]
    real = [_small("person.jpg", 480), _small("horses.jpg", 500), _small("dog.jpg", 400)]
    params: list[dict[str, object]] = [{}, {"k": 5}, {"box": "10,10,300,200"}, {}, {"k": 12}, {}]
    return list(zip([*real, *noise, _phone_photo()], params, strict=True))


GPS_IFD, ORIENTATION = 0x8825, 0x0112


def _phone_photo() -> bytes:
    """A photo as a phone sends it: EXIF with the place it was taken, the maker, an orientation; a comment."""
    image = Image.open(PHOTOS / "dog.jpg").convert("RGB")
    image.thumbnail((400, 400))
    exif = Image.Exif()
    exif[ORIENTATION], exif[0x010F] = 6, "PhoneMaker"
    exif[GPS_IFD] = {1: "N", 2: (52.0, 22.0, 1.5), 3: "E", 4: (4.0, 53.0, 2.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes(), comment=b"at home")
    return out.getvalue()


def _assert_kept_without_metadata(kept: bytes, photo: bytes) -> None:
    """The logged image is the upload's pixels, upright as searched, with no GPS, maker or comment."""
    assert np.array_equal(decode(kept).pixels, decode(photo).pixels)
    opened = Image.open(io.BytesIO(kept))
    exif = opened.getexif()
    assert not exif.get_ifd(GPS_IFD) and dict(exif) in ({}, {ORIENTATION: exif.get(ORIENTATION)})
    assert b"PhoneMaker" not in kept and b"at home" not in kept and "comment" not in opened.info


@pytest.fixture(scope="module")
def searched(gateways: Gateways) -> list[tuple[bytes, dict[str, Any], dict[str, Any]]]:
    """Each photo searched on both gateways: (photo, the logging gateway's answer, the production one's)."""
    answers = []
    for photo, params in _photos():
        logged, plain = (search(gw.url, photo, timeout=60, **params) for gw in (gateways.logging, gateways.production))
        assert logged.status_code == plain.status_code == 200, (logged.text, plain.text)
        answers.append((photo, logged.json(), plain.json()))
    return answers


@pytest.mark.stack
def test_sampled_searches_are_logged_in_batches_and_answers_do_not_change(
    gateways: Gateways, searched: list[tuple[bytes, dict[str, Any], dict[str, Any]]]
) -> None:
    for _, logged, plain in searched:
        for key in ("items", "index_version", "models", "image"):
            assert logged[key] == plain[key], key
    answers = [(photo, logged) for photo, logged, _ in searched]
    records = wait_until(lambda: len(r := _records(gateways.log_dir)) == len(answers) and r, 4 * FLUSH_S + 10)
    sizes = [len(path.read_text().splitlines()) for path in gateways.log_dir.glob("queries-*.jsonl")]
    assert len(sizes) >= 2 and max(sizes) <= 4, sizes  # batches of at most 4 (fewer when flush_s passed first)
    records.sort(key=lambda r: str(r["ts"]))
    for record, (photo, answer) in zip(records, answers, strict=True):
        kept = base64.b64decode(str(record["image"]))
        assert kept == photo or photo == _phone_photo()  # without metadata, the very bytes uploaded
        _assert_kept_without_metadata(kept, photo)
        assert record["index_version"] == answer["index_version"]
        assert record["models"]["embedder"] == answer["models"]["embedder"]["sha256"]  # type: ignore[index]
        ids = [[hit["item_id"] for hit in item["results"]] for item in answer["items"]]
        assert [item["results"] for item in record["items"]] == ids  # type: ignore[attr-defined]
    assert records[1]["params"]["k"] == 5 and records[2]["params"]["box"] == [10, 10, 300, 200]  # type: ignore[index]
    text = httpx.get(gateways.logging.url + "/metrics", trust_env=False).text
    assert metric_value(text, "imgsearch_query_log_records_total", result="written") == len(answers)
    assert list(gateways.off_dir.iterdir()) == []  # sample rate 0: nothing, not even an empty object
    assert not (gateways.log_dir / gateways.old_key).exists()  # past the retention: deleted by the writer
    assert gateways.kept == gateways.look_alikes  # names the log did not write, or that another name extends
    assert "query log: deleted 1 objects" in gateways.logging.log_tail(400)


@pytest.mark.stack
def test_replay_against_production_finds_the_logged_answers(gateways: Gateways, searched: list[Any]) -> None:
    wait_until(lambda: len(_records(gateways.log_dir)) == len(searched), 4 * FLUSH_S + 10)
    cmd = imgsearch_cmd("replay", "--log", gateways.log_dir.as_uri(), "--url", gateways.production.url)
    done = subprocess.run([*cmd, "--concurrency", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["queries"] == len(lines) - 1 == len(_records(gateways.log_dir))
    assert result["errors"] == 0 and result["overlap_at_10"] >= 0.99, result
    assert result["latency_ms"]["p50"] > 0
    limited = subprocess.run([*cmd, "--limit", "2"], capture_output=True, text=True, timeout=300)
    assert json.loads(limited.stdout.strip().splitlines()[-1])["queries"] == 2


def test_a_full_queue_drops_records_and_counts_them() -> None:
    settings = GatewaySettings(query_log_uri="file:///nowhere", query_log_sample_rate=1.0, query_log_queue_mib=1)
    query_log = QueryLog(settings, DecodeBudget(64 * 1024 * 1024, 1.0))
    photo, answer = b"x" * (400 * 1024), b'{"items": []}'
    dropped = REGISTRY.get_sample_value("imgsearch_query_log_records_total", {"result": "dropped"}) or 0.0
    for _ in range(3):
        query_log.offer(photo, SearchParams(k=10), answer)
    assert len(query_log._queue) == 2  # 2 x 400 kB fit in 1 MiB, the third does not
    assert REGISTRY.get_sample_value("imgsearch_query_log_records_total", {"result": "dropped"}) == dropped + 1
    off_settings = GatewaySettings(query_log_uri="", query_log_sample_rate=1.0)  # a rate without a store: off
    off = QueryLog(off_settings, DecodeBudget(64 * 1024 * 1024, 1.0))
    off.offer(photo, SearchParams(k=10), answer)
    assert not off.enabled and len(off._queue) == 0


@pytest.mark.stack
def test_records_sampled_before_a_shutdown_are_written_and_a_bad_log_uri_fails_the_start(tmp_path: Path) -> None:
    stack = shared_stack()
    log_args = ["--query-log-uri", tmp_path.as_uri(), "--query-log-sample-rate", "1", "--query-log-flush-s", "600"]
    proc = start_service("gateway", free_port(), args=[*stack.args["gateway"], *log_args])
    try:
        assert proc.wait_ready(120), proc.log_tail()
        photos = _photos()[3:]
        for photo, params in photos:
            assert search(proc.url, photo, timeout=60, **params).status_code == 200
        assert _records(tmp_path) == []  # a batch of 100 and 600 s: nothing written yet
    finally:
        proc.stop()  # SIGTERM: a graceful shutdown
    records = _records(tmp_path)
    assert len(records) == len(photos)
    for record, (photo, _) in zip(records, photos, strict=True):
        _assert_kept_without_metadata(base64.b64decode(str(record["image"])), photo)
    bad = ["--query-log-uri", "ftp://example.invalid/log", "--query-log-sample-rate", "1"]
    log = tmp_path / "bad.log"
    proc = start_service("gateway", free_port(), args=[*stack.args["gateway"], *bad], log_path=log)
    try:
        assert proc.proc.wait(60) != 0
    finally:
        proc.stop()
    assert "unsupported store URI 'ftp://example.invalid/log'" in log.read_text()
