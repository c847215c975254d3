"""Tools over the persisted formats: schema export, compatibility checks, type docs."""

from ._check import MODES, Finding, check_folder, committed_type_schemas
from ._compat import Narrowing, narrowings
from ._export import export, render_json, schema_documents, stale_files

__all__ = [
    "MODES",
    "Finding",
    "Narrowing",
    "check_folder",
    "committed_type_schemas",
    "export",
    "narrowings",
    "render_json",
    "schema_documents",
    "stale_files",
]
