"""The text of a Textual SVG screenshot, line by line, as a person reads the terminal."""

from __future__ import annotations

import html
import re
from collections import defaultdict

# Terminal rows only: their text has a class ending in -r<N> (the window title has none).
_TEXT = re.compile(r'<text class="[^"]*-r\d+"[^>]*\bx="([\d.]+)"[^>]*\by="([\d.]+)"[^>]*>'
                   r"(.*?)</text>", re.S)


def svg_lines(svg: str) -> list[str]:
    """Each terminal row's text, spans joined in x order (SVG pads with no-break spaces)."""
    rows: dict[float, list[tuple[float, str]]] = defaultdict(list)
    for x, y, body in _TEXT.findall(svg):
        text = html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")
        rows[float(y)].append((float(x), text))
    out = []
    for y in sorted(rows):
        line = ""
        for _, text in sorted(rows[y]):
            line += text
        out.append(line.rstrip("\n"))
    return out
