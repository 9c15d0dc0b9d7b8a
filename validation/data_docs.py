"""Great Expectations Data Docs that render on an air-gapped lab machine.

GX writes its Data Docs pages with their styles and scripts linked from public CDNs
(Bootstrap, jQuery, bootstrap-table, Font Awesome, Vega) and fills its result tables from
JavaScript at load time, so offline the pages show no table at all. The great_expectations
package ships only its own stylesheet, not those libraries. :func:`make_offline` therefore
rewrites each page to stand alone: every remote stylesheet, script and image is dropped, GX's
own stylesheet (from the installed package) is inlined with a few rules for plain tables and
tabs, and each bootstrap-table's columns and rows, which GX embeds in the page, are written
out as a static HTML table (rows that link to a page keep the link). Charts drawn by Vega
are left out; the numbers behind them are in the tables and in ``validation_result.json``.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import great_expectations

_GX_CSS = Path(great_expectations.__file__).parent / "render" / "view" / "static" / "styles" / "data_docs_default_styles.css"

_EXTRA_CSS = """
body { font-family: sans-serif; margin: 1em 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #d0d7de; padding: .25em .5em; text-align: left; vertical-align: top; }
.cooltip .top { display: none; }
.tab-pane { margin-bottom: 2em; }
"""

_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>", re.I)
_REMOTE_IMG = re.compile(r"<img\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.I | re.S)
_TABLE_DATA = re.compile(
    r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*columns:\s*(?P<columns>\[.*?\]),\s*"
    r"data:\s*(?P<data>\[.*?\]),\s*toolbar:",
    re.S,
)


def _static_table(columns: list[dict], rows: list[dict]) -> str:
    """Header and body of a bootstrap-table's data as plain HTML (cells are GX's own HTML)."""
    head = "".join(f"<th>{html.escape(str(c.get('title', c['field'])))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(f"<td>{row.get(c['field'], '')}</td>" for c in columns)
        link = row.get("_table_row_link_path")
        if link:
            cells += f'<td><a href="{html.escape(str(link))}">open</a></td>'
        body.append(f"<tr>{cells}</tr>")
    extra = "<th></th>" if any(r.get("_table_row_link_path") for r in rows) else ""
    return f"<thead><tr>{head}{extra}</tr></thead><tbody>{''.join(body)}</tbody>"


def offline_page(text: str) -> str:
    """One Data Docs page rewritten to need nothing from the network (see the module docstring)."""
    for match in _TABLE_DATA.finditer(text):
        columns, rows = ast.literal_eval(match["columns"]), ast.literal_eval(match["data"])
        table = re.compile(rf"(<table\s+id=\"{re.escape(match['id'])}\"[^>]*>)\s*(</table>)", re.S)
        text = table.sub(lambda m: m.group(1) + _static_table(columns, rows) + m.group(2), text, count=1)
    text = _SCRIPT.sub("", text)
    text = _REMOTE_LINK.sub("", text)
    text = _REMOTE_IMG.sub("", text)
    style = f"<style>\n{_GX_CSS.read_text()}\n{_EXTRA_CSS}</style>"
    return text.replace("</head>", f"{style}\n</head>", 1)


def make_offline(docs_dir: str | Path) -> list[Path]:
    """Rewrite every page of a Data Docs site in place with :func:`offline_page`; returns the pages."""
    pages = sorted(Path(docs_dir).rglob("*.html"))
    for page in pages:
        page.write_text(offline_page(page.read_text(encoding="utf-8")), encoding="utf-8")
    return pages
