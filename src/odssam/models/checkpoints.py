"""Official SAM checkpoints: where they live, how to fetch them and how to check them.

The authors publish MD5 digests only (each file name carries the first six hex digits),
so a :class:`Digest` names its algorithm; SHA-256 is used wherever the digest is known
(e.g. a mirror you host yourself).

A verified download leaves a small ``<file>.verified`` stamp beside the file (digest,
size, modification time), so later runs can reuse a multi-gigabyte checkpoint without
hashing it again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from odssam import __version__
from odssam.errors import OdsSamError
from odssam.utils.atomic import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

SUPPORTED_ALGORITHMS = {"md5": 32, "sha256": 64}
CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 60
STAMP_SUFFIX = ".verified"
CACHE_DIR_ENV = "ODSSAM_CACHE_DIR"


@dataclass(frozen=True)
class Digest:
    """An expected file digest.

    Attributes:
        algorithm: ``"md5"`` or ``"sha256"``.
        hexdigest: Lower-case hexadecimal digest.
    """

    algorithm: str
    hexdigest: str

    def __post_init__(self) -> None:
        algorithm = self.algorithm.lower()
        hexdigest = self.hexdigest.lower()
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise OdsSamError(
                f"unsupported digest algorithm '{self.algorithm}' (use one of {', '.join(SUPPORTED_ALGORITHMS)})"
            )
        if len(hexdigest) != SUPPORTED_ALGORITHMS[algorithm] or any(c not in "0123456789abcdef" for c in hexdigest):
            raise OdsSamError(f"'{self.hexdigest}' is not a {algorithm} hex digest")
        object.__setattr__(self, "algorithm", algorithm)
        object.__setattr__(self, "hexdigest", hexdigest)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Read ``"sha256:<hex>"``, ``"md5:<hex>"`` or a bare hex digest (algorithm from its length)."""
        if ":" in text:
            algorithm, hexdigest = text.split(":", 1)
            return cls(algorithm.strip(), hexdigest.strip())
        by_length = {length: name for name, length in SUPPORTED_ALGORITHMS.items()}
        algorithm = by_length.get(len(text.strip()))
        if algorithm is None:
            raise OdsSamError(f"'{text}' is neither an md5 (32 hex digits) nor a sha256 (64 hex digits) digest")
        return cls(algorithm, text.strip())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One checkpoint released with Segment Anything.

    Attributes:
        variant: SAM registry name (``vit_h`` ...).
        url: Download address.
        file_name: File name under the cache directory.
        digest: Published digest of the file.
        size_bytes: File size, used for progress bars and truncation hints.
    """

    variant: str
    url: str
    file_name: str
    digest: Digest
    size_bytes: int


_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    checkpoint.variant: checkpoint
    for checkpoint in (
        OfficialCheckpoint(
            "vit_h",
            _BASE_URL + "sam_vit_h_4b8939.pth",
            "sam_vit_h_4b8939.pth",
            Digest("md5", "4b8939a88964f0f4ff5f5b2642c598a6"),
            2_564_550_879,
        ),
        OfficialCheckpoint(
            "vit_l",
            _BASE_URL + "sam_vit_l_0b3195.pth",
            "sam_vit_l_0b3195.pth",
            Digest("md5", "0b3195507c641ddb6910d2bb5adee89c"),
            1_249_524_607,
        ),
        OfficialCheckpoint(
            "vit_b",
            _BASE_URL + "sam_vit_b_01ec64.pth",
            "sam_vit_b_01ec64.pth",
            Digest("md5", "01ec64d29a2fca3f0661936605ae66f8"),
            375_042_383,
        ),
    )
}


def official_checkpoint_by_file_name(file_name: str) -> OfficialCheckpoint | None:
    """The official checkpoint whose file name is ``file_name``, if any."""
    for checkpoint in OFFICIAL_CHECKPOINTS.values():
        if checkpoint.file_name == file_name:
            return checkpoint
    return None


def default_cache_dir() -> Path:
    """Directory for downloaded checkpoints.

    ``$ODSSAM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/odssam``, else ``~/.cache/odssam``.
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "odssam"


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    path = Path(path)
    hasher = hashlib.new(algorithm)
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                hasher.update(chunk)
    except FileNotFoundError as error:
        raise OdsSamError(f"{path}: file not found") from error
    except IsADirectoryError as error:
        raise OdsSamError(f"{path}: is a directory, not a checkpoint file") from error
    return hasher.hexdigest()


def verify_file(path: str | Path, digest: Digest) -> None:
    """Check a file against ``digest``; raise :class:`OdsSamError` showing both digests if they differ."""
    actual = file_digest(path, digest.algorithm)
    if actual != digest.hexdigest:
        raise OdsSamError(
            f"{path}: {digest.algorithm} digest is {actual}, expected {digest.hexdigest} "
            "(corrupt, truncated or a different file)"
        )


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _stamp_record(path: Path, digest: Digest) -> dict[str, object]:
    stat = path.stat()
    return {"digest": str(digest), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_stamp(path: Path, digest: Digest) -> None:
    atomic_write_text(_stamp_path(path), json.dumps(_stamp_record(path, digest)))


def has_valid_stamp(path: str | Path, digest: Digest) -> bool:
    """Whether ``path`` was verified against ``digest`` and has not changed since."""
    path = Path(path)
    try:
        recorded = json.loads(_stamp_path(path).read_text())
        return recorded == _stamp_record(path, digest)
    except (OSError, ValueError):
        return False


def is_verified(path: str | Path, digest: Digest) -> bool:
    """Whether ``path`` matches ``digest``; a match is stamped so the next check is free."""
    path = Path(path)
    if has_valid_stamp(path, digest):
        return True
    if file_digest(path, digest.algorithm) != digest.hexdigest:
        return False
    try:
        _write_stamp(path, digest)
    except OSError:
        pass  # a read-only cache still works, it is just re-hashed next time
    return True


def _file_name_from_url(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise OdsSamError(f"cannot tell a file name from the URL '{url}'")
    return name


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "file")


def download_checkpoint(
    variant_or_url: str,
    dest_dir: str | Path | None = None,
    expected: Digest | None = None,
    progress: bool = True,
    *,
    file_name: str | None = None,
    hint: str | None = None,
) -> Path:
    """Download a checkpoint, verify it and move it into place atomically.

    Args:
        variant_or_url: An official variant (``vit_h``, ``vit_l``, ``vit_b``) or a URL.
        dest_dir: Target directory (default :func:`default_cache_dir`).
        expected: Digest to verify. Defaults to the official digest of the variant, or
            of the official file of the same name when a URL is given; with a URL of
            any other name and no digest the file is stored unverified.
        progress: Show a progress bar on stderr.
        file_name: Stored file name (default: the official name, else the URL's).
        hint: What to do when the download fails (default: pass a SAM checkpoint by path).

    Returns:
        Path of the verified file. An existing file that matches ``expected`` is reused.

    Raises:
        OdsSamError: Unknown variant, network failure, truncated transfer or digest mismatch
            (the partial download is deleted).
    """
    if variant_or_url in OFFICIAL_CHECKPOINTS:
        official = OFFICIAL_CHECKPOINTS[variant_or_url]
        url = official.url
    elif _is_url(variant_or_url):
        url = variant_or_url
        official = official_checkpoint_by_file_name(file_name or _file_name_from_url(url))
    else:
        raise OdsSamError(
            f"'{variant_or_url}' is neither an official SAM variant ({', '.join(OFFICIAL_CHECKPOINTS)}) nor a URL"
        )
    file_name = file_name or (official.file_name if official else _file_name_from_url(url))
    expected = expected or (official.digest if official else None)
    size_hint = official.size_bytes if official else None

    dest_dir = Path(dest_dir).expanduser() if dest_dir is not None else default_cache_dir()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OdsSamError(f"cannot create the checkpoint directory {dest_dir}: {error.strerror}") from error
    target = dest_dir / file_name

    if target.is_file():
        if expected is None or is_verified(target, expected):
            return target
        logger.warning("%s does not match %s; downloading it again", target, expected)

    # Unverified bytes never reach ``target``: a failed check discards the ``.part`` file.
    with atomic_open(target, suffix=".part", fsync=True) as handle:
        hexdigest = _stream(url, handle, expected.algorithm if expected else "sha256", size_hint, progress, hint)
        if expected is not None and hexdigest != expected.hexdigest:
            raise OdsSamError(
                f"download of {url} failed verification: {expected.algorithm} digest is {hexdigest}, "
                f"expected {expected.hexdigest}; the download was deleted"
            )
    if expected is not None:
        _write_stamp(target, expected)
    return target


def _stream(url: str, handle, algorithm: str, size_hint: int | None, progress: bool, hint: str | None = None) -> str:
    """Copy ``url`` into ``handle``, hashing on the way; returns the hex digest."""
    hasher = hashlib.new(algorithm)
    request = urllib.request.Request(url, headers={"User-Agent": f"odssam/{__version__}"})
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            length_header = response.headers.get("Content-Length")
            expected_length = int(length_header) if length_header and length_header.isdigit() else None
            with tqdm(
                total=expected_length or size_hint,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=_file_name_from_url(url),
                disable=not progress,
            ) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        is_http_status = isinstance(error, urllib.error.HTTPError)
        reason = error if is_http_status else getattr(error, "reason", None) or error
        hint = hint or (
            "Download the file by other means and pass it with --sam-checkpoint PATH (demo, eval, predict, "
            "export, reproduce) or --set model.sam.checkpoint=PATH (train, forward; model.sam.checkpoint in a config)"
        )
        raise OdsSamError(f"could not download {url}: {reason}. {hint}") from error
    if expected_length is not None and received != expected_length:
        raise OdsSamError(f"download of {url} stopped after {received} of {expected_length} bytes")
    return hasher.hexdigest()


def cached_checkpoint(variant: str, cache_dir: str | Path | None = None) -> Path | None:
    """The verified official checkpoint of ``variant`` in the cache, or ``None``."""
    official = OFFICIAL_CHECKPOINTS.get(variant)
    if official is None:
        return None
    path = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / official.file_name
    if path.is_file() and is_verified(path, official.digest):
        return path
    return None


def resolve_checkpoint(
    variant: str, checkpoint: str | Path | None, cache_dir: str | Path | None = None
) -> Path | None:
    """Turn a ``SamConfig.checkpoint`` value into a file path.

    Args:
        variant: SAM registry name.
        checkpoint: ``None`` (random weights), ``"auto"`` (the cached official file,
            downloaded if absent) or a path.
        cache_dir: Cache used by ``"auto"`` (default :func:`default_cache_dir`).

    Returns:
        The checkpoint path, or ``None`` for random weights.
    """
    if checkpoint is None:
        return None
    if str(checkpoint) == "auto":
        if variant not in OFFICIAL_CHECKPOINTS:
            raise OdsSamError(
                f"no official checkpoint exists for SAM variant '{variant}' (only {', '.join(OFFICIAL_CHECKPOINTS)}); "
                "set the checkpoint to a file or to null for random weights"
            )
        return cached_checkpoint(variant, cache_dir) or download_checkpoint(variant, cache_dir)
    path = Path(checkpoint).expanduser()
    given_as = "config key model.sam.checkpoint, or --sam-checkpoint"  # the two ways a path gets here
    if not path.exists():
        raise OdsSamError(f"SAM checkpoint not found: {path} ({given_as})")
    if not path.is_file():
        raise OdsSamError(f"SAM checkpoint {path} is not a file ({given_as})")
    return path
