"""index.html: the static scoreboard (one file, inline CSS, no external resources)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import jinja2
import markupsafe

from .model import OUTCOMES, ReportView
from .schema import PROJECT_ROOT
from .text import (check_label, error_line, failed_ranks, rank_label, sorted_failures,
                   visible_text)
from .values import diff_lines, pretty_json

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _finalize(value: object) -> object:
    """Control characters in untrusted text become visible escapes (HTML cannot show them)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return visible_text(value)
    return value


def environment() -> jinja2.Environment:
    """Autoescaping everywhere: messages and observations are untrusted text."""
    env = jinja2.Environment(
        finalize=_finalize,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(
        OUTCOMES=OUTCOMES,
        check_label=check_label,
        diff_lines=diff_lines,
        error_line=error_line,
        failed_ranks=failed_ranks,
        pretty_json=pretty_json,
        rank_label=rank_label,
        sorted_failures=sorted_failures,
    )
    return env


def source_link(relative: Optional[str], out_dir: Path) -> Optional[str]:
    """A relative link from out_dir to a suite file (case, spec) when that file exists here."""
    if not relative:
        return None
    path = PROJECT_ROOT / relative
    if not path.is_file():
        return None
    return Path(os.path.relpath(path, Path(out_dir).resolve())).as_posix()


def render_html(view: ReportView, out_dir: Path) -> str:
    template = environment().get_template("index.html.j2")
    return template.render(view=view, link=lambda rel: source_link(rel, out_dir))


def write_html(view: ReportView, path: Path) -> Path:
    path.write_text(render_html(view, path.parent), encoding="utf-8")
    return path
