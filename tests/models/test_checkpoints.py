"""Checkpoint table, downloads from a local HTTP server, resolution and the ``weights`` command."""

import hashlib
from pathlib import Path

import pytest
import torch
from helpers import free_port

from odssam.cli.main import main
from odssam.errors import OdsSamError
from odssam.models import checkpoints
from odssam.models.checkpoints import (
    OFFICIAL_CHECKPOINTS,
    Digest,
    OfficialCheckpoint,
    cached_checkpoint,
    default_cache_dir,
    download_checkpoint,
    file_digest,
    resolve_checkpoint,
    verify_file,
)
from odssam.models.sam import build_sam, sam_weights_fingerprint

PAYLOAD_BYTES = 3 * (1 << 20) + 12345  # several download chunks plus a ragged end


@pytest.fixture
def payload(served, rng):
    folder, base_url, requests = served
    data = rng.integers(0, 256, PAYLOAD_BYTES, dtype="uint8").tobytes()
    (folder / "weights.bin").write_bytes(data)
    return data, f"{base_url}/weights.bin", Digest("sha256", hashlib.sha256(data).hexdigest()), requests


# --------------------------------------------------------------------------- official table


def test_official_table_matches_the_published_files():
    assert list(OFFICIAL_CHECKPOINTS) == ["vit_h", "vit_l", "vit_b"]
    md5 = {
        "vit_h": "4b8939a88964f0f4ff5f5b2642c598a6",
        "vit_l": "0b3195507c641ddb6910d2bb5adee89c",
        "vit_b": "01ec64d29a2fca3f0661936605ae66f8",
    }
    for variant, official in OFFICIAL_CHECKPOINTS.items():
        assert official.digest == Digest("md5", md5[variant])
        assert official.file_name == f"sam_{variant}_{md5[variant][:6]}.pth"
        assert official.url == f"https://dl.fbaipublicfiles.com/segment_anything/{official.file_name}"
    assert OFFICIAL_CHECKPOINTS["vit_h"].size_bytes > OFFICIAL_CHECKPOINTS["vit_l"].size_bytes > 3e8


def test_digest_parsing_and_validation():
    hex64 = "ab" * 32
    assert Digest.parse(f"SHA256:{hex64.upper()}") == Digest("sha256", hex64)
    assert Digest.parse("cd" * 16) == Digest("md5", "cd" * 16)
    assert str(Digest("md5", "cd" * 16)) == "md5:" + "cd" * 16
    for bad in ("sha1:" + "ab" * 20, "sha256:xyz", "abc"):
        with pytest.raises(OdsSamError):
            Digest.parse(bad)


def test_verify_file_reports_both_digests(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"hello")
    good = Digest("sha256", hashlib.sha256(b"hello").hexdigest())
    verify_file(path, good)
    assert file_digest(path, "md5") == hashlib.md5(b"hello").hexdigest()
    wrong = Digest("sha256", "0" * 64)
    with pytest.raises(OdsSamError) as error:
        verify_file(path, wrong)
    assert good.hexdigest in str(error.value) and wrong.hexdigest in str(error.value) and str(path) in str(error.value)


def test_default_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("ODSSAM_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("ODSSAM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "odssam"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "odssam"


# --------------------------------------------------------------------------- downloads


def test_download_verifies_and_then_reuses_the_file(payload, tmp_path):
    data, url, digest, requests = payload
    dest = tmp_path / "dest"
    path = download_checkpoint(url, dest, expected=digest, progress=False)
    assert path == dest / "weights.bin" and path.read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["weights.bin", "weights.bin.verified"]
    assert requests == ["/weights.bin"]

    again = download_checkpoint(url, dest, expected=digest, progress=False)
    assert again == path and requests == ["/weights.bin"]


def test_bad_digest_deletes_the_download(payload, tmp_path):
    _, url, digest, _ = payload
    dest = tmp_path / "dest"
    wrong = Digest("sha256", "f" * 64)
    with pytest.raises(OdsSamError) as error:
        download_checkpoint(url, dest, expected=wrong, progress=False)
    assert digest.hexdigest in str(error.value) and wrong.hexdigest in str(error.value)
    assert list(dest.iterdir()) == []


def test_a_damaged_cached_file_is_downloaded_again(payload, tmp_path):
    data, url, digest, requests = payload
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "weights.bin").write_bytes(data[:100])
    path = download_checkpoint(url, dest, expected=digest, progress=False)
    assert path.read_bytes() == data and requests == ["/weights.bin"]


def test_md5_digests_are_supported(payload, tmp_path):
    data, url, _, _ = payload
    path = download_checkpoint(url, tmp_path, expected=Digest("md5", hashlib.md5(data).hexdigest()), progress=False)
    assert path.read_bytes() == data


def test_http_errors_and_unreachable_servers_point_to_a_local_file(served, tmp_path):
    _, base_url, _ = served
    with pytest.raises(OdsSamError, match=r"404.*--sam-checkpoint PATH .* --set model.sam.checkpoint=PATH"):
        download_checkpoint(f"{base_url}/missing.pth", tmp_path / "a", progress=False)
    with pytest.raises(OdsSamError, match=r"could not download .*--sam-checkpoint PATH"):
        download_checkpoint(f"http://127.0.0.1:{free_port()}/x.pth", tmp_path / "b", progress=False)
    assert list((tmp_path / "a").iterdir()) == [] and list((tmp_path / "b").iterdir()) == []


def test_a_truncated_transfer_leaves_no_file(served, tmp_path):
    _, base_url, _ = served
    dest = tmp_path / "dest"
    with pytest.raises(OdsSamError, match="short.bin"):
        download_checkpoint(f"{base_url}/short.bin", dest, progress=False)
    assert list(dest.iterdir()) == []


def test_unknown_variant_is_rejected(tmp_path):
    with pytest.raises(OdsSamError, match="neither an official SAM variant"):
        download_checkpoint("vit_g", tmp_path, progress=False)


# --------------------------------------------------------------------------- resolution


@pytest.fixture
def served_vit_b(served, monkeypatch):
    """Points the official vit_b entry at a local file holding a small SAM state dict."""
    folder, base_url, requests = served
    file_name = OFFICIAL_CHECKPOINTS["vit_b"].file_name
    torch.manual_seed(0)
    source = build_sam("vit_micro", image_size=128)
    torch.save(source.state_dict(), folder / file_name)
    digest = Digest("sha256", file_digest(folder / file_name, "sha256"))
    size = (folder / file_name).stat().st_size
    entry = OfficialCheckpoint("vit_b", f"{base_url}/{file_name}", file_name, digest, size)
    monkeypatch.setitem(checkpoints.OFFICIAL_CHECKPOINTS, "vit_b", entry)
    return source, requests


def test_resolve_checkpoint_paths_and_none(tmp_path):
    assert resolve_checkpoint("vit_h", None) is None
    path = tmp_path / "weights.pth"
    path.write_bytes(b"x")
    assert resolve_checkpoint("vit_h", str(path)) == path
    with pytest.raises(OdsSamError, match="not found"):
        resolve_checkpoint("vit_h", tmp_path / "absent.pth")
    with pytest.raises(OdsSamError, match="no official checkpoint exists for SAM variant 'vit_tiny'"):
        resolve_checkpoint("vit_tiny", "auto")


def test_auto_downloads_once_into_the_cache_and_loads(served_vit_b):
    source, requests = served_vit_b
    assert cached_checkpoint("vit_b") is None
    first = resolve_checkpoint("vit_b", "auto")
    second = resolve_checkpoint("vit_b", "auto")
    assert first == second == default_cache_dir() / OFFICIAL_CHECKPOINTS["vit_b"].file_name
    assert cached_checkpoint("vit_b") == first
    assert len(requests) == 1

    loaded = build_sam("vit_micro", checkpoint=first, image_size=128)
    assert sam_weights_fingerprint(loaded) == sam_weights_fingerprint(source)


def test_auto_without_network_explains_what_to_do(monkeypatch):
    official = OFFICIAL_CHECKPOINTS["vit_b"]
    unreachable = f"http://127.0.0.1:{free_port()}/x.pth"
    offline = OfficialCheckpoint("vit_b", unreachable, official.file_name, official.digest, official.size_bytes)
    monkeypatch.setitem(checkpoints.OFFICIAL_CHECKPOINTS, "vit_b", offline)
    with pytest.raises(OdsSamError, match="--sam-checkpoint PATH"):
        resolve_checkpoint("vit_b", "auto")


# --------------------------------------------------------------------------- odssam weights


def test_weights_list_shows_variants_and_cache_state(served_vit_b, capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "vit_h" in out and "4b8939a88964f0f4ff5f5b2642c598a6" in out and "not cached" in out
    assert "vit_micro" in out and "random weights only" in out

    resolve_checkpoint("vit_b", "auto")
    assert main(["weights", "list"]) == 0
    vit_b_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("vit_b"))
    assert "cached, verified" in vit_b_line


def test_weights_download_from_a_mirror(payload, tmp_path, capsys):
    data, url, digest, _ = payload
    args = ["weights", "download", "vit_l", "--url", url, "--digest", str(digest), "--dir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / OFFICIAL_CHECKPOINTS["vit_l"].file_name and path.read_bytes() == data


def test_weights_download_of_a_mirror_is_checked_against_the_official_digest(payload, tmp_path, capsys):
    _, url, _, _ = payload
    assert main(["weights", "download", "vit_l", "--url", url, "--dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "0b3195507c641ddb6910d2bb5adee89c" in err and "failed verification" in err


def test_weights_verify(tmp_path, capsys):
    path = tmp_path / "tiny.pth"
    torch.save(build_sam("vit_tiny", image_size=128).state_dict(), path)
    assert main(["weights", "verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fits SAM vit_tiny at image_size 128" in out and "sha256" in out

    assert main(["weights", "verify", str(path), "--variant", "vit_micro"]) == 2
    assert "looks like a vit_tiny checkpoint" in capsys.readouterr().err

    assert main(["weights", "verify", str(path), "--digest", "sha256:" + "0" * 64]) == 2
    assert "expected " + "0" * 64 in capsys.readouterr().err
