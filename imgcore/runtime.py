"""The one place that knows onnxruntime: sessions and their thread settings."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from imgcore.errors import StoreError


def onnxruntime() -> ModuleType:
    """onnxruntime, imported on first use: a process that runs no model (the gateway, the index, `--help`) never
    loads it. Its telemetry is off unless the environment says otherwise: on Linux it would otherwise persist a
    device id under $HOME/.cache, which is read-only in the pods, and warn at every start."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    return ort


class ModelSession(Protocol):
    """What model classes need from a runtime; tests can pass a fake."""

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray], cancel: RunCancel | None = None) -> list[np.ndarray]: ...


class CancelledRun(Exception):
    """A run stopped through its RunCancel."""


class RunCancel:
    """Stops one session run from another thread: onnxruntime checks the flag between the graph's nodes, so a
    run whose answer is no longer wanted gives its core back within a node instead of running to the end."""

    def __init__(self) -> None:
        self.options = onnxruntime().RunOptions()

    def cancel(self) -> None:
        self.options.terminate = True


class OrtSession:
    """CPU onnxruntime session. Threads default to 1 so co-located services don't oversubscribe cores."""

    def __init__(
        self, path: Path, intra_threads: int = 1, inter_threads: int = 1, *, allow_spinning: bool = True
    ) -> None:
        ort = onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_threads
        opts.inter_op_num_threads = inter_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not allow_spinning:
            # Spinning threads hold their cores between parallel sections; a process that also
            # decodes images on those cores (the rebuild job) is faster when they yield instead.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise StoreError(f"cannot load ONNX model {path}: {exc}") from exc
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(self, feeds: dict[str, np.ndarray], cancel: RunCancel | None = None) -> list[np.ndarray]:
        """The outputs; a run stopped through `cancel` raises CancelledRun."""
        try:
            outputs = self._session.run(None, feeds, cancel.options if cancel is not None else None)
        except Exception as exc:
            if cancel is not None and cancel.options.terminate:
                raise CancelledRun("run cancelled") from exc
            raise
        return [np.asarray(o) for o in outputs]
