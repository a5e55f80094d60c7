"""`imgsearch rollout check`: promote or hold a candidate embedder+index on the evidence of shadow evaluation.

Reads the gateway's shadow metrics (its /metrics, or Prometheus's /federate, summed over every gateway) and
the candidate index's own quality report, compares them with the thresholds given as flags, prints
`promote` or `hold` with the reasons and exits 0 (promote) or 1 (hold) — the step a pipeline runs before
it moves traffic to the candidate.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from imgcore.errors import StoreError
from services.cli.flags import add_s3_endpoint_url

SHADOW_SERIES = '{__name__=~"imgsearch_shadow_.*"}'


@dataclass
class ShadowEvidence:
    """Shadow metrics summed over every series (every gateway when read from Prometheus)."""

    requests: dict[str, float] = field(default_factory=dict)  # result -> count
    overlap_sum: dict[str, float] = field(default_factory=dict)  # k -> sum of per-item overlaps
    overlap_count: dict[str, float] = field(default_factory=dict)  # k -> items compared
    rbo_sum: float = 0.0
    rbo_count: float = 0.0

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == "imgsearch_shadow_requests_total":
            result = labels.get("result", "")
            self.requests[result] = self.requests.get(result, 0.0) + value
        elif name in ("imgsearch_shadow_overlap_sum", "imgsearch_shadow_overlap_count"):
            into = self.overlap_sum if name.endswith("_sum") else self.overlap_count
            k = labels.get("k", "")
            into[k] = into.get(k, 0.0) + value
        elif name == "imgsearch_shadow_rbo_sum":
            self.rbo_sum += value
        elif name == "imgsearch_shadow_rbo_count":
            self.rbo_count += value

    def mean_overlap(self, k: int) -> float | None:
        count = self.overlap_count.get(str(k), 0.0)
        return self.overlap_sum.get(str(k), 0.0) / count if count else None

    def error_rate(self) -> float | None:
        failed = self.requests.get("error", 0.0) + self.requests.get("timeout", 0.0)
        total = failed + self.requests.get("ok", 0.0)
        return failed / total if total else None


def parse_metrics(text: str) -> ShadowEvidence:
    """The shadow series of a Prometheus text exposition (a /metrics page or a /federate answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    evidence = ShadowEvidence()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            evidence.add(sample.name, dict(sample.labels), float(sample.value))
    return evidence


def read_evidence(args: argparse.Namespace) -> ShadowEvidence:
    """Fetch the metrics text from the gateway or from Prometheus."""
    import httpx

    if args.prometheus:
        url, params = args.prometheus.rstrip("/") + "/federate", {"match[]": SHADOW_SERIES}
    else:
        url, params = args.metrics, {}
    try:
        resp = httpx.get(url, params=params, timeout=args.timeout, trust_env=False)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise ValueError(f"cannot read metrics from {url}: {exc}") from exc
    return parse_metrics(resp.text)


def index_quality(uri: str, s3_endpoint_url: str | None) -> dict[str, Any]:
    """The quality report of the candidate store's CURRENT version (what `imgsearch index show` prints)."""
    from ann_index.version.publish import published_manifest, read_current
    from imgcore.storage import open_store

    with open_store(uri, s3_endpoint_url=s3_endpoint_url) as store:
        version = read_current(store)
        if version is None:
            raise StoreError(f"{uri}: nothing published (no CURRENT)")
        manifest = published_manifest(store, version)
    return {"version": version, **manifest["quality"]}


def _fmt(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.0f}" if value.is_integer() and value > 1 else f"{value:.4f}"


def verdict(evidence: ShadowEvidence, quality: dict[str, Any] | None, args: argparse.Namespace) -> list[str]:
    """The reasons to hold (empty: promote); prints each check."""
    holds: list[str] = []

    def check(name: str, value: float | None, ok: bool, limit: str) -> None:
        print(f"{name:<16}{_fmt(value):>10}  ({limit}) {'ok' if ok else 'HOLD'}")
        if not ok:
            holds.append(f"{name} {_fmt(value)} ({limit})")

    samples = evidence.requests.get("ok", 0.0)
    check("shadow samples", samples, samples >= args.min_samples, f"min {args.min_samples}")
    overlap = evidence.mean_overlap(args.k)
    check(f"overlap@{args.k}", overlap, overlap is not None and overlap >= args.min_overlap, f"min {args.min_overlap}")
    rate = evidence.error_rate()
    check("shadow errors", rate, rate is not None and rate <= args.max_error_rate, f"max {args.max_error_rate}")
    if evidence.rbo_count:
        print(f"{'rbo (p=0.9)':<16}{evidence.rbo_sum / evidence.rbo_count:>10.4f}  (reported)")
    print(f"{'dropped':<16}{evidence.requests.get('dropped', 0.0):>10.0f}  (reported: the candidate fell behind)")
    if quality is not None:
        recall = float(quality["recall_at_10"])
        least = float(quality.get("recall_target", 0.0)) if args.min_recall is None else args.min_recall
        check("index recall@10", recall, recall >= least, f"min {least}, version {quality['version']}")
    return holds


def run_check(args: argparse.Namespace) -> int:
    """Print each check, then `promote` (exit 0) or `hold: reasons` (exit 1)."""
    if not args.metrics and not args.prometheus:
        raise ValueError("give --metrics GATEWAY_METRICS_URL or --prometheus PROMETHEUS_URL")
    evidence = read_evidence(args)
    quality = index_quality(args.index_uri, args.s3_endpoint_url) if args.index_uri else None
    holds = verdict(evidence, quality, args)
    print("promote" if not holds else "hold: " + "; ".join(holds))
    return 0 if not holds else 1


def register(sub: Any) -> None:
    """Add `rollout check`."""
    rollout = sub.add_parser("rollout", help="judge a candidate model+index before it takes traffic")
    cmds = rollout.add_subparsers(dest="rollout_command", required=True)
    check = cmds.add_parser("check", help="promote or hold from shadow metrics and index quality", description=__doc__)
    source = check.add_mutually_exclusive_group()
    source.add_argument("--metrics", help="a gateway's metrics URL (http://HOST:8000/metrics)")
    source.add_argument("--prometheus", help="Prometheus base URL: shadow series of every gateway, via /federate")
    check.add_argument("--index-uri", help="the candidate index store (file:// or s3://): its quality report")
    add_s3_endpoint_url(check, "index store")
    check.add_argument("--k", type=int, choices=(1, 5, 10), default=10, help="overlap depth (default 10)")
    check.add_argument("--min-overlap", type=float, default=0.8, help="least mean overlap@k (default 0.8)")
    check.add_argument("--min-samples", type=float, default=100, help="least shadow searches (default 100)")
    check.add_argument("--max-error-rate", type=float, default=0.01, help="most failed shadow share (default 0.01)")
    check.add_argument(
        "--min-recall", type=float, default=None, help="least index recall@10 (default: the index's own target)"
    )
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per metrics request (default 10)")
    check.set_defaults(func=run_check)
