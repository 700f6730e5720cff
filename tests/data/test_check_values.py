"""``odssam data check`` on masks that are not binary at the loader's threshold, and on
images too elongated for SAM's input: each case is a generated file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from odssam.cli.main import main
from odssam.data import check_dataset

from data_layouts import disk, make_binary_folder
from helpers import random_rgb, save_image

HEIGHT, WIDTH = 32, 40
DISK = disk(HEIGHT, WIDTH, (16, 20), 10)
RING = DISK & ~disk(HEIGHT, WIDTH, (16, 20), 8)  # ~100 edge pixels, ~8 % of the mask


def _gray(values) -> np.ndarray:
    return np.asarray(values).astype(np.uint8)


def _noise(rng) -> np.ndarray:
    return rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)


def _label_map(rng) -> np.ndarray:
    return _gray(np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * 6 // (HEIGHT * WIDTH))  # 0..5


def _soft_edges(rng) -> np.ndarray:
    mask = _gray(disk(HEIGHT, WIDTH, (16, 20), 8)) * 255
    ring = np.flatnonzero(RING)[::2]  # ~4 % of the pixels, each of its own grey level
    mask.flat[ring] = np.linspace(70, 190, len(ring)).astype(np.uint8)
    return mask


def _three_levels(rng) -> np.ndarray:
    return _gray(np.where(DISK, 255, np.where(disk(HEIGHT, WIDTH, (4, 4), 5), 100, 0)))


def _clinicdb_fringe(rng) -> np.ndarray:
    # CVC-ClinicDB's masks: a dark-grey (11) band around the polyp that reads as background.
    return _gray(np.where(DISK, 255, np.where(disk(HEIGHT, WIDTH, (16, 20), 12), 11, 0)))


def _palette(rng, colours: int) -> Image.Image:
    indices = _gray(np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * colours // (HEIGHT * WIDTH))
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    return image


def _write(path, content) -> None:
    path.unlink()
    if isinstance(content, Image.Image):
        content.save(path)
    elif path.suffix == ".tif":
        tifffile.imwrite(path, content)
    else:
        save_image(content, path)


# (mask file name, content maker, expected level or None, words the message must hold)
CASES = {
    "zero_hundred": ("a.png", lambda rng: _gray(DISK) * 100, "error", ["foreground lost", "up to 100", "> 127"]),
    "label_map": ("a.png", _label_map, "error", ["foreground lost", "label map (0, 1, 2, 3, 4, 5)"]),
    "pure_red": (
        "a.png",
        lambda rng: np.stack([_gray(DISK) * 255, 0 * _gray(DISK), 0 * _gray(DISK)], axis=-1),
        "error",
        ["colour mask", "(255, 0, 0)"],
    ),
    "noise": ("a.png", _noise, "error", ["not a binary mask", "noise"]),
    "nan_float_tiff": (
        "a.tif",
        lambda rng: np.where(DISK, 1.0, np.nan).astype(np.float32),
        "error",
        ["NaN or infinite"],
    ),
    "three_levels": ("a.png", _three_levels, "error", ["label map", "(100, 255)"]),
    "wide_zero_thousand": ("a.tif", lambda rng: DISK.astype(np.uint16) * 1000, "error", ["foreground lost", "> 32767"]),
    "float_zero_point_three": ("a.tif", lambda rng: (DISK * 0.3).astype(np.float32), "error", ["> 0.5"]),
    "soft_edges": ("a.png", _soft_edges, "warning", ["soft edges"]),
    "palette_label_map": ("a.png", lambda rng: _palette(rng, 4), "warning", ["palette mask with 4 colours"]),
    "zero_one": ("a.png", lambda rng: _gray(DISK), None, []),
    "clinicdb_fringe": ("a.png", _clinicdb_fringe, None, []),
    "two_colour_palette": ("a.png", lambda rng: _palette(rng, 2), None, []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mask_values(tmp_path, rng, case):
    name, make, level, words = CASES[case]
    root = make_binary_folder(tmp_path / "own", rng)
    path = root / "masks" / name
    (root / "masks" / "a.png").rename(path)
    _write(path, make(rng))
    report = check_dataset("folder", root, progress=False, sam_image_size=256)
    issues = [issue for issue in report.issues if issue.path == str(path)]
    if level is None:
        assert report.ok and not report.warnings, report.format_text()
        return
    assert [issue.level for issue in issues] == [level], report.format_text()
    for word in words:
        assert word in issues[0].message, issues[0].message
    assert f"{path}: " in report.format_text()
    assert report.ok == (level == "warning")
    assert report.splits["train"].readable + report.splits["test"].readable == 2  # decoded all the same


@pytest.mark.parametrize("quality", [30, 60, 90])
def test_jpeg_compressed_binary_mask_passes(tmp_path, rng, quality):
    root = make_binary_folder(tmp_path / "own", rng, names=("a", "b", "c"))
    for name in ("a", "b", "c"):
        (root / "masks" / f"{name}.png").unlink()
        mask = disk(HEIGHT, WIDTH, (10 + 4 * len(name), 20), 6 + ord(name) % 5)
        rgb = np.repeat(_gray(mask)[:, :, None] * 255, 3, axis=2)  # as Kvasir-SEG ships them
        save_image(rgb, root / "masks" / f"{name}.jpg", quality=quality)
    values = np.asarray(Image.open(root / "masks" / "a.jpg").convert("L"))
    assert len(np.unique(values)) > 2  # the compression noise is there
    report = check_dataset("folder", root, progress=False)
    assert report.ok and not report.warnings, report.format_text()


@pytest.mark.parametrize(
    "content, words",
    [
        (lambda rng: np.repeat(_gray(DISK)[:, :, None] * 100, 3, axis=2), ["foreground lost", "values up to"]),
        (lambda rng: random_rgb(rng, HEIGHT, WIDTH), ["not a binary mask", "JPEG compression noise"]),
    ],
    ids=["zero_hundred", "noise"],
)
def test_bad_jpeg_masks_are_problems(tmp_path, rng, content, words):
    root = make_binary_folder(tmp_path / "own", rng)
    (root / "masks" / "a.png").unlink()
    path = save_image(content(rng), root / "masks" / "a.jpg", quality=90)
    report = check_dataset("folder", root, progress=False)
    problems = [issue for issue in report.problems if issue.path == str(path)]
    assert len(problems) == 1 and all(word in problems[0].message for word in words), report.format_text()


def _elongated_folder(tmp_path, rng, height, width):
    root = make_binary_folder(tmp_path / "own", rng)
    path = save_image(random_rgb(rng, height, width), root / "images" / "long.png")
    mask = np.zeros((height, width), dtype=bool)
    mask[:, : width // 2] = True
    save_image(mask, root / "masks" / "long.png")
    return root, path


def test_too_elongated_for_sam_is_a_problem(tmp_path, rng):
    root, path = _elongated_folder(tmp_path, rng, 7, 4097)
    report = check_dataset("folder", root, progress=False, sam_image_size=256)
    problems = [issue for issue in report.problems if issue.path == str(path)]
    assert len(problems) == 1, report.format_text()
    message = problems[0].message
    assert "4097x7 (WxH" in message and "leaving 0 px" in message and "up to 512:1" in message
    # The official 1024-px input keeps 2 px of it: it runs, but less than a patch: a warning.
    report = check_dataset("folder", root, progress=False)
    assert report.ok
    warnings = [issue for issue in report.warnings if issue.path == str(path)]
    assert len(warnings) == 1 and "leaving 2 px" in warnings[0].message and "16-px patch" in warnings[0].message


def test_aspect_limit_is_two_sam_sides(tmp_path, rng):
    root, path = _elongated_folder(tmp_path, rng, 1, 512)
    assert check_dataset("folder", root, progress=False, sam_image_size=256).ok  # 512:1 fits
    root, path = _elongated_folder(tmp_path / "more", rng, 1, 513)
    report = check_dataset("folder", root, progress=False, sam_image_size=256)
    assert [issue.path for issue in report.problems] == [str(path)]


def test_cli_sam_image_size(tmp_path, rng, capsys):
    root, path = _elongated_folder(tmp_path, rng, 20, 20000)
    arguments = ["data", "check", "--dataset", "folder", "--root", str(root)]
    assert main(arguments) == 0
    assert main([*arguments, "--sam-image-size", "256"]) == 1
    out = capsys.readouterr().out
    assert f"problem: {path}: image is 20000x20 (WxH, 1000:1)" in out and "up to 512:1" in out
    with pytest.raises(Exception, match="sam_image_size must be a positive integer"):
        check_dataset("folder", root, sam_image_size=0)
