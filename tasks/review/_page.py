"""The review room's pages, rendered from one set of Jinja2 templates, served live or written as the static report.

Everything the ledger holds reaches the page escaped: templates autoescape, and data for the page's script goes in
a JSON block (``|tojson`` escapes ``<``, ``>`` and ``&``), never into script text.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import jinja2

from voidflow.infra.database import Artifact
from voidflow.tasks.ledger import Ledger
from voidflow.tasks.review._views import MediaUrl, batch_page
from voidflow.void_ops.files import atomic_write

__all__ = ["STATIC", "render", "write_report"]

#: The folder of the page's script and style sheet (served as ``/static/…``; inlined into the static report).
STATIC = Path(__file__).parent / "static"


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _inline(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def render(template: str, *, static: bool = False, **context: Any) -> str:
    """Render a page (``index``, ``overview``, ``cards`` or ``shot``).

    Args:
        static: for a file on disk (the report): the style and script inlined, no live updates or decisions.
        context: the template's records (dataclasses are passed through as they are).
    """
    assets = {"css": _inline("review.css"), "js": _inline("review.js")} if static else {}
    return _environment().get_template(f"{template}.html.j2").render(static=static, **assets, **context)


def _relative_to(folder: Path) -> MediaUrl:
    def url(artifact: Artifact) -> str:
        return os.path.relpath(artifact.path, folder)

    return url


def write_report(ledger: Ledger, batch_id: str, path: Path) -> Path:
    """Write the batch's report: the overview of its whole rerun chain as one self-contained HTML file, with review
    pictures and movies linked relative to ``path``. Written atomically; a rerun or a decision rewrites it whole.
    """
    page = batch_page(ledger, batch_id, _relative_to(path.parent))
    html = render("overview", static=True, page=page, data=dataclasses.asdict(page), user="")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return path
