"""Bar charts as inline SVG, drawn on the server: no script, no CDN, printable."""

from __future__ import annotations

from markupsafe import Markup, escape

ROW = 22
BAR_WIDTH = 300
VALUE_WIDTH = 60
# The label column fits the longest label (about 7 px a character at 12 px), within limits.
CHAR_WIDTH = 7
LABEL_WIDTH = (80, 280)


def bars(points: list[tuple[str, int]], *, title: str) -> Markup:
    """Draw one horizontal bar per (label, value), scaled to the largest value."""
    if not points:
        return Markup(f'<p class="empty">{escape(title)}: nothing yet.</p>')
    largest = max(value for _, value in points) or 1
    longest = max(len(label) for label, _ in points) * CHAR_WIDTH + 12
    label_width = min(max(longest, LABEL_WIDTH[0]), LABEL_WIDTH[1])
    width = label_width + BAR_WIDTH + VALUE_WIDTH
    height = ROW * len(points) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for n, (label, value) in enumerate(points):
        y = n * ROW + 2
        length = round(BAR_WIDTH * value / largest)
        parts.append(
            f'<g class="bar"><text x="{label_width - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{label_width}" y="{y + 2}" width="{length}" height="{ROW - 6}"/>'
            f'<text x="{label_width + length + 6}" y="{y + 15}">{value}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
