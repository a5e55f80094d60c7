"""What a query returns per item, and how a query is asked (issue 28: filters, one hit per product)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ann_index.serving.filters import Filter


@dataclass(frozen=True)
class Hit:
    item_id: str
    score: float  # cosine similarity, 1.0 = same direction
    category: str
    title: str
    image: str
    attrs: dict[str, Any]
    product_id: str = ""  # the product this image shows (`imgcore.index_wire.product_key`)
    images: int = 1  # how many images of that product the version holds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self, group: bool) -> str:
        """What one answer holds once: the product (grouped) or the image."""
        return (self.product_id or self.item_id) if group else self.item_id


@dataclass(frozen=True)
class QueryOptions:
    """How a query is answered besides vectors, k and categories."""

    where: Filter | None = None  # only items that pass
    group: bool = False  # one hit per product (the services' default), else one per image
    hidden: frozenset[str] = field(default_factory=frozenset)  # item ids to leave out (deleted or replaced)

    @property
    def plain(self) -> bool:
        """Nothing beyond the per-image top k."""
        return self.where is None and not self.group and not self.hidden


PLAIN = QueryOptions()
