"""Compatibility of two JSON Schemas of the same stored form.

``narrowings(old, new)`` lists the places where ``new`` rejects a value that ``old`` accepted,
each with a JSON path and a one-line reason. That is the *backward* question ("can the new
code read data written under the old schema?"); the *forward* question is the same call with
the arguments swapped. The analysis is conservative: when it cannot prove a change safe (a
changed ``pattern``, say) it reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = Any
_BOUNDS_MIN = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_BOUNDS_MAX = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "$comment",
                          "examples", "default", "deprecated"})
_OPAQUE = ("pattern", "format", "propertyNames", "not", "contentEncoding", "multipleOf",
           "uniqueItems", "dependentRequired", "dependentSchemas")


@dataclass(frozen=True)
class Narrowing:
    """One way the new schema is stricter than the old one."""

    path: str
    reason: str


def narrowings(old: JSON, new: JSON) -> list[Narrowing]:
    """Where ``new`` rejects values that ``old`` accepted (``old``/``new``: whole documents)."""
    walker = _Walker(old, new)
    walker.compare(old, new, "$")
    return walker.found


def _types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    kinds = {declared} if isinstance(declared, str) else set(declared)
    if "number" in kinds:
        kinds.add("integer")
    return kinds


class _Walker:
    def __init__(self, old_root: JSON, new_root: JSON) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.found: list[Narrowing] = []
        self.active: set[tuple[str, str]] = set()

    def report(self, path: str, reason: str) -> None:
        self.found.append(Narrowing(path, reason))

    def resolve(self, schema: JSON, root: JSON) -> tuple[JSON, str | None]:
        if isinstance(schema, dict) and "$ref" in schema and _ANNOTATIONS.issuperset(
                k for k in schema if k != "$ref"):
            target = schema["$ref"]
            if isinstance(target, str) and target.startswith("#/"):
                node = root
                for part in target[2:].split("/"):
                    node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) \
                        if isinstance(node, dict) else {}
                return node, target
        return schema, None

    def compare(self, old: JSON, new: JSON, path: str) -> None:
        old, old_ref = self.resolve(old, self.old_root)
        new, new_ref = self.resolve(new, self.new_root)
        if old_ref or new_ref:
            key = (old_ref or id(old).__str__(), new_ref or id(new).__str__())
            if key in self.active:
                return
            self.active.add(key)
            try:
                self._compare(old, new, path)
            finally:
                self.active.discard(key)
            return
        self._compare(old, new, path)

    def _compare(self, old: JSON, new: JSON, path: str) -> None:
        if old is False or new is True or old == new:
            return
        if new is False:
            self.report(path, "the schema now rejects every value")
            return
        if old is True:
            old = {}
        if not isinstance(old, dict) or not isinstance(new, dict):
            return
        for key in ("anyOf", "oneOf"):
            if key in old:
                rest = {k: v for k, v in old.items() if k != key}
                for index, branch in enumerate(old[key]):
                    merged = {**rest, **branch} if isinstance(branch, dict) else branch
                    self._accepts_branch(merged, new, f"{path}", f"alternative {index} ")
                return
        if "anyOf" in new or "oneOf" in new:
            self._accepts_branch(old, new, path, "")
            return
        self._compare_allof(old, new, path)
        self._compare_keywords(old, new, path)

    def _accepts_branch(self, old: JSON, new: dict[str, Any], path: str, label: str) -> None:
        branches = new.get("anyOf") or new.get("oneOf")
        if not branches:
            self.compare(old, new, path)
            return
        rest = {k: v for k, v in new.items() if k not in ("anyOf", "oneOf")}
        best: list[Narrowing] | None = None
        for branch in branches:
            merged = {**rest, **branch} if isinstance(branch, dict) else branch
            trial = _Walker(self.old_root, self.new_root)
            trial.active = set(self.active)
            trial.compare(old, merged, path)
            if not trial.found:
                return
            if best is None or len(trial.found) < len(best):
                best = trial.found
        # Report the closest alternative's own findings: their paths say where it breaks.
        for narrowing in best or []:
            self.report(narrowing.path, f"{label}{narrowing.reason}")

    def _compare_allof(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_conditions = {_key(entry.get("if")): entry for entry in old.get("allOf", [])
                          if isinstance(entry, dict)}
        for entry in new.get("allOf", []):
            if not isinstance(entry, dict):
                continue
            if "if" in entry:
                # A conditional keyed on a tag the old schema did not know constrains only
                # values old data never held under that tag.
                previous = old_conditions.get(_key(entry.get("if")))
                if previous is not None:
                    self.compare(previous.get("then", True), entry.get("then", True), path)
                continue
            self.compare(old, entry, path)

    def _compare_keywords(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_types, new_types = _types(old), _types(new)
        if new_types is not None and (old_types is None or not old_types <= new_types):
            was = "any type" if old_types is None else "/".join(sorted(old_types))
            self.report(path, f"type narrowed from {was} to {'/'.join(sorted(new_types))}")
        if "enum" in new:
            if "enum" not in old and "const" not in old:
                self.report(path, f"values restricted to {new['enum']!r}")
            else:
                allowed = old.get("enum", [old.get("const")])
                removed = [v for v in allowed if v not in new["enum"]]
                if removed:
                    self.report(path, f"enum value(s) removed: {removed!r}")
        if ("const" in new and old.get("const", object()) != new["const"]
                and old.get("enum") != [new["const"]]):
            self.report(path, f"value fixed to {new['const']!r}")
        for key in _BOUNDS_MIN:
            if key in new and (key not in old or new[key] > old[key]):
                self.report(path, f"{key} raised to {new[key]!r} (was {old.get(key, 'none')!r})")
        for key in _BOUNDS_MAX:
            if key in new and (key not in old or new[key] < old[key]):
                self.report(path, f"{key} lowered to {new[key]!r} (was {old.get(key, 'none')!r})")
        for key in _OPAQUE:
            if key in new and old.get(key) != new[key]:
                self.report(path, f"{key} changed from {old.get(key)!r} to {new[key]!r}")
        self._compare_objects(old, new, path)
        self._compare_arrays(old, new, path)

    def _compare_objects(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        new_extra = new.get("additionalProperties", True)
        old_extra = old.get("additionalProperties", True)
        for name, old_prop in old_props.items():
            where = f"{path}.{name}"
            if name in new_props:
                self.compare(old_prop, new_props[name], where)
            elif new_extra is False:
                self.report(where, f"field {name!r} removed")
            else:
                self.compare(old_prop, new_extra, where)
        added_required = sorted(set(new.get("required", [])) - set(old.get("required", [])))
        for name in added_required:
            self.report(f"{path}.{name}", f"new required property {name!r} (old data lacks it)")
        if old_extra is not False and new_extra is False:
            self.report(path, "additionalProperties closed: undeclared fields are now rejected")
        elif isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.compare(old_extra, new_extra, f"{path}.*")

    def _compare_arrays(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_prefix: list[Any] = old.get("prefixItems", [])
        new_prefix: list[Any] = new.get("prefixItems", [])
        old_items = old.get("items", True)
        new_items = new.get("items", True)
        for index in range(max(len(old_prefix), len(new_prefix))):
            old_item = old_prefix[index] if index < len(old_prefix) else old_items
            new_item = new_prefix[index] if index < len(new_prefix) else new_items
            self.compare(old_item, new_item, f"{path}[{index}]")
        if "items" in new or "items" in old:
            self.compare(old_items, new_items, f"{path}[*]")


def _key(condition: Any) -> str:
    return repr(condition)
