"""Fast read of MoNuSeg XML annotations: vertex values found in the bytes with numpy.

An ImageScope export holds ~70k ``<Vertex X="..." Y="..."/>`` tags; the XML parser spends
~0.1 s per file calling back into Python for them. :func:`region_arrays` finds the same
values in the bytes, and only answers for a file when it has checked that the XML parser
reads it the same way: plain ASCII in a subset of XML (no entities, comments, CDATA, DTD,
processing instructions or namespaces) where it has matched every tag, start and end tags
pair up, and there is one root element. Anything else (another attribute order, quoting or
spacing of a Vertex tag too) is left to the XML parser: :mod:`odssam.data.polygons` holds
the reference and calls this first; the two give the same float64 bits (tested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_PAD = 16  # zero bytes around the data, so that fixed-width reads stay inside the array
_SPACE = rb"[ \t\r\n]"
_NAME = rb"[A-Za-z_][A-Za-z0-9._-]*"  # no ':': namespace prefixes go to the parser
_ATTRIBUTE = _SPACE + rb"+(" + _NAME + rb")" + _SPACE + rb"*=" + _SPACE + rb"*(?:\"[^\"<]*\"|'[^'<]*')"
_ATTRIBUTE_NAMES = re.compile(_ATTRIBUTE)
# Any tag but a Vertex start tag; groups: end-tag name, start-tag name, attributes, "/".
_OTHER_TAG = re.compile(
    rb"<(?:/(" + _NAME + rb")" + _SPACE + rb"*|(?!Vertex[ \t\r\n/>])(" + _NAME + rb")((?:"
    + _ATTRIBUTE.replace(b"(" + _NAME + b")", _NAME)
    + rb")*)"
    + _SPACE
    + rb"*(/?))>"
)
_DECLARATION = re.compile(
    rb"<\?xml" + _SPACE + rb"+version" + _SPACE + rb"*=" + _SPACE + rb'*"1\.0"'
    rb"(?:" + _SPACE + rb"+encoding" + _SPACE + rb"*=" + _SPACE + rb'*"(?i:utf-8)")?'
    rb"(?:" + _SPACE + rb"+standalone" + _SPACE + rb"*=" + _SPACE + rb'*"(?:yes|no)")?'
    + _SPACE
    + rb"*\?>"
)
# Bytes the parser decodes or refuses: control characters, '&' (entities), non-ASCII.
_NOT_PLAIN = bytes(range(0x09)) + b"\x0b\x0c" + bytes(range(0x0E, 0x20)) + b"&" + bytes(range(0x80, 0x100))
_VERTEX_OPEN, _VERTEX_MIDDLE, _VERTEX_CLOSE = b'<Vertex X="', b'" Y="', b'"/>'
# A vertex value outside the exact decimal parse is converted as the reference does when
# it only holds these bytes (no whitespace, which the parser would normalise).
_NUMBER_BYTES = b"0123456789.eE+-"

_WIDTH = 16  # bytes per decimal, read as two uint64 lanes of 8 digits
_MAX_EXACT_LENGTH = 15  # at most 15 digits: the integer mantissa stays below 2**53
_POWERS_INT = np.array([10**power for power in range(_WIDTH + 1)], dtype=np.uint64)
_POWERS = np.array([float(10**power) for power in range(_WIDTH + 1)])
_COLUMNS = np.arange(_WIDTH, dtype=np.uint8)
_INSIDE = _COLUMNS[None, :] >= _WIDTH - np.arange(_WIDTH + 1)[:, None]  # [length]: right-aligned bytes
_DOT_CODES = _COLUMNS + np.uint8(16)
_BLOCK = 8192  # values per block of the decimal parse


@dataclass(frozen=True)
class _Layout:
    """Where a file's vertex values are, and which vertices each Region holds.

    Attributes:
        padded: (B + 2 * _PAD,) uint8, the file's B bytes between zero padding.
        value_starts: ``(X, Y)``: two (V,) int64 offsets in ``padded`` of the vertex values.
        value_lengths: ``(X, Y)``: two (V,) int64 byte lengths of those values.
        region_ranges: ``(first, stop)`` vertex indices of each Region, in file order.
    """

    padded: np.ndarray
    value_starts: tuple[np.ndarray, np.ndarray]
    value_lengths: tuple[np.ndarray, np.ndarray]
    region_ranges: list[tuple[int, int]]


def _equal_at(padded: np.ndarray, offsets: np.ndarray, piece: bytes) -> np.ndarray:
    """(N,) bool: ``padded[offset : offset + len(piece)] == piece`` for each offset."""
    equal = np.ones(len(offsets), dtype=bool)
    for shift, byte in enumerate(piece):
        equal &= padded[offsets + shift] == byte
    return equal


def scan_layout(data: bytes) -> _Layout | None:
    """The vertex values and Regions of ``data`` as the XML parser reads them, or None.

    None whenever the file is not in the subset described above: the caller then parses
    it with the XML parser, which also raises the error of an invalid file.
    """
    if len(data.translate(None, _NOT_PLAIN)) != len(data):
        return None
    if b"]" in data and b"]]>" in data:  # not allowed in text (and the end of a CDATA)
        return None
    body = 0
    if data.startswith(b"<?"):
        declaration = _DECLARATION.match(data)
        if declaration is None:
            return None
        body = declaration.end()
    padded = np.frombuffer(bytes(_PAD) + data + bytes(_PAD), dtype=np.uint8)
    opens = np.flatnonzero(padded == ord("<"))
    opens = opens[opens >= body + _PAD]
    is_vertex = _equal_at(padded, opens, _VERTEX_OPEN)
    vertex_opens = np.flatnonzero(is_vertex)
    vertices, tags = opens[vertex_opens], opens[~is_vertex]
    # <Vertex X="x" Y="y"/>: each value ends at the first quote after its start.
    quotes = np.flatnonzero(padded == ord('"'))
    x_starts = vertices + len(_VERTEX_OPEN)
    x_quotes = np.searchsorted(quotes, x_starts)
    if len(vertices) and x_quotes[-1] + 2 >= len(quotes):
        return None
    x_ends = quotes[x_quotes]
    y_starts = x_ends + len(_VERTEX_MIDDLE)
    y_ends = quotes[x_quotes + 2]  # the middle piece holds the two quotes in between
    if not _equal_at(padded, x_ends, _VERTEX_MIDDLE).all() or not _equal_at(padded, y_ends, _VERTEX_CLOSE).all():
        return None
    # A value holding '<' (invalid XML) would hide a tag: the '<' after each Vertex tag
    # must come after its end.
    if (np.append(opens, len(padded))[vertex_opens + 1] < y_ends).any():
        return None
    region_ranges = _region_ranges(data, body, tags - _PAD, np.searchsorted(vertices, tags))
    if region_ranges is None:
        return None
    return _Layout(
        padded=padded,
        value_starts=(x_starts, y_starts),
        value_lengths=(x_ends - x_starts, y_ends - y_starts),
        region_ranges=region_ranges,
    )


def _region_ranges(
    data: bytes, body: int, tag_offsets: np.ndarray, vertices_before: np.ndarray
) -> list[tuple[int, int]] | None:
    """Check every tag but the Vertex ones, and follow Regions as ``_RegionCollector`` does.

    Args:
        data: The file's bytes.
        body: Offset after the XML declaration (0 without one).
        tag_offsets: (T,) offsets in ``data`` of every '<' that does not open a Vertex tag.
        vertices_before: (T,) number of Vertex tags before each of those.

    Returns:
        ``(first, stop)`` vertex indices of each Region, or None when a tag is not in the
        subset, start and end tags do not pair up, or there is content outside one root.
    """
    if not len(tag_offsets) or data[body : int(tag_offsets[0])].strip(b" \t\r\n"):
        return None  # no element, or text or a Vertex before the root element
    ranges: list[list[int]] = []
    open_names: list[bytes] = []
    current = None  # index of the Region collecting vertices, as in _RegionCollector
    end = body
    names_checked: set[tuple[bytes, ...]] = set()  # Region tags repeat the same names
    for number, (offset, before) in enumerate(zip(tag_offsets.tolist(), vertices_before.tolist())):
        if number and not open_names:
            return None  # a second root element
        tag = _OTHER_TAG.match(data, offset)
        if tag is None:
            return None
        end = tag.end()
        closing, opening, attributes, empty = tag.groups()
        if closing is not None:
            if not open_names or open_names.pop() != closing:
                return None
            if closing == b"Region" and current is not None:
                ranges[current][1] = before
                current = None
            continue
        if attributes:
            # With double quotes only, every other piece between quotes is ' name='.
            pieces = tuple(attributes.split(b'"')[0::2]) if b"'" not in attributes else None
            if pieces is None or pieces not in names_checked:
                names = _ATTRIBUTE_NAMES.findall(attributes)
                if len(set(names)) != len(names) or b"xmlns" in attributes:
                    return None  # a repeated attribute (invalid XML) or a namespace
                names_checked.add(pieces)
        if opening == b"Region":
            if current is not None:
                ranges[current][1] = before
            ranges.append([before, before])
            current = None if empty else len(ranges) - 1
        if not empty:
            open_names.append(opening)
    if open_names or data[end:].strip(b" \t\r\n"):
        return None
    return [(first, stop) for first, stop in ranges]


def _eight_digits(lanes: np.ndarray) -> np.ndarray:
    """(N,) uint64: the number written by 8 digits held one per byte, first digit lowest."""
    lanes = (lanes * np.uint64(10 * 2**8 + 1)) >> np.uint64(8)  # pairs of digits
    lanes = ((lanes & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(100 * 2**16 + 1)) >> np.uint64(16)
    return ((lanes & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(10000 * 2**32 + 1)) >> np.uint64(32)


def _byte_sums(rows: np.ndarray) -> np.ndarray:
    """(N,) int64 row sums of an (N, 16) uint8 array; each half row must sum to 255 at most."""
    lanes = rows.view("<u8")
    ones = np.uint64(0x0101010101010101)
    sums = ((lanes[:, 0] * ones) >> np.uint64(56)) + ((lanes[:, 1] * ones) >> np.uint64(56))
    return sums.astype(np.int64)


def _parse_decimals(
    padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of the ASCII decimals ``padded[start : start + length]``.

    A text ``-?digits[.digits]`` of at most 15 bytes is an integer mantissa m < 10**15
    (exact in float64) over 10**k (exact): one IEEE division gives the correctly rounded
    value, which is what the parser-then-``np.array`` reference gives too.

    Args:
        padded: (B,) uint8 bytes with at least 16 bytes before the first value.
        starts: (N,) int64 offsets of the values.
        lengths: (N,) int64 byte lengths.

    Returns:
        ``(values, exact)``, both (N,): ``values[i]`` holds where ``exact[i]``; other texts
        (exponents, '+', more digits, not a number) are left to the caller.
    """
    values = np.empty(len(starts), dtype=np.float64)
    exact = np.empty(len(starts), dtype=bool)
    # Blocks keep the (n, 16) temporaries in cache, and off fresh pages of memory.
    for first in range(0, len(starts), _BLOCK):
        block = slice(first, first + _BLOCK)
        values[block], exact[block] = _parse_decimal_block(padded, starts[block], lengths[block])
    return values, exact


def _parse_decimal_block(
    padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_parse_decimals`` of up to ``_BLOCK`` values."""
    rows = sliding_window_view(padded, _WIDTH)[starts + lengths - _WIDTH]  # (n, 16), right-aligned
    inside = _INSIDE[np.minimum(lengths, _WIDTH)]  # (n, 16): the value's own bytes
    digits = rows - np.uint8(ord("0"))  # wraps around for bytes below '0'
    is_digit = (digits < 10) & inside
    is_dot = (rows == ord(".")) & inside
    negative = padded[starts] == ord("-")
    n_digits = _byte_sums(is_digit.view(np.uint8))
    # 16 + column per '.': one '.' gives 16..31, two or more at least 32.
    dots = _byte_sums(is_dot.view(np.uint8) * _DOT_CODES)
    exact = (
        (lengths <= _MAX_EXACT_LENGTH)
        & (n_digits >= 1)
        & (dots < 32)  # at most one '.'
        & (n_digits + (dots >= 16) + negative == lengths)  # nothing else but a leading '-'
    )
    lanes = (digits * is_digit).view("<u8")
    scaled = _eight_digits(lanes[:, 0]) * np.uint64(10**8) + _eight_digits(lanes[:, 1])  # '.' read as 0
    has_dot = exact & (dots >= 16)
    fraction = np.where(has_dot, _WIDTH - 1 - (dots - 16), 0)  # digits after the '.'
    whole, part = np.divmod(scaled, _POWERS_INT[fraction + 1])
    mantissa = np.where(has_dot, whole * _POWERS_INT[fraction] + part, scaled)
    values = mantissa.astype(np.float64) / _POWERS[fraction]
    return np.where(negative, -values, values), exact  # "-0" is -0.0, as float("-0")


def _value_text(data: bytes, start: int, length: int) -> str | None:
    """The value at ``padded[start : start + length]`` as text if made of ``_NUMBER_BYTES``."""
    text = data[start - _PAD : start - _PAD + length]
    return None if text.translate(None, _NUMBER_BYTES) else text.decode("ascii")


def region_arrays(data: bytes) -> list[np.ndarray] | None:
    """One Vx2 float64 array per Region, equal to the XML parser's (``odssam.data.polygons``), or None.

    None when the scan is not sure of the layout, or a value is not a finite number (the
    reference then raises its error naming the region).
    """
    layout = scan_layout(data)
    if layout is None:
        return None
    (x_starts, y_starts), (x_lengths, y_lengths) = layout.value_starts, layout.value_lengths
    points = np.empty((len(x_starts), 2), dtype=np.float64)
    points[:, 0], x_exact = _parse_decimals(layout.padded, x_starts, x_lengths)
    points[:, 1], y_exact = _parse_decimals(layout.padded, y_starts, y_lengths)
    other_rows = np.flatnonzero(~(x_exact & y_exact)).tolist()
    if other_rows:
        # Exponents, '+', long decimals or no number at all: converted (or refused) as the
        # reference does, from the very text the parser would hand it.
        texts = [
            (
                _value_text(data, int(x_starts[row]), int(x_lengths[row])),
                _value_text(data, int(y_starts[row]), int(y_lengths[row])),
            )
            for row in other_rows
        ]
        if any(text is None for pair in texts for text in pair):
            return None
        try:
            points[other_rows] = np.array(texts, dtype=np.float64)
        except ValueError:
            return None
    if not np.isfinite(points).all():
        return None
    return [points[first:stop] for first, stop in layout.region_ranges]
