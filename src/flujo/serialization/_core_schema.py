"""Walking pydantic-core schemas: the indirections (``definitions``, ``definition-ref``,
validator wrappers) between a node and what it describes, for everything flujo reads out of
a model's core schema (the guards, the row shapes, the typed reader).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["WRAPPERS", "SchemaWalker"]

#: Validator wrappers: the schema they wrap describes the value.
WRAPPERS: Final = frozenset({"function-after", "function-before", "function-wrap"})


class SchemaWalker:
    """Follows a core schema's ``definitions`` / ``definition-ref`` indirections."""

    def __init__(self) -> None:
        self.definitions: dict[str, Any] = {}

    def inspect(self, node: dict[str, Any]) -> None:
        """Called on each indirection node before it is followed."""

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        if node.get("type") in WRAPPERS:
            self.inspect(node)
            return self.resolve(node["schema"])
        if node.get("type") == "definitions":
            self.inspect(node)
            for definition in node["definitions"]:
                self.definitions[definition["ref"]] = definition
            return self.resolve(node["schema"])
        if node.get("type") == "definition-ref":
            self.inspect(node)
            return self.resolve(self.definitions[node["schema_ref"]])
        return node
