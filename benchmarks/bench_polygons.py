"""MoNuSeg XML parsing speed: the XML parser (reference) against the byte scan, per file.

For each ``*.xml`` in ``--folder`` (or, by default, generated ImageScope exports the size
of MoNuSeg's: ~400 nuclei of ~200 vertices) times, as the best of ``--repeats`` rounds over
all files in turn (as a data check reads them, so one file's data is not left in cache
for its next call),

- ``reference``: file read, XML parser, per-region conversion (the path before the scan),
- ``fast``: ``read_polygons`` as it is now (the scan, deferring to the parser when unsure),
- ``raster``: ``rasterize_polygons`` of the outlines at ``--size`` (MoNuSeg: 1000x1000),

checks that both parsers give the same float64 bits, and prints milliseconds per file and
the reference / fast ratio. CPU only, single thread.

Examples::

    python benchmarks/bench_polygons.py
    python benchmarks/bench_polygons.py --folder data/MoNuSeg/MoNuSegTrainingData/Annotations
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from odssam.data.polygon_scan import region_arrays
from odssam.data.polygons import _read_annotation, _region_arrays_reference, rasterize_polygons, read_polygons


def write_imagescope_xml(path: Path, rng: np.random.Generator, nuclei: int, vertices: int) -> Path:
    """An Aperio ImageScope export in MoNuSeg's layout: ``nuclei`` outlines on a 1000 px tile."""
    lines = ['<Annotations MicronsPerPixel="0.252700">', '\t<Annotation Id="1" Name="" Type="4">', "\t\t<Regions>"]
    for number in range(1, nuclei + 1):
        centre = rng.uniform(20, 980, size=2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=vertices))
        radius = rng.uniform(4, 12)
        points = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        lines.append(f'\t\t\t<Region Id="{number}" Type="0" Zoom="5" Length="60.6" Area="205.9" Text="">')
        lines.append("\t\t\t\t<Attributes/>\n\t\t\t\t<Vertices>")
        lines.extend(f'\t\t\t\t\t<Vertex X="{x:.6f}" Y="{y:.1f}"/>' for x, y in points)
        lines.append("\t\t\t\t</Vertices>\n\t\t\t</Region>")
    lines.append("\t\t</Regions>\n\t</Annotation>\n</Annotations>\n")
    path.write_text("\n".join(lines))
    return path


def best_ms_per_file(call, paths: list[Path], repeats: int) -> list[float]:
    """Milliseconds of ``call(path)`` per path, best of ``repeats`` rounds over all paths."""
    best = [float("inf")] * len(paths)
    for _ in range(repeats):
        for index, path in enumerate(paths):
            begin = time.perf_counter()
            call(path)
            best[index] = min(best[index], (time.perf_counter() - begin) * 1e3)
    return best


def reference_arrays(path: Path) -> list[np.ndarray]:
    return _region_arrays_reference(path, _read_annotation(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=None, help="folder of *.xml (default: generated files)")
    parser.add_argument("--files", type=int, default=4, help="generated files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=1000, help="raster height and width")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.folder:
            paths = sorted(Path(args.folder).glob("*.xml"))
        else:
            rng = np.random.default_rng(0)
            paths = [write_imagescope_xml(Path(scratch) / f"{i}.xml", rng, 400, 200) for i in range(args.files)]
        rows, outlines = [], []
        for path in paths:
            reference = reference_arrays(path)
            scanned = region_arrays(path.read_bytes())
            if scanned is not None:
                same = len(scanned) == len(reference) and all(
                    a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))
                    for a, b in zip(scanned, reference)
                )
                if not same:
                    raise SystemExit(f"{path}: the scan and the XML parser differ")
            outlines.append(read_polygons(path))
            rows.append(
                {
                    "file": path.name,
                    "mb": path.stat().st_size / 1e6,
                    "vertices": sum(len(points) for points in reference),
                    "scanned": scanned is not None,
                }
            )
        by_path = dict(zip(paths, outlines))
        timings = {
            "reference_ms": best_ms_per_file(reference_arrays, paths, args.repeats),
            "fast_ms": best_ms_per_file(read_polygons, paths, args.repeats),
            "raster_ms": best_ms_per_file(
                lambda path: rasterize_polygons(by_path[path], args.size, args.size), paths, args.repeats
            ),
        }
        for index, row in enumerate(rows):
            row.update({name: values[index] for name, values in timings.items()})

    total_reference = sum(row["reference_ms"] for row in rows)
    total_fast = sum(row["fast_ms"] for row in rows)
    if args.json:
        print(json.dumps({"files": rows, "reference_ms": total_reference, "fast_ms": total_fast}, indent=1))
        return
    print(f"{'file':<32} {'MB':>5} {'vertices':>8} {'scan':>5} {'ref ms':>7} {'fast ms':>7} {'ratio':>6} {'raster ms':>9}")
    for row in rows:
        print(
            f"{row['file'][:32]:<32} {row['mb']:5.2f} {row['vertices']:8d} {'yes' if row['scanned'] else 'no':>5} "
            f"{row['reference_ms']:7.1f} {row['fast_ms']:7.1f} {row['reference_ms'] / row['fast_ms']:6.1f} "
            f"{row['raster_ms']:9.1f}"
        )
    raster = sum(row["raster_ms"] for row in rows)
    print(
        f"{len(rows)} files: reference {total_reference:.0f} ms, fast {total_fast:.0f} ms "
        f"({total_reference / total_fast:.1f}x), raster {raster:.0f} ms"
    )


if __name__ == "__main__":
    main()
