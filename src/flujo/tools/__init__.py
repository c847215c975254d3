"""Tools over the persisted formats: schema export, compatibility checks, type docs."""

from ._check import MODES, Finding, check_folder, committed_type_schemas
from ._compat import Narrowing, narrowings
from ._docs import TypeDoc, collect, documents, render_html
from ._export import export, render_json, schema_documents, stale_files

__all__ = [
    "MODES",
    "Finding",
    "Narrowing",
    "TypeDoc",
    "check_folder",
    "collect",
    "committed_type_schemas",
    "documents",
    "export",
    "narrowings",
    "render_html",
    "render_json",
    "schema_documents",
    "stale_files",
]
