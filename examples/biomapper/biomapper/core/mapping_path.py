"""Description of a mapping path: an ordered chain of steps from one identifier type to another."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MappingPath:
    """A mapping path known to the executor (e.g. ``UniProt -> Ensembl gene via UniProt API``)."""

    id: int
    name: str
    source_type: str
    target_type: str
    steps: tuple[str, ...] = field(default_factory=tuple)
    priority: int = 0

    @property
    def hop_count(self) -> int:
        """Number of steps of the path."""
        return len(self.steps)
