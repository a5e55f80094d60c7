"""The rows of a built version that both its builder and its readers know: an item, a category's range."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class IndexItem:
    """What the index returns about an item besides its vector."""

    item_id: str
    category: str
    title: str
    image: str  # absolute URI
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CategoryInfo:
    count: int
    offset: int  # first global annoy id of this category
    file: str

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "offset": self.offset, "file": self.file}
