"""Item thumbnails: written by the rebuild (whole or sharded, cached or not) into thumbs.bin, read by IndexReader."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ann_index.build import decode_pool
from ann_index.build.rebuild import RebuildOptions, RebuildRefused, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.serving.reader import IndexReader
from ann_index.shards.files import Shard, decode_shard, encode_shard, shard_is_done
from ann_index.shards.job import embed_shard, merge_and_publish, shard_run_id
from ann_index.shards.spec import ShardSpec, shard_key
from ann_index.thumbs import MAX_SIDE, THUMBS_NAME, ThumbPack, make_thumbnail, media_type
from imgcore.errors import IndexMismatch, NotFound
from imgcore.image import DecodeLimits
from imgcore.storage import open_store
from tests.ann_index.fakes import FakeEmbedder, clustered, items_for, make_version

OPTS = RebuildOptions(progress=False, n_trees=16, gate_queries=100)
ITEMS = 120


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalog folder, written once per module."""
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=ITEMS).parent


@pytest.fixture
def catalog(shop: Path, tmp_path: Path) -> Path:
    """A private copy of the catalog: tests delete or change it."""
    return Path(shutil.copytree(shop, tmp_path / "shop")) / "catalog.jsonl"


def _version(root: Path) -> Path:
    return root / "versions" / (root / "CURRENT").read_text().strip()


def _ids(catalog: Path) -> list[str]:
    return [json.loads(line)["item_id"] for line in catalog.read_text().splitlines()]


def test_make_thumbnail_is_a_small_jpeg_or_webp_and_never_enlarges() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (900, 1600, 3), dtype=np.uint8)
    big, big_webp = make_thumbnail(photo), make_thumbnail(photo, fmt="webp")
    small = make_thumbnail(np.full((40, 30, 3), 200, dtype=np.uint8))
    assert Image.open(io.BytesIO(big)).size == (MAX_SIDE, 144) and media_type(big) == "image/jpeg"
    assert Image.open(io.BytesIO(big_webp)).size == (MAX_SIDE, 144) and media_type(big_webp) == "image/webp"
    assert Image.open(io.BytesIO(small)).size == (30, 40)
    assert make_thumbnail(photo) == big  # no timestamp or metadata: builds stay reproducible


def test_a_jpeg_thumbnail_keeps_the_colours_the_right_way_round() -> None:
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220  # RGB in: cv2 encodes BGR, so a channel swap would show as blue
    pixels = np.asarray(Image.open(io.BytesIO(make_thumbnail(red))).convert("RGB"), np.int16)
    assert abs(pixels[..., 0].mean() - 220) < 4 and pixels[..., 2].mean() < 4


def test_rebuild_writes_a_checksummed_thumbnail_of_every_item_that_outlives_the_catalog(
    catalog: Path, tmp_path: Path
) -> None:
    manifest = rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    assert THUMBS_NAME in manifest["files"] and manifest["thumbnails"]["file"] == THUMBS_NAME
    ids = _ids(catalog)
    assert manifest["count"] == len(ids) == ITEMS
    sources = {item_id: (catalog.parent / "images" / f"{item_id}.png").read_bytes() for item_id in ids}
    shutil.rmtree(catalog.parent)  # the catalog's images are gone: the thumbnails are in the version
    with IndexReader.open(_version(tmp_path / "idx"), embedder_sha256=None, dim=None) as reader:
        for item_id in ids:
            data, kind = reader.thumbnail(item_id)
            img = Image.open(io.BytesIO(data))
            # The demo's 112 px PNGs carry nothing but pixels: each is its own thumbnail (ann_index.build.thumb_reuse).
            assert data == sources[item_id] and kind == "image/png" and img.format == "PNG"
        with pytest.raises(NotFound, match="not in index"):
            reader.thumbnail("no-such-item")


def test_a_rebuild_asked_for_webp_thumbnails_writes_and_serves_webp(catalog: Path, tmp_path: Path) -> None:
    rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), replace(OPTS, thumbnail_format="webp"))
    with IndexReader.open(_version(tmp_path / "idx"), embedder_sha256=None, dim=None) as reader:
        data, kind = reader.thumbnail("fmnist-train-00005")
        assert kind == "image/webp" and Image.open(io.BytesIO(data)).format == "WEBP"


def test_the_thumbnail_is_the_items_own_image(catalog: Path, tmp_path: Path) -> None:
    rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    with IndexReader.open(_version(tmp_path / "idx"), embedder_sha256=None, dim=None) as reader:
        for item_id in ("fmnist-train-00000", "fmnist-train-00077"):
            original = np.asarray(Image.open(catalog.parent / "images" / f"{item_id}.png").convert("RGB"), np.float32)
            thumb = np.asarray(Image.open(io.BytesIO(reader.thumbnail(item_id)[0])).convert("RGB"), np.float32)
            assert thumb.shape == original.shape  # 112 px: kept, not enlarged
            assert np.abs(thumb - original).mean() < 8  # lossy, but the same picture (another item differs by 80+)


def test_photos_too_large_or_carrying_metadata_are_reencoded_as_jpeg(catalog: Path, tmp_path: Path) -> None:
    images = catalog.parent / "images"
    big = Image.open(images / "fmnist-train-00001.png").convert("RGB").resize((400, 400))
    big.save(images / "fmnist-train-00001.png")  # over MAX_SIDE
    exif = Image.Exif()
    exif[0x010F] = "a camera"  # Make: a JPEG whose APP1 a shop may not want republished
    tagged = images / "fmnist-train-00002.png"
    Image.open(tagged).convert("RGB").save(tagged, "JPEG", exif=exif)
    rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    with IndexReader.open(_version(tmp_path / "idx"), embedder_sha256=None, dim=None) as reader:
        for item_id, size in (("fmnist-train-00001", (MAX_SIDE, MAX_SIDE)), ("fmnist-train-00002", (112, 112))):
            data, kind = reader.thumbnail(item_id)
            img = Image.open(io.BytesIO(data))
            assert kind == "image/jpeg" and img.format == "JPEG" and img.size == size
            assert not img.getexif()  # the camera's metadata stayed in the catalog
        assert reader.thumbnail("fmnist-train-00003")[1] == "image/png"


def test_cached_items_still_get_their_thumbnails_and_the_file_is_reproducible(
    catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache.sqlite"  # counts embeds: no self-match sample (test_self_match.py)
    opts = RebuildOptions(progress=False, n_trees=16, gate_queries=100, embedding_cache=cache, self_match_queries=0)
    images = catalog.parent / "images"
    big = images / "fmnist-train-00001.png"
    Image.open(big).convert("RGB").resize((400, 400)).save(big)
    first = rebuild(str(catalog), (tmp_path / "a").as_uri(), FakeEmbedder(), opts)
    decoded: list[bytes] = []
    real_decode = decode_pool.decode_image

    def counted(data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
        decoded.append(data)
        return real_decode(data, limits)

    monkeypatch.setattr(decode_pool, "decode_image", counted)
    second = rebuild(str(catalog), (tmp_path / "b").as_uri(), FakeEmbedder(), opts)
    assert second["embedding_cache"]["hits"] == ITEMS  # nothing embedded again...
    assert second["files"][THUMBS_NAME] == first["files"][THUMBS_NAME]  # ...and the same thumbnails
    assert len(decoded) == 1  # only the 400 px image, for its JPEG; the others are their own thumbnails
    with IndexReader.open(_version(tmp_path / "b"), embedder_sha256=None, dim=None) as reader:
        assert reader.thumbnail("fmnist-train-00003")[1] == "image/png"
        assert reader.thumbnail("fmnist-train-00001")[1] == "image/jpeg"


def test_a_version_without_thumbnails_answers_a_clear_not_found(tmp_path: Path) -> None:
    vectors, labels = clustered(60, 16, 3, 0.05)
    make_version(tmp_path / "old", vectors, items_for(labels))  # built as before thumbnails existed
    with IndexReader.open(tmp_path / "old", embedder_sha256=None, dim=None) as reader:
        with pytest.raises(NotFound, match="no item thumbnails") as err:
            reader.thumbnail("item-0001")
        assert err.value.reason == "no_thumbnails"
        assert reader.query(vectors[:1], k=1)[0][0].item_id == "item-0000"  # it still serves searches


def test_a_thumbnail_table_pointing_outside_the_file_is_refused(catalog: Path, tmp_path: Path) -> None:
    rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    version = _version(tmp_path / "idx")
    (version / THUMBS_NAME).write_bytes((version / THUMBS_NAME).read_bytes()[:100])
    with pytest.raises(IndexMismatch, match="sha256"):  # the manifest's checksum catches it first
        IndexReader.open(version, embedder_sha256=None, dim=None)
    with pytest.raises(IndexMismatch, match="outside the file"):  # and without verification, the bounds
        IndexReader.open(version, embedder_sha256=None, dim=None, verify=False)


def test_sharded_build_carries_thumbnails_in_its_shard_files(catalog: Path, tmp_path: Path) -> None:
    out, n = tmp_path / "sharded", 3
    for i in range(n):
        embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(i, n), OPTS)
    shard = decode_shard(next((out / "shards").rglob("0.npz")).read_bytes())
    assert shard.thumbs is not None and len(shard.thumbs) == len(shard.ids) > 0
    sharded = merge_and_publish(str(catalog), out.as_uri(), FakeEmbedder(), n, OPTS)
    plain = rebuild(str(catalog), (tmp_path / "plain").as_uri(), FakeEmbedder(), OPTS)
    assert sharded["files"][THUMBS_NAME] == plain["files"][THUMBS_NAME]  # same bytes, same order


def test_shards_written_without_thumbnails_are_embedded_again_not_merged(catalog: Path, tmp_path: Path) -> None:
    out, n = tmp_path / "idx", 2
    for i in range(n):
        embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(i, n), OPTS)
    run = shard_run_id(_catalog_sha(catalog), FakeEmbedder().sha256, n, OPTS)
    with open_store(out.as_uri()) as store:
        for i in range(n):  # as an imgsearch from before thumbnails wrote them
            old = decode_shard(store.get_bytes(shard_key(run, i)))
            store.put_bytes(shard_key(run, i), encode_shard(_without_thumbs(old)))
        with pytest.raises(RebuildRefused, match="without thumbnails"):
            merge_and_publish(str(catalog), out.as_uri(), FakeEmbedder(), n, OPTS)
        assert not shard_is_done(store, run, ShardSpec(0, n), need_thumbs=True)
    result = embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(0, n), OPTS)
    assert not result.reused and result.embedded > 0
    embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(1, n), OPTS)
    assert THUMBS_NAME in merge_and_publish(str(catalog), out.as_uri(), FakeEmbedder(), n, OPTS)["files"]


def _catalog_sha(catalog: Path) -> str:
    return hashlib.sha256(catalog.read_bytes()).hexdigest()


def _without_thumbs(shard: Shard) -> Shard:
    return replace(shard, thumbs=None)


def test_thumb_pack_round_trips_and_refuses_inconsistent_lengths() -> None:
    pack = ThumbPack()
    for data in (b"aa", b"", b"ccc"):
        pack.add(data)
    blob, lengths = pack.arrays()
    again = ThumbPack(blob.tobytes(), lengths.tolist())
    assert [again[i] for i in range(3)] == [b"aa", b"", b"ccc"]
    assert [ThumbPack.gather([pack, again], [4, 0, 5])[i] for i in range(3)] == [b"", b"aa", b"ccc"]
    assert ThumbPack.gather([pack, again]).nbytes == 10
    with pytest.raises(ValueError, match="add up"):
        ThumbPack(b"abc", [1, 1])
