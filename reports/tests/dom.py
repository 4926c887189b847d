"""Readers of the generated HTML for the tests: XHTML-parsed files and browser DOM dumps."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional


def parse_xhtml(path: Path) -> ET.Element:
    """The writers emit well-formed markup, so the standard XML parser reads it."""
    return ET.parse(path).getroot()


def by_id(root: ET.Element, element_id: str) -> Optional[ET.Element]:
    for el in root.iter():
        if el.get("id") == element_id:
            return el
    return None


def text_of(el: ET.Element) -> str:
    return " ".join("".join(el.itertext()).split())


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


VOID_ELEMENTS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                           "meta", "source", "track", "wbr"})


class DomSummary(HTMLParser):
    """Reads a browser's serialized DOM (HTML, not XML): ids, script count, table texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.scripts = 0
        self.tables: dict[str, list[list[str]]] = {}
        self._table: Optional[str] = None
        self._row: Optional[list[str]] = None
        self._cell: Optional[list[str]] = None
        self.texts: dict[str, list[str]] = {}
        self._capture: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        attributes = dict(attrs)
        if tag in VOID_ELEMENTS:
            if attributes.get("id"):
                self.ids.append(str(attributes["id"]))
            return
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
            self.texts[str(attributes["id"])] = []
            self._capture.append(str(attributes["id"]))
        else:
            self._capture.append("")
        if tag == "script":
            self.scripts += 1
        if tag == "table" and attributes.get("id"):
            self._table = str(attributes["id"])
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
            self.tables[self._table].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS:
            return
        if self._capture:
            self._capture.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for element_id in self._capture:
            if element_id:
                self.texts[element_id].append(data)

    def text(self, element_id: str) -> str:
        return " ".join("".join(self.texts.get(element_id, [])).split())
