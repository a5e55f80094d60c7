"""OnnxModel: the lifecycle every card-described ONNX model shares, written once.

The constructor is a template: read the card, check the model file against the card's sha256, let
the subclass read its part of the card (`_read_card`), open the session, then let the subclass bind
to the session's inputs and outputs (`_bind`). A model and its card can thus never drift apart, and
a card the subclass cannot use is refused before onnxruntime spends time on the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

from imgcore.card import MODEL_NAME, load_card, sha256_file
from imgcore.errors import ChecksumMismatch, StoreError
from imgcore.runtime import ModelSession, OrtSession


class RuntimeOptions(TypedDict, total=False):
    """OnnxModel's own keyword arguments, for subclasses to pass through as `**runtime`."""

    intra_threads: int
    inter_threads: int
    allow_spinning: bool
    session: ModelSession | None
    verify_sha256: bool


class OnnxModel:
    """`model_dir/{card.json,model.onnx}` behind a session; subclasses add preprocessing and outputs.

    Threads and spinning go to OrtSession. Pass `session` (anything with the ModelSession shape, e.g.
    a fake in tests) to run without onnxruntime; the model file is then neither read nor checksummed.
    `verify_sha256=False` skips re-hashing a folder the model store has just verified.
    """

    # What `version` says for a card without one.
    default_version = ""

    def __init__(
        self,
        model_dir: Path,
        *,
        intra_threads: int = 1,
        inter_threads: int = 1,
        allow_spinning: bool = True,
        session: ModelSession | None = None,
        verify_sha256: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self._card: dict[str, Any] = load_card(self.model_dir)
        model_path = self.model_dir / MODEL_NAME
        if session is None:
            self._check_model_file(model_path, verify_sha256)
        self._read_card(self._card)
        if session is None:
            session = OrtSession(model_path, intra_threads, inter_threads, allow_spinning=allow_spinning)
        self._session: ModelSession = session
        self._bind(session)

    # --- hooks ----------------------------------------------------------------------------------
    def _read_card(self, card: dict[str, Any]) -> None:
        """Read and check the subclass's card fields; raise StoreError for a card it cannot use."""

    def _bind(self, session: ModelSession) -> None:
        """Check the session against the card (see `_require`) and keep what running it needs."""

    # --- identity -------------------------------------------------------------------------------
    @property
    def card(self) -> dict[str, Any]:
        return dict(self._card)

    @property
    def name(self) -> str:
        return str(self._card["name"])

    @property
    def version(self) -> str:
        return str(self._card.get("version", self.default_version))

    @property
    def sha256(self) -> str:
        return str(self._card["sha256"])

    def warm_up(self) -> int:
        """Run the model on a dummy input of every batch shape it will serve; the number of runs.

        onnxruntime initialises lazily: the first run of each input shape plans memory and picks kernels
        (seen: several times a normal run). A service calls this before it says ready, so no request pays it.
        """
        return 0

    def info(self) -> dict[str, str]:
        """Name, version and sha256: what responses, /readyz and the CLI report about the model."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    # --- helpers for subclasses -----------------------------------------------------------------
    @staticmethod
    def _require(kind: str, name: str, available: Iterable[str]) -> None:
        """StoreError unless the card's input/output `name` is one the model has."""
        names = list(available)
        if name not in names:
            raise StoreError(f"card {kind} {name!r} not among model {kind}s {names}")

    def _check_model_file(self, path: Path, verify: bool) -> None:
        if not path.is_file():
            raise StoreError(f"model file not found: {path}")
        # The model store verifies downloads; this also catches a model edited in place next to its card.
        if verify:
            actual = sha256_file(path)
            if actual != self.sha256:
                raise ChecksumMismatch(f"{path} has sha256 {actual}, its card says {self.sha256}")
