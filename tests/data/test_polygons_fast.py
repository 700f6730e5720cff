"""The byte scan of MoNuSeg XML equals the XML parser bit for bit, or defers to it.

Every case compares ``read_polygons`` / ``count_regions`` (and the scan itself) with the
reference path through the XML parser: the same float64 bits per region, the same region
count, or the same error message. Cases are also pinned to the path they must take (the
scan answers, or defers), so that an equality cannot hold only because both ran the parser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odssam.data.polygon_scan import _parse_decimals, region_arrays, scan_layout
from odssam.data.polygons import _parse_regions_reference, _region_arrays_reference, count_regions, read_polygons
from odssam.errors import OdsSamError

from data_layouts import MONUSEG_REGIONS, write_monuseg_xml


def imagescope_xml(regions: list[list[tuple[str, str]]], newline: str = "\n", declaration: str = "") -> str:
    """An Aperio ImageScope export as MoNuSeg ships it: tabs, headers, many attributes."""
    lines = [
        declaration + '<Annotations MicronsPerPixel="0.252700">',
        '\t<Annotation Id="1" Name="" ReadOnly="0" Type="4" LineColor="65280" Visible="1" MacroName="">',
        '\t\t<Attributes>\n\t\t\t<Attribute Name="Description" Id="0" Value=""/>\n\t\t</Attributes>',
        "\t\t<Regions>",
        '\t\t\t<RegionAttributeHeaders>\n\t\t\t\t<AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>',
        "\t\t\t</RegionAttributeHeaders>",
    ]
    for number, vertices in enumerate(regions, start=1):
        lines.append(
            f'\t\t\t<Region Id="{number}" Type="0" Zoom="5" Selected="0" ImageLocation="" Length="60.6" '
            f'Area="205.9" Text="a > b" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="{number}">'
        )
        lines.append("\t\t\t\t<Attributes/>\n\t\t\t\t<Vertices>")
        lines.extend(f'\t\t\t\t\t<Vertex X="{x}" Y="{y}"/>' for x, y in vertices)
        lines.append("\t\t\t\t</Vertices>\n\t\t\t</Region>")
    lines.append('\t\t</Regions>\n\t\t<Plots/>\n\t</Annotation>\n</Annotations>\n')
    return newline.join(lines)


def random_regions(rng: np.random.Generator, count: int) -> list[list[tuple[str, str]]]:
    """Regions of 0..30 vertices written like ImageScope: '114.200000', '109', '-0.4'."""
    regions = []
    for _ in range(count):
        points = rng.uniform(-5.0, 1000.0, size=(int(rng.integers(0, 31)), 2))
        texts = []
        for value in points.ravel():
            kind = rng.integers(3)
            texts.append(f"{value:.6f}" if kind == 0 else f"{round(value)}" if kind == 1 else f"{value:.1f}")
        regions.append(list(zip(texts[0::2], texts[1::2])))
    return regions


def outcome(call, *args):
    """``call(*args)``, or the message of the OdsSamError it raises."""
    try:
        return call(*args)
    except OdsSamError as error:
        return f"error: {error}"


def assert_same_arrays(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.dtype == want.dtype == np.float64
        assert got.shape == want.shape
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64))  # bits: -0.0 too


def assert_matches_reference(path: Path, fast: bool) -> None:
    """Public results equal the XML parser's; ``fast`` says whether the scan must answer."""
    data = path.read_bytes()
    scanned = region_arrays(data)
    assert (scanned is not None) == fast
    reference = outcome(_region_arrays_reference, path, data)
    if isinstance(reference, str):
        assert outcome(read_polygons, path) == reference
    else:
        if scanned is not None:
            assert_same_arrays(scanned, reference)
        assert_same_arrays(read_polygons(path), [points for points in reference if len(points) >= 3])
    assert outcome(count_regions, path) == outcome(lambda: len(_parse_regions_reference(path, data)))


def write(tmp_path: Path, text: str | bytes, name: str = "a.xml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --------------------------------------------------------------------------- the scan answers


def test_generated_layout_is_scanned(tmp_path):
    assert_matches_reference(write_monuseg_xml(tmp_path / "a.xml", MONUSEG_REGIONS), fast=True)


def test_imagescope_layout_with_small_and_empty_regions(tmp_path, rng):
    regions = random_regions(rng, 40) + [[], [("1", "2")], [("1", "2"), ("3", "4")]]
    path = write(tmp_path, imagescope_xml(regions))
    assert_matches_reference(path, fast=True)
    assert count_regions(path) == 43
    assert len(read_polygons(path)) == sum(len(vertices) >= 3 for vertices in regions)


@pytest.mark.parametrize("newline", ["\r\n", "", "\n\n \t"])
def test_line_ends_and_spacing_between_tags(tmp_path, rng, newline):
    assert_matches_reference(write(tmp_path, imagescope_xml(random_regions(rng, 5), newline)), fast=True)


def test_utf8_declaration(tmp_path, rng):
    text = imagescope_xml(random_regions(rng, 3), declaration='<?xml version="1.0" encoding="UTF-8"?>\n')
    assert_matches_reference(write(tmp_path, text), fast=True)


@pytest.mark.parametrize(
    "texts",
    [
        ["1e3", "-2.5E-2", "1e-310", "1.5e+2"],  # scientific notation, a subnormal
        ["-0", "-0.0", "0", "+1"],  # signed zeros, an explicit '+'
        [".5", "5.", "-.5", "-5."],
        ["123456789012345", "12345678901234.5", "1234567890123456", "0.12345678901234567890123"],
        ["-999999999999999", "0.000000000000001", "-17", "007.50"],
    ],
)
def test_numbers_convert_as_the_reference(tmp_path, texts):
    path = write(tmp_path, imagescope_xml([list(zip(texts[0::2], texts[1::2])) * 2]))
    assert_matches_reference(path, fast=True)


def test_random_decimals_bit_for_bit(tmp_path, rng):
    """Decimals of 1..15 bytes (the exact parse) and longer ones (the reference conversion)."""
    texts = []
    for _ in range(4000):
        digits = "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 18))))
        cut = int(rng.integers(0, len(digits) + 1))
        text = digits if rng.random() < 0.3 else f"{digits[:cut]}.{digits[cut:]}"
        texts.append(("-" if rng.random() < 0.3 else "") + text)
    path = write(tmp_path, imagescope_xml([list(zip(texts[0::2], texts[1::2]))]))
    assert_matches_reference(path, fast=True)


def test_exact_decimal_parse_against_float():
    texts = ["0", "-0", "1.", ".1", "0.1", "114.200000", "-12.34", "999999999999999", "90071992547.993"]
    texts += ["1e5", "+1", "1.2.3", "-", ".", "1-2", "", "1234567890123456", " 1"]
    data = b"".join(b'"' + text.encode() + b'"' for text in texts)
    padded = np.frombuffer(bytes(16) + data + bytes(16), dtype=np.uint8)
    lengths = np.array([len(text) for text in texts])
    starts = 16 + 1 + np.concatenate([[0], np.cumsum(lengths + 2)[:-1]])
    values, exact = _parse_decimals(padded, starts, lengths)
    assert exact.tolist() == [True] * 9 + [False] * 9
    for text, value in zip(texts[:9], values[:9]):
        assert np.float64(value).view(np.uint64) == np.float64(float(text)).view(np.uint64), text


@pytest.mark.parametrize("regions", [[], [[]], [[], []]])
def test_files_without_vertices(tmp_path, regions):
    path = write(tmp_path, imagescope_xml(regions))
    assert_matches_reference(path, fast=True)
    assert count_regions(path) == len(regions) and read_polygons(path) == []


def test_structure_the_collector_follows(tmp_path):
    """Vertices outside any Region are ignored; a nested Region ends its parent's outline."""
    text = (
        '<Annotations><Vertices><Vertex X="9" Y="9"/></Vertices><Regions>'
        '<Region Id="1"><Vertices><Vertex X="1" Y="1"/><Vertex X="2" Y="1"/>'
        '<Region Id="2"><Vertex X="5" Y="5"/><Vertex X="6" Y="5"/><Vertex X="6" Y="6"/></Region>'
        '<Vertex X="3" Y="3"/></Vertices></Region><Region Id="3"/>'
        '<Region Id="4"><Deeper><Vertex X="0" Y="0"/><Vertex X="1" Y="0"/><Vertex X="1" Y="1"/></Deeper>text</Region>'
        "</Regions></Annotations>"
    )
    path = write(tmp_path, text)
    assert_matches_reference(path, fast=True)
    assert [len(points) for points in region_arrays(path.read_bytes())] == [2, 3, 0, 3]


# --------------------------------------------------------------------------- the scan defers


VARIANTS = {
    "attribute order": '<Vertex Y="2" X="1"/>',
    "single quotes": "<Vertex X='1' Y='2'/>",
    "space before />": '<Vertex X="1" Y="2" />',
    "newline between attributes": '<Vertex\nX="1"\nY="2"/>',
    "third attribute": '<Vertex X="1" Y="2" Z="0"/>',
    "vertex end tag": '<Vertex X="1" Y="2"></Vertex>',
    "character reference": '<Vertex X="&#49;2.5" Y="2"/>',
    "entity": '<Vertex X="1" Y="2&amp;"/>',
    "newline in a value": '<Vertex X="1.5\n" Y="2"/>',
    "space in a value": '<Vertex X=" 1.5" Y="2"/>',
    "comment": '<!-- <Vertex X="7" Y="7"/> -->',
    "cdata": '<![CDATA[ <Vertex X="7" Y="7"/> ]]>',
    "processing instruction": '<?pi <Vertex X="7" Y="7"/> ?>',
    "namespace": '<Vertex xmlns="urn:x" X="1" Y="2"/>',
    "prefixed tag": '<a:Vertex xmlns:a="urn:x" X="1" Y="2"/>',
    "not a number": '<Vertex X="abc" Y="2"/>',
    "empty value": '<Vertex X="" Y="2"/>',
    "infinite": '<Vertex X="1e400" Y="2"/>',
    "nan": '<Vertex X="nan" Y="2"/>',
    "missing Y": '<Vertex X="1"/>',
    "'<' in a value": '<Vertex X="1<" Y="2"/>',
    "repeated attribute": '<Vertex X="1" Y="2" Y="3"/>',
    "unclosed tag": "<Vertices>",
    "stray end tag": "</Vertices>",
    "non-ascii text": "<Note>caf\u00e9</Note>",
    "control character": "<Note>\x01</Note>",
    "bare ampersand": "<Note>a & b</Note>",
    "cdata end in text": "<Note>]]></Note>",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_go_to_the_parser(tmp_path, name):
    """One unusual tag in the middle of a region: the parser decides, errors included."""
    square = ['<Vertex X="0" Y="0"/>', '<Vertex X="4" Y="0"/>', '<Vertex X="4" Y="4"/>']
    text = (
        '<Annotations><Regions><Region Id="5"><Vertices>'
        + "".join(square[:2])
        + VARIANTS[name]
        + square[2]
        + "</Vertices></Region></Regions></Annotations>"
    )
    assert_matches_reference(write(tmp_path, text), fast=False)


@pytest.mark.parametrize(
    "head",
    [
        '<?xml version="1.0" encoding="ISO-8859-1"?>',  # another encoding
        ' <?xml version="1.0"?>',  # a declaration not at the start: invalid
        '<!DOCTYPE Annotations [<!ENTITY x "1">]>',
        "\ufeff",  # a byte order mark
        "text",  # text before the root
        "<Other/>",  # a second root
    ],
)
def test_document_heads_go_to_the_parser(tmp_path, head):
    body = write_monuseg_xml(tmp_path / "base.xml", MONUSEG_REGIONS).read_text()
    assert_matches_reference(write(tmp_path, head + body), fast=False)


def test_utf16_file_goes_to_the_parser(tmp_path):
    text = '<?xml version="1.0" encoding="UTF-16"?>' + imagescope_xml([[("1", "2"), ("3", "4"), ("5", "6")]])
    path = write(tmp_path, text.encode("utf-16"))
    assert_matches_reference(path, fast=False)
    assert len(read_polygons(path)) == 1


@pytest.mark.parametrize("cut", [0, 1, 30, -40, -1])
def test_truncated_files_raise_the_parser_error(tmp_path, cut):
    text = write_monuseg_xml(tmp_path / "base.xml", MONUSEG_REGIONS).read_text()
    path = write(tmp_path, text[:cut])
    assert_matches_reference(path, fast=False)
    with pytest.raises(OdsSamError, match="a.xml: not a valid XML annotation"):
        read_polygons(path)


def test_error_messages_name_the_region(tmp_path):
    text = imagescope_xml([[("1", "2")] * 3, [("1", "2"), ("x", "3")]])
    path = write(tmp_path, text)
    with pytest.raises(OdsSamError, match="a.xml: region 2 has a vertex without numeric X/Y"):
        read_polygons(path)
    path = write(tmp_path, imagescope_xml([[("1", "2")] * 3, [("1", "1e999")] * 3]))
    with pytest.raises(OdsSamError, match="a.xml: region 2 has a non-finite vertex"):
        read_polygons(path)
    assert count_regions(path) == 2  # counting does not read the values


def test_mutated_files_agree_with_the_parser(tmp_path, rng):
    """Random edits of a valid file: each result or error is the parser's."""
    base = imagescope_xml(random_regions(rng, 3), declaration='<?xml version="1.0"?>\n')
    alphabet = list('<>/"=&!?-. \n\tXYRegionVertex0123456789e;#[]')
    for index in range(300):
        text = list(base)
        for _ in range(int(rng.integers(1, 4))):
            position = int(rng.integers(0, len(text)))
            action = rng.integers(3)
            if action == 0:
                del text[position]
            elif action == 1:
                text.insert(position, str(rng.choice(alphabet)))
            else:
                text[position] = str(rng.choice(alphabet))
        path = write(tmp_path, "".join(text), name=f"m{index}.xml")
        data = path.read_bytes()
        assert_matches_reference(path, fast=region_arrays(data) is not None)
        if scan_layout(data) is not None:  # the scan only answers for well-formed XML
            _parse_regions_reference(path, data)
