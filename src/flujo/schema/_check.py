"""``flujo schema check``: may the code's schemas replace the committed ones?

Per type name, against the committed ``types/<name>@<version>.schema.json`` files:

- same version as the newest committed one: any incompatible change is an error (the version
  was not bumped);
- a higher version: a migration chain from each compared earlier version is required (the
  newest one only, or every one in the ``-transitive`` modes); incompatible changes covered by
  that chain are reported as information. In ``forward``/``full`` modes a bump is itself an
  error, since code at the older version refuses newer data (FutureVersionError);
- a lower version, or a committed type that the code no longer knows: an error.

Other documents (the tagged format, the envelope) are compared file by file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..exceptions import InvalidArgumentError
from ..serialization import TypeCodec, TypeRegistry
from ._compat import narrowings
from ._export import schema_documents
from ._files import TYPE_SCHEMA_SUFFIX, name_of_stem

MODES = ("backward", "forward", "full",
         "backward-transitive", "forward-transitive", "full-transitive")
Severity = Literal["error", "info"]
_TYPE_FILE_SUFFIX = TYPE_SCHEMA_SUFFIX
_TAG_PATH = "$.$t"


@dataclass(frozen=True)
class Finding:
    subject: str
    path: str
    reason: str
    severity: Severity

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _directions(mode: str) -> tuple[bool, bool]:
    base = mode.removesuffix("-transitive")
    return base in ("backward", "full"), base in ("forward", "full")


def _incompatibilities(old: Any, new: Any, mode: str) -> list[tuple[str, str]]:
    backward, forward = _directions(mode)
    found: list[tuple[str, str]] = []
    # The tag's own "name@version" constant changes with every bump; that is not a change
    # of the stored form.
    if backward:
        found += [(n.path, f"backward: {n.reason}") for n in narrowings(old, new)]
    if forward:
        found += [(n.path, f"forward: {n.reason}") for n in narrowings(new, old)]
    return [(path, reason) for path, reason in found if path != _TAG_PATH]


def committed_type_schemas(folder: Path) -> dict[str, dict[int, Any]]:
    """``{type name: {version: schema}}`` from ``folder/types``."""
    found: dict[str, dict[int, Any]] = {}
    for file in sorted((folder / "types").glob(f"*{_TYPE_FILE_SUFFIX}")):
        tag = name_of_stem(file.name.removesuffix(_TYPE_FILE_SUFFIX))
        name, _, version = tag.rpartition("@")
        if name and version.isdecimal():
            found.setdefault(name, {})[int(version)] = json.loads(file.read_text("utf-8"))
    return found


def _has_chain(codec: TypeCodec, start: int) -> int | None:
    """The first version in ``[start, codec.version)`` with no migration, else None."""
    for version in range(start, codec.version):
        if version not in codec.migrations:
            return version
    return None


def check_folder(folder: Path, registry: TypeRegistry, types: list[type],
                 mode: str = "backward") -> list[Finding]:
    if mode not in MODES:
        raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    transitive = mode.endswith("-transitive")
    _, forward = _directions(mode)
    documents = schema_documents(registry, types)
    findings: list[Finding] = []
    committed = committed_type_schemas(folder)
    current: dict[str, tuple[TypeCodec, Any]] = {}
    for file_name, document in documents.items():
        if file_name.startswith("types/"):
            name = name_of_stem(file_name.removeprefix("types/").removesuffix(_TYPE_FILE_SUFFIX))
            name = name.rpartition("@")[0]
            codec = registry.codec_named(name)
            if codec is not None:
                current[name] = (codec, document)
        else:
            target = folder / file_name
            if target.exists():
                old = json.loads(target.read_text("utf-8"))
                findings += [Finding(file_name, path, reason, "error")
                             for path, reason in _incompatibilities(old, document, mode)]
    for name in sorted(set(committed) | set(current)):
        versions = committed.get(name, {})
        if name not in current:
            codec = registry.codec_named(name)
            if codec is None:
                findings.append(Finding(name, "$", "type removed: stored data naming it can no "
                                        "longer be read (keep it, or register an alias)", "error"))
            continue
        codec, document = current[name]
        if not versions:
            findings.append(Finding(name, "$", f"new type at v{codec.version}", "info"))
            continue
        latest = max(versions)
        if codec.version < latest:
            findings.append(Finding(name, "$", f"version went back from v{latest} to "
                                    f"v{codec.version}", "error"))
            continue
        if codec.version == latest:
            findings += [Finding(name, path, f"{reason} — without a version bump", "error")
                         for path, reason in _incompatibilities(versions[latest], document, mode)]
            continue
        if forward:
            findings.append(Finding(name, "$", f"bumped v{latest} -> v{codec.version}: code at "
                                    f"v{latest} refuses v{codec.version} data", "error"))
        compared = sorted(versions) if transitive else [latest]
        for version in compared:
            gap = _has_chain(codec, version)
            if gap is not None:
                findings.append(Finding(name, "$", f"bumped to v{codec.version} without a "
                                        f"migration from v{gap} (needed to read v{version} data)",
                                        "error"))
                continue
            findings += [Finding(name, path, f"{reason} (v{version} data is migrated)", "info")
                         for path, reason in _incompatibilities(versions[version], document,
                                                                "backward")]
    return findings
