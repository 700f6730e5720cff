"""Seeded generators of the inputs users get wrong: image files, masks, dataset folders,
config files and overrides, checkpoints, output folders.

Every function takes a ``numpy.random.Generator`` and returns the same thing for the same
seed. Files are small (tens of pixels, a few kB), so thousands are made in seconds.
Valid-but-odd inputs (16-bit, CMYK, palette, extreme aspect ratios) are here too: a
command must take or clearly refuse them.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from helpers import random_rgb, save_image
from PIL import Image

SHAPE = (40, 56)

# --------------------------------------------------------------------------- bytes


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` cut at a random length (never whole, possibly empty)."""
    return data[: int(rng.integers(0, len(data)))]


def flip_bits(data: bytes, rng: np.random.Generator, count: int | None = None) -> bytes:
    """``data`` with 1..8 (or ``count``) single bits flipped at random positions."""
    damaged = bytearray(data)
    for _ in range(count or int(rng.integers(1, 9))):
        position = int(rng.integers(0, len(damaged)))
        damaged[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(damaged)


def text_bytes(rng: np.random.Generator) -> bytes:
    return rng.choice([b"", b"hello\n", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n",
                       b"<html><body>404 Not Found</body></html>", bytes(rng.integers(0, 256, 64, dtype=np.uint8))])


# --------------------------------------------------------------------------- images

# Valid images in the modes users have: (name, PIL mode, file format).
IMAGE_MODES = (
    ("rgb_png", "RGB", "PNG"), ("grey_png", "L", "PNG"), ("alpha_png", "RGBA", "PNG"), ("la_png", "LA", "PNG"),
    ("palette_png", "P", "PNG"), ("sixteen_bit_png", "I;16", "PNG"), ("int32_tiff", "I", "TIFF"),
    ("bilevel_png", "1", "PNG"), ("rgb_jpeg", "RGB", "JPEG"), ("grey_jpeg", "L", "JPEG"),
    ("cmyk_jpeg", "CMYK", "JPEG"), ("cmyk_tiff", "CMYK", "TIFF"), ("float_tiff", "F", "TIFF"),
    ("rgb_bmp", "RGB", "BMP"), ("palette_bmp", "P", "BMP"), ("rgba_tiff", "RGBA", "TIFF"), ("rgb_webp", "RGB", "WEBP"),
)
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp"}


def image_bytes(rng: np.random.Generator, mode: str = "RGB", fmt: str = "PNG", shape=SHAPE) -> bytes:
    """A noise image of ``shape`` in PIL ``mode``, encoded as ``fmt``."""
    image = Image.fromarray(random_rgb(rng, *shape))
    if mode == "P":
        image = image.quantize(16)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16))
    elif mode == "F":
        image = Image.fromarray(rng.random(shape, dtype=np.float32))
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def odd_image(rng: np.random.Generator) -> tuple[str, str, bytes]:
    """``(kind, file name, bytes)`` of a valid image in an unusual mode or format."""
    name, mode, fmt = IMAGE_MODES[int(rng.integers(len(IMAGE_MODES)))]
    return name, f"{name}{EXTENSIONS[fmt]}", image_bytes(rng, mode, fmt)


def extreme_image(rng: np.random.Generator) -> tuple[str, str, bytes]:
    """A valid image of an extreme aspect ratio (20x20000, 7x4097 or transposed), or 1x1."""
    shape = [(20, 20000), (7, 4097), (20000, 20), (4097, 7), (1, 1)][int(rng.integers(5))]
    data = image_bytes(rng, "L", "PNG", shape)
    return f"extreme_{shape[0]}x{shape[1]}", f"extreme_{shape[0]}x{shape[1]}.png", data


def damaged_image(rng: np.random.Generator) -> tuple[str, str, bytes]:
    """A damaged image file: ``(kind, file name, bytes)``; the kind says how it was damaged.

    Kinds: ``truncated_<fmt>``, ``zero_byte``, ``flipped_<fmt>``, ``text_as_png``,
    ``wrong_extension`` (a valid PNG named ``.jpg``: it must still be read).
    """
    fmt = ("PNG", "JPEG", "TIFF", "BMP")[int(rng.integers(4))]
    data = image_bytes(rng, "RGB", fmt)
    ext = EXTENSIONS[fmt]
    choice = int(rng.integers(5))
    if choice == 0:
        return f"truncated_{fmt.lower()}", f"truncated{ext}", truncate(data, rng)[: max(len(data) - 1, 0)]
    if choice == 1:
        return "zero_byte", f"empty{ext}", b""
    if choice == 2:
        return f"flipped_{fmt.lower()}", f"flipped{ext}", flip_bits(data, rng)
    if choice == 3:
        return "text_as_png", "text.png", text_bytes(rng) or b"x"
    return "wrong_extension", "png_named.jpg", image_bytes(rng, "RGB", "PNG")


# --------------------------------------------------------------------------- masks


def odd_mask(rng: np.random.Generator, shape=SHAPE) -> tuple[str, str, bytes | np.ndarray]:
    """``(kind, file name, content)`` of a mask that is not a plain 0/255 one.

    Kinds: ``zero_hundred``, ``zero_one``, ``label_map``, ``colour``, ``noise``, ``nan``
    (float .npy), ``inf``, ``empty`` (all 0: valid), ``full`` (all 255: valid).
    """
    blob = np.zeros(shape, bool)
    blob[5:25, 10:40] = True
    kinds = ("zero_hundred", "zero_one", "label_map", "colour", "noise", "nan", "inf", "empty", "full")
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind in ("nan", "inf"):
        array = blob.astype(np.float32)
        array[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = np.nan if kind == "nan" else np.inf
        return kind, f"{kind}.npy", array
    arrays = {
        "zero_hundred": blob.astype(np.uint8) * 100,
        "zero_one": blob.astype(np.uint8),
        "label_map": rng.integers(0, 6, shape, dtype=np.uint8),
        "colour": np.stack([blob * 255, blob * 0, 255 - blob * 255], axis=-1).astype(np.uint8),
        "noise": rng.integers(0, 256, shape, dtype=np.uint8),
        "empty": np.zeros(shape, np.uint8),
        "full": np.full(shape, 255, np.uint8),
    }
    buffer = io.BytesIO()
    Image.fromarray(arrays[kind]).save(buffer, format="PNG")
    return kind, f"{kind}.png", buffer.getvalue()


def write_content(path: Path, content: bytes | np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, np.ndarray):
        with open(path, "wb") as file:
            np.save(file, content)
    else:
        path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- special entries


def special_entry(path: Path, rng: np.random.Generator) -> str:
    """Make ``path`` (named like an image) something that is not a regular file; returns the kind."""
    kinds = ("fifo", "folder", "link_loop", "broken_link", "devnull_link")
    kind = kinds[int(rng.integers(len(kinds)))]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "link_loop":
        path.symlink_to(path.name)
    elif kind == "broken_link":
        path.symlink_to(path.parent / "nowhere.png")
    else:
        path.symlink_to(os.devnull)
    return kind


# --------------------------------------------------------------------------- dataset folders


def write_folder_dataset(root: Path, rng: np.random.Generator, train: int = 4, test: int = 2) -> Path:
    """A ``folder`` dataset: ``root/{train,test}/{images,masks}/NAME.png`` with one blob per mask."""
    for split, count in (("train", train), ("test", test)):
        for index in range(count):
            image = random_rgb(rng, *SHAPE)
            mask = np.zeros(SHAPE, bool)
            top, left = int(rng.integers(0, 20)), int(rng.integers(0, 30))
            mask[top:top + 15, left:left + 20] = True
            save_image(image, root / split / "images" / f"{split}{index}.png")
            save_image(mask, root / split / "masks" / f"{split}{index}.png")
    return root


def break_dataset(root: Path, rng: np.random.Generator) -> tuple[str, str]:
    """Damage one entry of a :func:`write_folder_dataset` folder: ``(kind, name the error must give)``."""
    split = ("train", "test")[int(rng.integers(2))]
    images, masks = root / split / "images", root / split / "masks"
    victim = sorted(images.iterdir())[0].name
    choice = int(rng.integers(9))
    if choice == 0:
        (masks / victim).unlink()
        return "missing_mask", victim
    if choice in (7, 8):  # a valid image in an odd mode, or of an extreme aspect ratio (its mask fits it)
        kind, _, data = odd_image(rng) if choice == 7 else extreme_image(rng)
        write_content(images / victim, data)
        with Image.open(images / victim) as image:
            save_image(np.zeros(image.size[::-1], bool), masks / victim)
        return f"image_{kind}", victim
    if choice == 1:
        (masks / victim).rename(masks / f"renamed_{victim}")
        return "mismatched_names", victim
    if choice == 2:
        (images / victim).unlink()
        return f"image_{special_entry(images / victim, rng)}", victim
    if choice == 3:
        (masks / victim).unlink()
        return f"mask_{special_entry(masks / victim, rng)}", victim
    if choice == 4:
        kind, _, data = damaged_image(rng)
        if kind == "wrong_extension":
            kind = "text_as_png"
            data = b"not an image"
        write_content(images / victim, data)
        return f"image_{kind}", victim
    if choice == 5:
        kind, name, content = odd_mask(rng)
        (masks / victim).unlink()
        write_content(masks / (Path(victim).stem + Path(name).suffix), content)
        return f"mask_{kind}", Path(victim).stem
    (root / split / "images" / "loop").symlink_to(images)
    return "folder_loop", "loop"


# --------------------------------------------------------------------------- configs

# Values that break a field: wrong types and out-of-range numbers.
BAD_VALUES = ("abc", [1, 2], {"a": 1}, None, -1, 0, 10**12, -(10**12), 0.5, 1e308, math.nan, math.inf, -math.inf,
              True, "", "1e3", [], {})


def leaf_keys(data: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf (and every section) of a nested mapping."""
    keys = []
    for key, value in data.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys.extend(leaf_keys(value, f"{prefix}{key}."))
    return keys


def set_dotted(data: dict, key: str, value) -> None:
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def mutated_config(base: dict, rng: np.random.Generator) -> tuple[str, str, str]:
    """A config file text made from ``base`` (a loaded YAML mapping): ``(kind, text, key it breaks)``.

    Kinds: ``bad_value`` (a field set to a wrong type or range), ``unknown_key``,
    ``malformed`` (truncated or bit-flipped YAML), ``top_level`` (a list or a scalar),
    ``recursive_anchor``, ``deep_nesting``, ``python_tag``, ``not_utf8``, ``empty``.
    """
    keys = leaf_keys(base)
    key = keys[int(rng.integers(len(keys)))]
    choice = int(rng.integers(10))
    data = yaml.safe_load(yaml.safe_dump(base))
    if choice <= 2:
        value = BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
        set_dotted(data, key, value)
        return "bad_value", yaml.safe_dump(data), key.rsplit(".", 1)[-1]
    if choice == 3:
        typo = key + "x"
        set_dotted(data, typo, 1)
        return "unknown_key", yaml.safe_dump(data), typo.rsplit(".", 1)[-1]
    text = yaml.safe_dump(data)
    if choice == 4:
        return "malformed", truncate(text.encode(), rng).decode(errors="replace") + "\n  - [: {", "YAML"
    if choice == 5:
        return "malformed_flip", flip_bits(text.encode(), rng).decode("latin-1"), ""
    if choice == 6:
        return "top_level", ("- 1\n- 2\n", "42\n", "just text\n")[int(rng.integers(3))], "top level"
    if choice == 7:
        return "recursive_anchor", "name: &a [*a]\n", "recursive"
    if choice == 8:
        depth = int(rng.integers(50, 3000))
        return "deep_nesting", "model: " + "[" * depth + "]" * depth + "\n", "model"
    return ("python_tag", "name: !!python/object/apply:os.system ['true']\n", "name")


def bad_override(rng: np.random.Generator) -> tuple[str, str, str]:
    """``(kind, --set argument, what the error must name)``: malformed or wrong ``--set`` values."""
    key = ("train.epochs", "model.sam.image_size", "data.num_workers", "train.lr", "train.metrics", "name")[
        int(rng.integers(6))]
    options = [
        ("no_equals", key, key),
        ("empty_key", "=3", "=3"),
        ("bad_yaml", f"{key}=[1, 2", key),
        ("bad_yaml_brace", f"{key}={{a: ", key),
        ("unknown_key", f"{key}x=1", key + "x"),
        ("into_scalar", "name.sub=1", "name"),
        ("section_scalar", "model=3", "model"),
        ("double_dot", "train..epochs=1", "train..epochs"),
        ("bad_value", f"{key}={yaml.safe_dump(BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]).strip()}", key),
        ("recursive", f"{key}=&a [*a]", key),
        ("tab", f"{key}=\t1\t: 2", key),
    ]
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------- checkpoints


def damaged_checkpoint(clean: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """``(kind, bytes)``: a training checkpoint's file damaged (bit flips, truncation) or replaced by text."""
    choice = int(rng.integers(4))
    if choice <= 1:
        return "bit_flips", flip_bits(clean, rng)
    if choice == 2:
        return "truncated", truncate(clean, rng)
    return "text_file", text_bytes(rng)


def odd_payload(payload: dict, rng: np.random.Generator) -> tuple[str, object]:
    """``(kind, object to torch.save)``: a checkpoint whose content has the wrong structure or NaN weights.

    ``payload`` is a valid checkpoint dict (it is not changed).
    """
    import torch

    weights = payload["prompt_encoder"]
    first_float = next(name for name, value in weights.items() if value.is_floating_point())
    options = ["list", "string", "config_string", "weights_list", "no_weights", "nan_weights", "inf_weights",
               "wrong_shape", "int_weights", "config_missing", "epoch_string"]
    kind = options[int(rng.integers(len(options)))]
    changed = dict(payload)
    if kind == "list":
        return kind, [1, 2, 3]
    if kind == "string":
        return kind, "checkpoint"
    if kind == "config_string":
        changed["config"] = "model: {}"
    elif kind == "weights_list":
        changed["prompt_encoder"] = list(weights.values())
    elif kind == "no_weights":
        del changed["prompt_encoder"]
    elif kind == "config_missing":
        del changed["config"]
    elif kind == "epoch_string":
        changed["epoch"] = "three"
    else:
        tensors = {name: value.clone() for name, value in weights.items()}
        value = tensors[first_float]
        if kind == "nan_weights":
            value.view(-1)[int(rng.integers(value.numel()))] = math.nan
        elif kind == "inf_weights":
            value.view(-1)[0] = math.inf
        elif kind == "wrong_shape":
            tensors[first_float] = torch.zeros(value.numel() + 1)
        else:
            tensors[first_float] = value.to(torch.int64)
        changed["prompt_encoder"] = tensors
    return kind, changed


# --------------------------------------------------------------------------- output folders


def unwritable_output(base: Path, rng: np.random.Generator) -> tuple[str, Path, Callable[[], None] | None]:
    """``(kind, path, cleanup)`` of an output folder no command can write.

    Kinds: ``under_a_file``, ``is_a_file``, ``read_only`` (a read-only tmpfs; ``/sys`` where
    mounting is not allowed: read-only even for root) and ``full`` (a tmpfs with a few hundred
    bytes left; ``under_a_file`` where mounting is not allowed). ``cleanup`` unmounts.
    """
    kinds = ("under_a_file", "is_a_file", "read_only", "full")
    kind = kinds[int(rng.integers(len(kinds)))]
    base.mkdir(parents=True, exist_ok=True)
    blocker = base / "a_file"
    blocker.write_text("x")
    if kind in ("read_only", "full"):
        mount_point = base / kind
        if mount_tmpfs(mount_point, 64, read_only=kind == "read_only"):
            if kind == "full":
                filler = mount_point / "filler"
                with open(filler, "wb", buffering=0) as stream:  # fill it up, then free a few hundred bytes
                    try:
                        while stream.write(b"\0" * 4096):
                            pass
                    except OSError:
                        pass
                os.truncate(filler, max(filler.stat().st_size - 512, 0))
            return kind, mount_point / "out", lambda: unmount(mount_point)
        if kind == "read_only":
            return kind, Path("/sys/odssam-fuzz-out"), None
        kind = "under_a_file"
    return kind, (blocker / "out" if kind == "under_a_file" else blocker), None


def mount_tmpfs(path: Path, size_kb: int, read_only: bool = False) -> bool:
    """Mount a ``size_kb`` tmpfs at ``path`` (False without the right to mount: not root, a container)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    try:
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)
