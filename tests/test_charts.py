"""Server-drawn SVG bar charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from swagstore import charts

SVG = "{http://www.w3.org/2000/svg}"


def test_bars_scale_to_the_largest_value_and_escape_labels():
    svg = charts.bars([("<tee>", 4), ("mug", 2), ("hat", 0)], title="Units & items")
    root = ET.fromstring(str(svg))
    assert root.find(SVG + "title").text == "Units & items"
    widths = [int(rect.get("width")) for rect in root.iter(SVG + "rect")]
    assert widths == [charts.BAR_WIDTH, charts.BAR_WIDTH // 2, 0]
    labels = [g.findall(SVG + "text") for g in root.iter(SVG + "g")]
    assert [(a.text, b.text) for a, b in labels] == [("<tee>", "4"), ("mug", "2"), ("hat", "0")]


def test_bars_with_nothing_say_so():
    assert "nothing yet" in charts.bars([], title="Units")
    assert "<svg" in charts.bars([("quiet", 0)], title="Units")


def test_the_label_column_fits_item_names_within_limits():
    def label_x(points):
        root = ET.fromstring(str(charts.bars(points, title="Units")))
        return int(next(root.iter(SVG + "rect")).get("x"))

    short, low = label_x([("mug", 1)]), charts.LABEL_WIDTH[0]
    assert short == low
    name = "Limited-edition conference hoodie, XL"
    assert label_x([(name, 1)]) == min(len(name) * charts.CHAR_WIDTH + 12, charts.LABEL_WIDTH[1])
    assert label_x([("x" * 200, 1)]) == charts.LABEL_WIDTH[1]
