"""Loading a model in the background at startup: fetch through the model store, retry with backoff.

The process is live at once (/livez) and ready (/readyz) only when the load succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from imgcore.errors import ModelNotReady
from services.common.metrics import MODEL_INFO, MODEL_LOAD_SECONDS
from services.common.settings import ModelServiceSettings

log = logging.getLogger("imgsearch.loading")

T = TypeVar("T")


def fetch_model(settings: ModelServiceSettings, uri: str, sha256: str | None) -> Path:
    """A verified local model folder for `uri` (the one model store fetch)."""
    from imgcore.modelstore import ModelStore

    store = ModelStore(
        settings.model_cache_dir,
        mirrors=settings.model_mirrors,
        retries=settings.model_retries,
        timeout_s=settings.store_timeout_s,
        s3_endpoint_url=settings.s3_endpoint_url,
    )
    return store.fetch(uri, sha256)


def load_model(settings: ModelServiceSettings, model_class: Callable[..., T], **options: Any) -> T:
    """Fetch (verify) the service's model and open it with the settings' onnxruntime threads."""
    return model_class(
        fetch_model(settings, settings.model_uri, settings.model_sha256),
        intra_threads=settings.ort_intra_threads,
        inter_threads=settings.ort_inter_threads,
        verify_sha256=False,  # fetch_model has just verified this file against its card
        **options,
    )


def model_info(model: Any) -> dict[str, Any]:
    """Name, version and sha256 of a loaded model (what responses and /readyz report)."""
    return {"name": model.name, "version": model.version, "sha256": model.sha256}


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
            if hasattr(value, "sha256"):
                info = model_info(value)
                MODEL_INFO.labels(model=info["name"], version=str(info["version"]), sha256=info["sha256"]).set(1)
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
        return True, {"model": model_info(self.value)}
