"""Prometheus metrics of the services: module-level objects with fixed label sets.

Each service is its own process, so one default registry per process holds only that service's series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _latency(name: str, documentation: str, label: str) -> Histogram:
    """Seconds by one label, on the buckets every latency shares (so one dashboard compares them all)."""
    return Histogram(name, documentation, [label], buckets=_LATENCY_BUCKETS)


REQUESTS = Counter(
    "imgsearch_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = _latency("imgsearch_http_request_seconds", "HTTP request latency by route template.", "route")
STAGE_SECONDS = _latency(
    "imgsearch_stage_seconds",
    "Latency of one processing stage (decode, detect, embed, search, preprocess, queue, infer, query, total).",
    "stage",
)
REJECTIONS = Counter("imgsearch_rejections_total", "Requests answered with an error, by reason.", ["reason"])
MODEL_LOAD_SECONDS = Gauge(
    "imgsearch_model_load_seconds", "Seconds the last model load took (fetch, verify, session).", ["model"]
)
MODEL_WARMUP_SECONDS = Gauge(
    "imgsearch_model_warmup_seconds", "Seconds the warm-up runs took before the model service said ready.", ["model"]
)
MODEL_INFO = Gauge("imgsearch_model_info", "1 for the model this process serves.", ["model", "version", "sha256"])
BATCH_SIZE = Histogram(
    "imgsearch_embed_batch_size",
    "Crops per onnxruntime batch of the embedder.",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
INDEX_INFO = Gauge("imgsearch_index_info", "1 for the index version being served.", ["version"])
INDEX_ITEMS = Gauge("imgsearch_index_items", "Items in the index being served.")
INDEX_AGE_SECONDS = Gauge("imgsearch_index_age_seconds", "Seconds since the served index version was built.")
INDEX_RELOADS = Counter(
    "imgsearch_index_reloads_total",
    "Index reload attempts by result (swapped, unchanged, failed; skipped: a refused version, not loaded again).",
    ["result"],
)
INDEX_CHANGES = Counter(
    "imgsearch_index_changes_total",
    "Change objects (catalog upserts/deletes between rebuilds) by result (applied; duplicate: a carried copy "
    "already applied; refused: damaged or foreign, skipped).",
    ["result"],
)
INDEX_FRESH_ITEMS = Gauge("imgsearch_index_fresh_items", "Items in the fresh index (upserted since the build).")
INDEX_HIDDEN_ITEMS = Gauge(
    "imgsearch_index_hidden_items", "Built-index items hidden by changes (deleted, or replaced by a fresh item)."
)
INDEX_CHANGE_LAG_SECONDS = Histogram(
    "imgsearch_index_change_lag_seconds",
    "Seconds from a change object's write to its application on this replica.",
    buckets=(0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0),
)
CACHE_REQUESTS = Counter("imgsearch_cache_requests_total", "Result cache look-ups by result.", ["cache", "result"])
CACHE_BYTES = Gauge("imgsearch_cache_bytes", "Bytes an in-memory cache holds (what its byte bound counts).", ["cache"])
BACKEND_ERRORS = Counter(
    "imgsearch_backend_errors_total", "Failed calls from the gateway to a backend, by kind.", ["backend", "kind"]
)
BACKEND_SECONDS = _latency("imgsearch_backend_call_seconds", "Latency of gateway calls to each backend.", "backend")
PARTIAL_ANSWERS = Counter(
    "imgsearch_partial_answers_total",
    "Gateway answers that left out an index partition (failed or past the budget), by partition.",
    ["partition"],
)
FALLBACKS = Counter("imgsearch_search_fallbacks_total", "Searches that fell back to the whole image.", ["why"])
DECODE_RESERVED_BYTES = Gauge(
    "imgsearch_decode_reserved_bytes",
    "Memory reserved by the image decodes in flight (each its planned peak); at most decode_memory_mib MiB.",
)
QUERY_LOG_RECORDS = Counter(
    "imgsearch_query_log_records_total",
    "Sampled searches for the query log by result (written; dropped: queue full; error: the store write failed).",
    ["result"],
)

# Shadow evaluation of a candidate embedder+index on sampled searches (services/gateway/shadow.py).
_FRACTION_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SHADOW_OVERLAP = Histogram(
    "imgsearch_shadow_overlap",
    "Per searched item: |production top-k ∩ candidate top-k| / k (both shorter than k: over the longer list), "
    "by k (1, 5, 10).",
    ["k"],
    buckets=_FRACTION_BUCKETS,
)
SHADOW_RBO = Histogram(
    "imgsearch_shadow_rbo",
    "Per searched item: rank-biased overlap (p=0.9) of the production and candidate result lists.",
    buckets=_FRACTION_BUCKETS,
)
SHADOW_SECONDS = Histogram(
    "imgsearch_shadow_seconds", "Latency of one shadow search on the candidate pair.", buckets=_LATENCY_BUCKETS
)
SHADOW_REQUESTS = Counter(
    "imgsearch_shadow_requests_total",
    "Sampled searches replayed on the candidate pair, by result (ok, error, timeout, dropped: queue full).",
    ["result"],
)
BACKGROUND_RESTARTS = Counter(
    "imgsearch_background_restarts_total",
    "Times a gateway background task (index or model watcher, shadow worker, query log writer) ended and was "
    "started again.",
    ["task"],
)
