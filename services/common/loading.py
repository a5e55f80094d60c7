"""Loading a model in the background at startup: fetch through the model store, retry with backoff.

The process is live at once (/livez) and ready (/readyz) only when the load succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from imgcore.errors import ModelNotReady
from services.common.metrics import MODEL_INFO, MODEL_LOAD_SECONDS, MODEL_WARMUP_SECONDS
from services.common.settings import ModelServiceSettings

if TYPE_CHECKING:  # imported lazily: onnxruntime is paid for only by a process that loads a model
    from embedder import Embedder
    from imgcore.modelstore import ModelStore
    from imgcore.onnx_model import OnnxModel

log = logging.getLogger("imgsearch.loading")

T = TypeVar("T", bound="OnnxModel")


def model_store(
    cache_dir: Path,
    s3_endpoint_url: str | None = None,
    timeout_s: float = 30.0,
    *,
    mirrors: Sequence[str] = (),
    retries: int = 3,
) -> ModelStore:
    """The one way services and the CLI build a model store: a cache folder, where S3 is, how long to wait."""
    from imgcore.modelstore import ModelStore

    return ModelStore(cache_dir, s3_endpoint_url=s3_endpoint_url, timeout_s=timeout_s, mirrors=mirrors, retries=retries)


def rebuild_embedder(model_dir: Path, batch_size: int = 32) -> Embedder:
    """The embedder of a rebuild (and of `items apply`): one single-threaded session, which the job runs in
    `RebuildOptions.model_lanes` threads at once, one per core. Spinning off: the job decodes images on the
    cores onnxruntime uses, so its threads must yield, not spin."""
    from embedder import Embedder

    return Embedder(model_dir, intra_threads=1, batch_size=batch_size, allow_spinning=False)


def fetch_model(settings: ModelServiceSettings, uri: str | None = None, sha256: str | None = None) -> Path:
    """The service's model folder, fetched and verified as its settings say (URI, pin, cache, mirrors);
    `uri`/`sha256`: another model of the same service (the detector's pose model) through the same store."""
    model = settings.model
    store = model_store(
        model.cache_dir,
        settings.store.s3_endpoint_url,
        settings.store.timeout_s,
        mirrors=model.mirrors,
        retries=model.retries,
    )
    if uri is not None:
        return store.fetch(uri, sha256)
    return store.fetch(model.uri, model.sha256)


def load_model(settings: ModelServiceSettings, model_class: Callable[..., T], **options: Any) -> T:
    """Fetch (verify) the service's model, open it with the settings' onnxruntime threads, warm it up."""
    model = model_class(
        fetch_model(settings),
        intra_threads=settings.runtime.ort_intra_threads,
        inter_threads=settings.runtime.ort_inter_threads,
        verify_sha256=False,  # fetch_model has just verified this file against its card
        **options,
    )
    if settings.runtime.warm_up:
        warm_up(model)
    return model


def warm_up(model: OnnxModel) -> None:
    """Run the model on every batch shape it serves, and the decoder once; part of loading, so /readyz waits."""
    t0 = time.perf_counter()
    runs = model.warm_up()
    warm_decoder()
    seconds = time.perf_counter() - t0
    MODEL_WARMUP_SECONDS.labels(model=model.name).set(seconds)
    log.info("warmed up %s: %d run(s) in %.2fs", model.name, runs, seconds)


def warm_decoder() -> None:
    """Decode a small JPEG and PNG as an upload would be: the first decode pays the codecs' lazy set-up
    (measured in a detector: 240 ms for the first photo, 5-30 ms for the next)."""
    import io

    from PIL import Image

    from imgcore.image import decode, plan_decode

    exif = Image.Exif()
    exif[0x0112] = 1  # an orientation tag: phone photos have one, and reading it imports the TIFF plugin
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (127, 127, 127)).save(buf, fmt, exif=exif)
        plan_decode(buf.getvalue())
        decode(buf.getvalue())


class BackgroundLoader(Generic[T]):
    """Runs `load` in a worker thread until it succeeds, waiting longer after each failure."""

    def __init__(self, what: str, load: Callable[[], T], *, max_backoff_s: float = 30.0) -> None:
        self.what = what
        self._load = load
        self._max_backoff_s = max_backoff_s
        self.value: T | None = None
        self.error: str | None = None

    async def run(self) -> None:
        """Load, retrying forever with exponential backoff (cancelled at shutdown)."""
        backoff = 1.0
        while self.value is None:
            t0 = time.perf_counter()
            try:
                value = await asyncio.to_thread(self._load)
            except Exception as exc:  # any failure: report it, keep the process alive, try again
                self.error = f"{type(exc).__name__}: {exc}"
                log.error("loading %s failed (retry in %.0fs): %s", self.what, backoff, self.error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            seconds = time.perf_counter() - t0
            self.value, self.error = value, None
            MODEL_LOAD_SECONDS.labels(model=self.what).set(seconds)
            info = value.info()
            MODEL_INFO.labels(model=info["name"], version=info["version"], sha256=info["sha256"]).set(1)
            log.info("loaded %s in %.2fs", self.what, seconds)

    def require(self) -> T:
        """The loaded value, or ModelNotReady (503)."""
        if self.value is None:
            raise ModelNotReady(f"{self.what} is not loaded yet" + (f": {self.error}" if self.error else ""))
        return self.value

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details) for /readyz."""
        if self.value is None:
            return False, {"loading": self.what, "error": self.error}
        return True, {"model": self.value.info()}
