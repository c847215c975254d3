"""The JSON Schemas of the stored formats, as the ``flujo schema`` commands use them:
export (``export``, ``stale_files``), compatibility checks (``check_folder``,
``narrowings``) and type documentation (``collect``, ``documents``, ``render_html``).

Until 0.17.0 this was ``flujo.tools``, which still works and warns.
"""

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
