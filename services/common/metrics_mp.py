"""/metrics of a service that runs as several worker processes (the index's pre-forked workers).

With PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported, every worker writes its values to
files in that folder and a scrape, answered by any one worker, reads them all: counters and histograms
summed over the workers, gauges one series per worker (label `pid`). A gauge computed on scrape
(`Gauge.set_function`, e.g. the index age) has no file: it comes from the worker that answers.
Without that variable, this is the process's own default registry, as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from services.common.metrics import INDEX_AGE_SECONDS, INDEX_INFO

# Gauges computed when scraped: only the answering process knows them.
_COMPUTED = (INDEX_AGE_SECONDS,)
# Info gauges (1 for what is served): a value file keeps every label set ever used, the former ones at 0.
_INFO = (INDEX_INFO,)
ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when imported


class _AllWorkers(Collector):
    def __init__(self, folder: str) -> None:
        self._files = MultiProcessCollector(None, folder)
        self._computed = {metric._name for metric in _COMPUTED}
        self._info = {metric._name for metric in _INFO}

    def collect(self) -> Iterable[Metric]:
        for family in self._files.collect():
            if family.name in self._info:
                family.samples = [sample for sample in family.samples if sample.value != 0]
            if family.name not in self._computed:
                yield family
        for metric in _COMPUTED:
            yield from metric.collect()


def scrape_registry() -> CollectorRegistry:
    """What /metrics exposes: this process's registry, or every worker's values in multiprocess mode."""
    folder = os.environ.get(ENV)
    if not folder:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(_AllWorkers(folder))
    return registry
