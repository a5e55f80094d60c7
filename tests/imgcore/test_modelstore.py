"""ModelStore and `imgsearch models` against real folders, a faulty local HTTP server and moto_server."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from imgcore.errors import ChecksumMismatch, StoreError
from imgcore.modelstore import ModelStore, publish_models
from services.cli import main as cli_main
from tests.conftest import LocalHttpServer, MakeModelFolder


def _store(cache: Path, **kw: object) -> ModelStore:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 2.0)
    return ModelStore(cache, **kw)  # type: ignore[arg-type]


def _models_in(cache: Path) -> list[Path]:
    """Every model.onnx anywhere under the cache, staging folders and temp files included."""
    return sorted(p for p in cache.rglob("*") if p.is_file() and "model.onnx" in p.name)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_from_file_store_verifies_and_caches_by_name_and_sha(
    tmp_path: Path, make_model_folder: MakeModelFolder
) -> None:
    src = make_model_folder(tmp_path / "store", "tiny")
    sha = json.loads((src / "card.json").read_text())["sha256"]
    got = _store(tmp_path / "cache").fetch(src.as_uri())
    assert got == tmp_path / "cache" / f"tiny-{sha[:12]}"
    assert (got / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()
    assert json.loads((got / "card.json").read_text())["sha256"] == sha
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [got.name]  # no staging left


def test_fetch_over_http_then_cache_hit_downloads_the_model_only_once(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    src = make_model_folder(http_server.root / "models", "tiny")
    store = _store(tmp_path / "cache")
    first = store.fetch(f"{http_server.url}/models/tiny")
    second = store.fetch(f"{http_server.url}/models/tiny/")
    assert first == second and _sha(first / "model.onnx") == _sha(src / "model.onnx")
    assert http_server.count("/models/tiny/model.onnx") == 1
    assert http_server.count("/models/tiny/card.json") == 2  # the small card tells whether the cache is current


def test_pinned_cache_hit_needs_no_network_at_all(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    src = make_model_folder(http_server.root, "tiny")
    sha = _sha(src / "model.onnx")
    store = _store(tmp_path / "cache")
    first = store.fetch(f"{http_server.url}/tiny", sha256=sha)
    before = len(http_server.requests)
    http_server.close()  # offline from here on
    assert store.fetch(f"{http_server.url}/tiny", sha256=sha.upper()) == first
    assert len(http_server.requests) == before


def test_card_checksum_mismatch_is_refused_and_nothing_is_cached(
    tmp_path: Path, make_model_folder: MakeModelFolder
) -> None:
    src = make_model_folder(tmp_path / "store", "liar", card_sha="ab" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch, match="liar"):
        _store(cache).fetch(src.as_uri())
    assert _models_in(cache) == []
    assert list(cache.iterdir()) == []


def test_pin_mismatch_is_refused_before_downloading_the_model(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    make_model_folder(http_server.root, "tiny")
    with pytest.raises(ChecksumMismatch, match="pinned sha256 is " + "cd" * 32):
        _store(tmp_path / "cache").fetch(f"{http_server.url}/tiny", sha256="CD" * 32)
    assert http_server.count("/tiny/model.onnx") == 0
    assert _models_in(tmp_path / "cache") == []


def test_503_is_retried_with_backoff_then_succeeds(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder, caplog: pytest.LogCaptureFixture
) -> None:
    make_model_folder(http_server.root, "tiny")
    http_server.fail("/tiny/card.json", times=2, status=503)
    http_server.fail("/tiny/model.onnx", times=1, status=500)
    sleeps: list[float] = []
    store = _store(tmp_path / "cache", retries=3, backoff_s=0.1, sleep=sleeps.append)
    with caplog.at_level(logging.INFO, logger="imgcore.modelstore"):
        got = store.fetch(f"{http_server.url}/tiny")
    assert (got / "model.onnx").is_file()
    assert http_server.count("/tiny/card.json") == 3 and http_server.count("/tiny/model.onnx") == 2
    assert len(sleeps) == 3 and 0.2 <= sleeps[1] < 0.23  # 0.1 * 2**1 plus at most 0.025 of jitter
    assert sum("HTTP 503" in r.getMessage() and "retrying" in r.getMessage() for r in caplog.records) == 2


def test_retries_give_up_and_not_found_is_never_retried(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    make_model_folder(http_server.root, "tiny")
    http_server.fail("/tiny/card.json", times=100, status=503)
    with pytest.raises(StoreError, match="HTTP 503"):
        _store(tmp_path / "cache", retries=2).fetch(f"{http_server.url}/tiny")
    assert http_server.count("/tiny/card.json") == 3
    with pytest.raises(StoreError, match="NotFound"):
        _store(tmp_path / "cache", retries=2).fetch(f"{http_server.url}/absent")
    assert http_server.count("/absent/card.json") == 1


def test_interrupted_download_leaves_no_partial_file(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    make_model_folder(http_server.root, "tiny", payload=b"m" * 300_000)
    http_server.truncate("/tiny/model.onnx", after_bytes=50_000, times=100)
    cache = tmp_path / "cache"
    with pytest.raises(StoreError, match="model.onnx"):
        _store(cache, retries=1).fetch(f"{http_server.url}/tiny")
    assert http_server.count("/tiny/model.onnx") == 2
    assert list(cache.iterdir()) == []  # no entry, no staging folder, no temp file


def test_cut_connection_is_retried_and_the_retry_hashes_from_scratch(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    src = make_model_folder(http_server.root, "tiny", payload=b"m" * 300_000)
    http_server.truncate("/tiny/model.onnx", after_bytes=50_000, times=1)
    got = _store(tmp_path / "cache").fetch(f"{http_server.url}/tiny")
    assert _sha(got / "model.onnx") == _sha(src / "model.onnx")


def test_stalled_server_times_out_and_is_retried(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    make_model_folder(http_server.root, "tiny")
    http_server.stall("/tiny/model.onnx", seconds=5, times=1)
    got = _store(tmp_path / "cache", timeout_s=0.3).fetch(f"{http_server.url}/tiny")
    assert (got / "model.onnx").is_file() and http_server.count("/tiny/model.onnx") == 2


@pytest.mark.parametrize("primary_fault", ["missing", "http500", "checksum"])
def test_mirror_is_used_when_the_primary_fails(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder, primary_fault: str
) -> None:
    good = make_model_folder(tmp_path / "mirror", "tiny")
    if primary_fault == "http500":
        make_model_folder(http_server.root / "primary", "tiny")
        http_server.fail("/primary/tiny/card.json", times=100, status=500)
    elif primary_fault == "checksum":
        make_model_folder(http_server.root / "primary", "tiny", card_sha=_sha(good / "model.onnx"), payload=b"bad" * 9)
    store = _store(
        tmp_path / "cache", retries=1, mirrors=[f"{http_server.url}/nowhere", (tmp_path / "mirror").as_uri()]
    )
    got = store.fetch(f"{http_server.url}/primary/tiny")
    assert _sha(got / "model.onnx") == _sha(good / "model.onnx")
    assert http_server.count("/nowhere/tiny/card.json") == 1  # the first mirror (404) was tried in order


def test_all_sources_failing_lists_each_source_error(tmp_path: Path, make_model_folder: MakeModelFolder) -> None:
    make_model_folder(tmp_path / "a", "tiny", card_sha="00" * 32)
    make_model_folder(tmp_path / "b", "tiny", card_sha="11" * 32)
    store = _store(tmp_path / "cache", mirrors=[(tmp_path / "b").as_uri()])
    with pytest.raises(ChecksumMismatch) as info:
        store.fetch((tmp_path / "a" / "tiny").as_uri())
    assert "2 source(s)" in str(info.value) and "/a/tiny" in str(info.value) and "/b/tiny" in str(info.value)
    store = _store(tmp_path / "cache", mirrors=[(tmp_path / "b").as_uri()])
    with pytest.raises(StoreError, match="NotFound.*ChecksumMismatch") as err:
        store.fetch((tmp_path / "nothing" / "tiny").as_uri())
    assert not isinstance(err.value, ChecksumMismatch)


def test_corrupt_cache_entry_is_deleted_and_fetched_again_once(
    tmp_path: Path, http_server: LocalHttpServer, make_model_folder: MakeModelFolder
) -> None:
    src = make_model_folder(http_server.root, "tiny")
    store = _store(tmp_path / "cache")
    got = store.fetch(f"{http_server.url}/tiny")
    (got / "model.onnx").write_bytes(b"bit rot")
    assert store.fetch(f"{http_server.url}/tiny") == got
    assert _sha(got / "model.onnx") == _sha(src / "model.onnx")
    assert http_server.count("/tiny/model.onnx") == 2
    (got / "model.onnx").write_bytes(b"bit rot again")  # a pinned fetch checks the cache before the network
    assert store.fetch(f"{http_server.url}/tiny", sha256=_sha(src / "model.onnx")) == got
    assert _sha(got / "model.onnx") == _sha(src / "model.onnx") and http_server.count("/tiny/model.onnx") == 3


def test_publish_then_pull_round_trip_via_s3_cli(
    tmp_path: Path,
    s3_endpoint: str,
    s3_bucket: str,
    make_model_folder: MakeModelFolder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = tmp_path / "models"
    det = make_model_folder(models, "det-a")
    make_model_folder(models, "emb-b", payload=b"embedder" * 500)
    (models / "notes").mkdir()  # folders without a card are not models
    store_uri = f"{s3_bucket}/models"
    assert (
        cli_main(
            ["models", "publish", "--to", store_uri, "--models-dir", str(models), "--s3-endpoint-url", s3_endpoint]
        )
        == 0
    )
    assert capsys.readouterr().out.split() == [f"{store_uri}/det-a", f"{store_uri}/emb-b"]

    sha = _sha(det / "model.onnx")
    cache = tmp_path / "cache"
    argv = ["models", "pull", f"{store_uri}/det-a", "--sha256", sha, "--cache-dir", str(cache)]
    assert cli_main([*argv, "--s3-endpoint-url", s3_endpoint]) == 0
    pulled = Path(capsys.readouterr().out.strip())
    assert pulled == cache / f"det-a-{sha[:12]}" and _sha(pulled / "model.onnx") == sha

    code = cli_main(["models", "pull", f"{store_uri}/det-a", "--sha256", "0" * 64, "--cache-dir", str(cache),
                     "--s3-endpoint-url", s3_endpoint, "--retries", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "imgsearch models pull: error:" in err and "pinned sha256" in err


def test_publish_refuses_a_folder_whose_model_does_not_match_its_card(
    tmp_path: Path, make_model_folder: MakeModelFolder
) -> None:
    models = tmp_path / "models"
    make_model_folder(models, "good")
    make_model_folder(models, "stale", card_sha="ee" * 32)
    with pytest.raises(ChecksumMismatch, match="stale"):
        publish_models(models, (tmp_path / "store").as_uri())
    assert not (tmp_path / "store").exists()  # verified before anything was uploaded


def test_pull_cli_passes_retries_and_mirrors_to_the_store(
    tmp_path: Path,
    http_server: LocalHttpServer,
    make_model_folder: MakeModelFolder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = make_model_folder(tmp_path / "mirror", "tiny")
    make_model_folder(http_server.root / "primary", "tiny")
    http_server.fail("/primary/tiny/card.json", times=100, status=503)
    cache = tmp_path / "cache"
    argv = ["models", "pull", f"{http_server.url}/primary/tiny", "--cache-dir", str(cache), "--timeout", "2"]
    assert cli_main([*argv, "--retries", "1", "--mirror", (tmp_path / "mirror").as_uri()]) == 0
    pulled = Path(capsys.readouterr().out.strip())
    assert pulled.parent == cache and _sha(pulled / "model.onnx") == _sha(good / "model.onnx")
    assert http_server.count("/primary/tiny/card.json") == 2  # one try and one retry, then the mirror
