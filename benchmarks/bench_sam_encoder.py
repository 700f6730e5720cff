"""Benchmark: SAM ViT image encoder, official ``segment_anything`` module vs odssam's fast one.

Prints, for random weights and inputs at the chosen size: the official module in float32 and
in bfloat16 (the baselines), and :class:`odssam.models.fast_encoder.FastImageEncoderViT` in
bfloat16, eager and ``torch.compile``-d; each with the median time per batch, images per
second, the speed-up over both baselines, and the error against the official float32 output
(max |diff| / max |ref| and ||diff|| / ||ref||).

    python benchmarks/bench_sam_encoder.py                       # CUDA: vit_h, batch 8
    python benchmarks/bench_sam_encoder.py --device cpu          # CPU: tiny config, batch 2
    python benchmarks/bench_sam_encoder.py --tune --profile      # also sweep kernel tiles, profile

Relative-position tables and the absolute position embedding are drawn at random too (SAM
initialises them to zero, which would leave the relative-position path untested).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from segment_anything.modeling import ImageEncoderViT  # noqa: E402

from odssam.models import fast_encoder  # noqa: E402

# Official SAM encoder shapes (embed dim, depth, heads, global-attention blocks), and two small
# ones for CPU runs.
VARIANTS = {
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31), img_size=1024),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23), img_size=1024),
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11), img_size=1024),
    "small": dict(embed_dim=256, depth=4, num_heads=4, global_attn_indexes=(1, 3), img_size=512),
    "tiny": dict(embed_dim=64, depth=4, num_heads=2, global_attn_indexes=(1, 3), img_size=256),
}


def build_encoder(variant: str, device: torch.device, seed: int = 0) -> ImageEncoderViT:
    """Official encoder with random weights, built directly on ``device``."""
    torch.manual_seed(seed)
    spec = VARIANTS[variant]
    with torch.device(device):
        encoder = ImageEncoderViT(
            patch_size=16, mlp_ratio=4.0, out_chans=256, qkv_bias=True, use_rel_pos=True,
            window_size=14, **spec,
        )
        with torch.no_grad():
            for name, param in encoder.named_parameters():
                if "rel_pos" in name:
                    param.normal_(0.0, 0.1)
                elif name == "pos_embed":
                    param.normal_(0.0, 0.02)
    return encoder.eval().requires_grad_(False)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(fn, device: torch.device, iters: int, warmup: int) -> list[float]:
    """Milliseconds per call of ``fn`` (CUDA events on GPU, a synchronised clock on CPU)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return times


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max |out-ref| / max |ref|, ||out-ref|| / ||ref||), computed in float64."""
    out, ref = out.double(), ref.double()
    diff = out - ref
    if not torch.isfinite(out).all():
        return float("nan"), float("nan")
    return (diff.abs().max() / ref.abs().max()).item(), (diff.norm() / ref.norm()).item()


def tune_kernels(encoder: ImageEncoderViT, batch: int, device: torch.device, log) -> None:
    """Sweep the attention kernel's tiles on the real shapes; keep the fastest correct ones."""
    import triton.testing

    spec_blocks = {"window": next(b for b in encoder.blocks if b.window_size > 0),
                   "global": next(b for b in encoder.blocks if b.window_size == 0)}
    grid = encoder.img_size // 16
    candidates = {
        "window": [(m, n, w, s) for m, n in [(64, 64), (64, 128), (128, 64), (128, 128), (64, 256),
                                             (128, 256), (32, 64), (32, 256)]
                   for w, s in [(4, 2), (8, 2), (4, 3)]],
        "global": [(m, n, w, s) for m, n in [(128, 64), (64, 64), (128, 128), (64, 128)]
                   for w, s in [(4, 2), (8, 2), (4, 3), (8, 3)]],
    }
    for kind, block in spec_blocks.items():
        attn = block.attn.to(torch.bfloat16)
        channels = attn.qkv.in_features
        qkv = torch.randn(batch, grid, grid, 3 * channels, device=device, dtype=torch.bfloat16)
        args = (qkv, attn.num_heads, block.window_size, attn.rel_pos_h, attn.rel_pos_w, attn.qkv.bias, attn.scale)
        ref = fast_encoder._attention_torch(*[a.float() if torch.is_tensor(a) else a for a in args])
        torch_ms = triton.testing.do_bench(lambda: fast_encoder._attention_torch(*args), return_mode="median")
        log(f"[tune] {kind}: torch backend (folded SDPA) {torch_ms:.3f} ms")
        best = None
        for m, n, w, s in candidates[kind]:
            fast_encoder.KERNEL_CONFIGS[kind] = {"BLOCK_M": m, "BLOCK_N": n, "num_warps": w, "num_stages": s}
            try:
                out = fast_encoder._attention_triton(*args)
                err = errors(out, ref)[1]
                ms = triton.testing.do_bench(lambda: fast_encoder._attention_triton(*args), return_mode="median")
            except Exception as error:  # a tile that does not fit shared memory, say
                log(f"[tune] {kind} M{m} N{n} w{w} s{s}: failed ({type(error).__name__}: {str(error)[:80]})")
                continue
            log(f"[tune] {kind} M{m} N{n} w{w} s{s}: {ms:.3f} ms, rel err {err:.2e}")
            if err < 2e-2 and (best is None or ms < best[0]):
                best = (ms, m, n, w, s)
        if best is not None:
            ms, m, n, w, s = best
            fast_encoder.KERNEL_CONFIGS[kind] = {"BLOCK_M": m, "BLOCK_N": n, "num_warps": w, "num_stages": s}
            log(f"[tune] {kind}: best M{m} N{n} w{w} s{s} {ms:.3f} ms (torch backend {torch_ms:.3f} ms)")
        del qkv, ref


def profile(fn, device: torch.device, path: Path | None, log, label: str) -> None:
    """Top kernels by device time over two calls."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fn()
    synchronize(device)
    with torch_profile(activities=activities) as prof:
        for _ in range(2):
            fn()
        synchronize(device)
    sort_key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_key, row_limit=25, max_name_column_width=70)
    log(f"[profile] {label}\n{table}")
    if path is not None:
        path.write_text(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                        help="default: vit_h on CUDA, tiny on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default: 8 on CUDA, 2 on CPU")
    parser.add_argument("--iters", type=int, default=None, help="timed batches for the fast runs")
    parser.add_argument("--fp32-iters", type=int, default=3, help="timed batches for official float32")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the torch.compile-d encoder (default: on CUDA only)")
    parser.add_argument("--torch-backend", action="store_true", help="also time the torch (SDPA) backend")
    parser.add_argument("--tune", action="store_true", help="sweep the Triton kernel tiles first")
    parser.add_argument("--profile", action="store_true", help="print the top kernels of each fast run")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and profiles")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    variant = args.variant or ("vit_h" if on_cuda else "tiny")
    batch = args.batch or (8 if on_cuda else 2)
    iters = args.iters or (20 if on_cuda else 3)
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # a true float32 baseline and reference
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(message: str) -> None:
        print(message, flush=True)
        lines.append(message)

    env = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if on_cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if on_cuda else None,
        "threads": None if on_cuda else torch.get_num_threads(),
        "variant": variant,
        "batch": batch,
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
    }
    log(f"[env] {json.dumps(env)}")

    encoder32 = build_encoder(variant, device)
    size = encoder32.img_size
    generator = torch.Generator(device="cpu").manual_seed(1)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    images16 = images.to(torch.bfloat16)
    results = []

    def run(name: str, model, inputs, n_iters: int, warmup: int, ref=None):
        with torch.inference_mode():
            start = time.perf_counter()
            out = model(inputs)
            synchronize(device)
            first_s = time.perf_counter() - start
            times = time_batches(lambda: model(inputs), device, n_iters, warmup)
        ms = statistics.median(times)
        row = {"name": name, "ms_per_batch": ms, "img_per_s": batch * 1e3 / ms, "first_call_s": first_s}
        if ref is not None:
            row["max_rel_err"], row["rel_l2_err"] = errors(out.float(), ref)
        results.append(row)
        log(f"[run] {name}: {ms:.2f} ms/batch ({row['img_per_s']:.2f} img/s; spread "
            f"{min(times):.2f}..{max(times):.2f}; first call {first_s:.1f} s)"
            + (f", max rel err {row['max_rel_err']:.2e}, rel L2 err {row['rel_l2_err']:.2e}" if ref is not None else ""))
        return out

    ref = run("official fp32", encoder32, images, args.fp32_iters, 1).float()
    encoder16 = copy.deepcopy(encoder32).to(torch.bfloat16)
    reference_state = {k: v.clone() for k, v in encoder32.state_dict().items()} if not on_cuda else None
    del encoder32
    if on_cuda:
        torch.cuda.empty_cache()
    run("official bf16", encoder16, images16, max(3, iters // 3), 1, ref)
    if on_cuda:
        torch.cuda.empty_cache()

    if args.tune and fast_encoder.triton_supported(device):
        tune_kernels(encoder16, batch, device, log)
        log(f"[tune] KERNEL_CONFIGS = {json.dumps(fast_encoder.KERNEL_CONFIGS)}")

    if not on_cuda:  # CPUs run float32 best: also time ours there, against the same reference
        encoder32 = copy.deepcopy(encoder16).float()
        encoder32.load_state_dict(reference_state)
        run("ours fp32 eager (torch)", fast_encoder.FastImageEncoderViT(encoder32), images, iters, 1, ref)
        del encoder32
    fast = fast_encoder.FastImageEncoderViT(encoder16, backend="auto")
    run(f"ours bf16 eager ({'triton' if fast_encoder.triton_supported(device) else 'torch'})",
        fast, images16, iters, 2, ref)
    if args.profile:
        with torch.inference_mode():
            profile(lambda: fast(images16), device, args.out and args.out / "profile_eager.txt", log, "ours eager")
    if args.torch_backend and fast_encoder.triton_supported(device):
        run("ours bf16 eager (torch backend)", fast_encoder.FastImageEncoderViT(encoder16, backend="torch"),
            images16, iters, 2, ref)
    if args.compile if args.compile is not None else on_cuda:
        compiled = fast_encoder.accelerate_image_encoder(encoder16, compile=True)
        run("ours bf16 compiled", compiled, images16, iters, 2, ref)
        if args.profile:
            with torch.inference_mode():
                profile(lambda: compiled(images16), device, args.out and args.out / "profile_compiled.txt",
                        log, "ours compiled")

    by_name = {row["name"]: row for row in results}
    base32, base16 = by_name["official fp32"]["ms_per_batch"], by_name["official bf16"]["ms_per_batch"]
    log(f"\n{variant}, batch {batch}, {env['device']}, torch {env['torch']}, CUDA {env['cuda']}")
    log(f"{'run':38s} {'ms/batch':>9s} {'img/s':>8s} {'x fp32':>7s} {'x bf16':>7s} {'max rel':>9s} {'rel L2':>9s}")
    for row in results:
        log(f"{row['name']:38s} {row['ms_per_batch']:9.2f} {row['img_per_s']:8.2f} "
            f"{base32 / row['ms_per_batch']:7.2f} {base16 / row['ms_per_batch']:7.2f} "
            f"{row.get('max_rel_err', 0.0):9.2e} {row.get('rel_l2_err', 0.0):9.2e}")
    if args.out is not None:
        payload = {"env": env, "results": results, "kernel_configs": fast_encoder.KERNEL_CONFIGS}
        tmp = args.out / "results.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, args.out / "results.json")
        (args.out / "log.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
