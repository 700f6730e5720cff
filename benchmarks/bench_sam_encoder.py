"""Benchmark: SAM ViT image encoder, official ``segment_anything`` module vs odssam's fast one.

Prints, for random weights and inputs at the chosen size: the official module in float32 and
in bfloat16 (the baselines), and :class:`odssam.models.fast_encoder.FastImageEncoderViT` in
bfloat16, eager and ``torch.compile``-d; each with the median time per batch, images per
second, the speed-up over both baselines, and the error against the official float32 output
(max |diff| / max |ref| and ||diff|| / ||ref||).

    python benchmarks/bench_sam_encoder.py                       # CUDA: vit_h, batch 8
    python benchmarks/bench_sam_encoder.py --device cpu          # CPU: tiny config, batch 2
    python benchmarks/bench_sam_encoder.py --tune --profile      # also sweep kernel tiles, profile
    python benchmarks/bench_sam_encoder.py --segmenters vit_h,sam2_hiera_l   # SAM beside SAM 2

``--segmenters`` instead times the whole ``encode`` of registered frozen segmenters (official
modules, random weights; SAM 2's includes its high-resolution projections), in float32 and
under bfloat16 autocast, and prints images per second for each.

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
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from segment_anything.modeling import ImageEncoderViT  # noqa: E402

from odssam.models import fast_attention, fast_attention_kernels, fast_encoder  # noqa: E402
from timing import synchronize, time_calls  # noqa: E402

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


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max |out-ref| / max |ref|, ||out-ref|| / ||ref||), computed in float64."""
    out, ref = out.double(), ref.double()
    diff = out - ref
    if not torch.isfinite(out).all():
        return float("nan"), float("nan")
    return (diff.abs().max() / ref.abs().max()).item(), (diff.norm() / ref.norm()).item()


# Candidates for the Triton attention kernel: (BLOCK_M, BLOCK_N, num_warps, num_stages,
# split_head, prescale_q); see fast_attention_kernels.KERNEL_CONFIGS.
TUNE_CANDIDATES = {
    "window": [(128, 64, 4, 2, True, False), (128, 64, 4, 3, True, False), (128, 128, 8, 2, True, False),
               (64, 128, 4, 2, True, False), (128, 64, 8, 2, True, False), (128, 64, 4, 2, False, False),
               (128, 64, 4, 2, True, True)],
    "global": [(128, 64, 4, 3, True, False), (64, 64, 4, 3, True, False), (128, 64, 8, 3, True, False),
               (128, 64, 4, 2, True, False), (128, 64, 8, 3, False, False), (128, 64, 4, 3, True, True)],
}
KERNEL_KEYS = ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "split_head", "prescale_q")


def _tune_worker(kind: str, variant: str, batch: int, configs: list, time_torch: bool) -> None:
    """Child process: time each tile config on the variant's real attention shapes.

    Prints one JSON line before and one after each config, so that the parent can tell which
    config brought the process down (a bad launch can leave the CUDA context unusable)."""
    import triton.testing

    spec = VARIANTS[variant]
    channels, heads = spec["embed_dim"], spec["num_heads"]
    head_dim, grid = channels // heads, spec["img_size"] // 16
    window = 14 if kind == "window" else 0
    rows = window or grid
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    qkv = torch.randn(batch, grid, grid, 3 * channels, device=device)
    rel_h, rel_w = (torch.randn(2 * rows - 1, head_dim, device=device) * 0.1 for _ in range(2))
    bias = torch.randn(3 * channels, device=device)
    scale = head_dim**-0.5
    ref = fast_attention._attention_torch(qkv, heads, window, rel_h, rel_w, bias, scale)
    args = (qkv.bfloat16(), heads, window, rel_h.bfloat16(), rel_w.bfloat16(), bias.bfloat16(), scale)
    if time_torch:
        torch_ms = triton.testing.do_bench(lambda: fast_attention._attention_torch(*args), return_mode="median")
        print(json.dumps({"torch_ms": torch_ms}), flush=True)
    fastest = None
    for config in configs:
        print(json.dumps({"start": config}), flush=True)
        fast_attention_kernels.KERNEL_CONFIGS[kind] = dict(zip(KERNEL_KEYS, config))
        out = fast_attention._attention_triton(*args)
        synchronize(device)
        max_err, l2_err = errors(out.float(), ref)
        ms = triton.testing.do_bench(lambda: fast_attention._attention_triton(*args), return_mode="median")
        print(json.dumps({"config": config, "ms": ms, "max_err": max_err, "l2_err": l2_err}), flush=True)
        if fastest is None or ms < fastest[0]:
            fastest = (ms, config)
    if fastest is not None:  # what the relative-position terms cost in the fastest config
        fast_attention_kernels.KERNEL_CONFIGS[kind] = dict(zip(KERNEL_KEYS, fastest[1]))
        plain = (args[0], heads, window, None, None, args[5], scale)
        ms = triton.testing.do_bench(lambda: fast_attention._attention_triton(*plain), return_mode="median")
        print(json.dumps({"no_rel": fastest[1], "ms": ms}), flush=True)


def tune_kernels(variant: str, batch: int, log) -> None:
    """Sweep the attention kernel's tiles on the real shapes, each sweep in a child process that
    is restarted after a crash; keep the fastest config whose output is right."""
    for kind, candidates in TUNE_CANDIDATES.items():
        remaining, best = [list(c) for c in candidates], None
        while remaining:
            first = len(remaining) == len(candidates)
            command = [sys.executable, __file__, "--tune-worker", kind, "--variant", variant,
                       "--batch", str(batch), "--tune-configs", json.dumps({"configs": remaining, "time_torch": first})]
            proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
            started, finished = None, []
            for line in proc.stdout.splitlines():
                if not line.startswith("{"):
                    continue
                record = json.loads(line)
                if "torch_ms" in record:
                    log(f"[tune] {kind}: torch backend (folded SDPA) {record['torch_ms']:.3f} ms")
                elif "no_rel" in record:
                    log(f"[tune] {kind} {record['no_rel']} without relative positions: {record['ms']:.3f} ms")
                elif "start" in record:
                    started = record["start"]
                else:
                    finished.append(record["config"])
                    ok = record["l2_err"] < 1e-2 and record["max_err"] < 5e-2
                    log(f"[tune] {kind} {record['config']}: {record['ms']:.3f} ms, max err "
                        f"{record['max_err']:.2e}, rel L2 err {record['l2_err']:.2e}{'' if ok else '  WRONG'}")
                    if ok and (best is None or record["ms"] < best[0]):
                        best = (record["ms"], record["config"])
            if proc.returncode == 0:
                break
            reason = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
            if started is None or started in finished:
                log(f"[tune] {kind}: worker failed before a config ({reason})")
                break
            log(f"[tune] {kind} {started}: crashed ({reason})")
            remaining = remaining[remaining.index(started) + 1:]
        if best is not None:
            fast_attention_kernels.KERNEL_CONFIGS[kind] = dict(zip(KERNEL_KEYS, best[1]))
            log(f"[tune] {kind}: best {best[1]} {best[0]:.3f} ms")


def check_tiny_fp32(device: torch.device, log) -> None:
    """The Triton path in float32 against the official module, per block kind (tiny config)."""
    encoder = build_encoder("tiny", device)
    fast = fast_encoder.FastImageEncoderViT(encoder, backend="triton")
    with torch.inference_mode():
        images = torch.randn(2, 3, encoder.img_size, encoder.img_size, device=device)
        diff = (fast(images) - encoder(images)).abs().max().item()
        tokens = torch.randn(2, encoder.img_size // 16, encoder.img_size // 16, 64, device=device)
        per_block = [(fast_encoder._block_forward(block, tokens, "triton") - block(tokens)).abs().max().item()
                     for block in encoder.blocks[:2]]
    log(f"[check] tiny fp32, triton vs official: encoder max abs diff {diff:.2e}; windowed block "
        f"{per_block[0]:.2e}, global block {per_block[1]:.2e}")


def linear_floor(encoder: ImageEncoderViT, batch: int, device: torch.device, log) -> float:
    """Milliseconds per batch of the four linear layers of every block alone (bf16): the part
    of the work that no attention kernel removes."""
    block = encoder.blocks[0]
    tokens = batch * (encoder.img_size // 16) ** 2
    x = torch.randn(tokens, block.attn.qkv.in_features, device=device, dtype=torch.bfloat16)
    hidden = torch.randn(tokens, block.mlp.lin1.out_features, device=device, dtype=torch.bfloat16)

    def layers():
        for _ in range(len(encoder.blocks)):
            block.attn.qkv(x)
            block.attn.proj(x)
            block.mlp.lin1(x)
            block.mlp.lin2(hidden)

    with torch.inference_mode():
        ms = statistics.median(time_calls(layers, device, 5, 2))
    log(f"[floor] linear layers alone: {ms:.2f} ms/batch ({batch * 1e3 / ms:.1f} img/s if nothing else ran)")
    return ms


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


def time_segmenters(names: list[str], device: torch.device, batch: int, iters: int, image_size: int, log) -> list[dict]:
    """Images per second of each segmenter's ``encode`` (official modules, random weights),
    float32 and bfloat16 autocast; one row per segmenter and precision."""
    from odssam.config import SamConfig
    from odssam.models.registry import build_segmenter

    rows = []
    for name in names:
        torch.manual_seed(0)
        segmenter = build_segmenter(SamConfig(variant=name, image_size=image_size, fast_encoder=False)).to(device)
        images = torch.randn(batch, 3, image_size, image_size, device=device)
        for precision, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
            def encode():
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    return segmenter.encode(images)

            ms = statistics.median(time_calls(encode, device, iters, 2))
            rows.append({"name": f"{name} {precision}", "segmenter": name, "precision": precision,
                         "ms_per_batch": ms, "img_per_s": batch * 1e3 / ms})
            log(f"[segmenter] {name} {precision}: {ms:.2f} ms/batch ({batch * 1e3 / ms:.2f} img/s)")
        del segmenter
        if device.type == "cuda":
            torch.cuda.empty_cache()
    log(f"\nencode at {image_size}x{image_size}, batch {batch}")
    log(f"{'segmenter':32s} {'ms/batch':>9s} {'img/s':>8s}")
    for row in rows:
        log(f"{row['name']:32s} {row['ms_per_batch']:9.2f} {row['img_per_s']:8.2f}")
    return rows


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
    parser.add_argument("--extra-compile-mode", default=None,
                        help="also time this torch.compile mode, last (e.g. max-autotune-no-cudagraphs)")
    parser.add_argument("--torch-backend", action="store_true", help="also time the torch (SDPA) backend")
    parser.add_argument("--tune", action="store_true", help="sweep the Triton kernel tiles first")
    parser.add_argument("--profile", action="store_true", help="print the top kernels of each fast run")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and profiles")
    parser.add_argument("--segmenters", default=None,
                        help="comma-separated segmenter variants (e.g. vit_h,sam2_hiera_l): time each one's "
                             "encode instead of the SAM encoder comparison")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side for --segmenters (default: 1024 on CUDA, 256 on CPU)")
    parser.add_argument("--tune-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tune-configs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tune_worker:
        job = json.loads(args.tune_configs)
        _tune_worker(args.tune_worker, args.variant or "vit_h", args.batch or 8, job["configs"], job["time_torch"])
        return 0

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

    if args.segmenters:
        names = [name.strip() for name in args.segmenters.split(",") if name.strip()]
        image_size = args.image_size or (1024 if on_cuda else 256)
        env.update(variant=None, segmenters=names, image_size=image_size)
        results = time_segmenters(names, device, batch, iters, image_size, log)
        if args.out is not None:
            (args.out / "results.json").write_text(json.dumps({"env": env, "results": results}, indent=2))
            (args.out / "log.txt").write_text("\n".join(lines) + "\n")
        return 0

    if args.tune and fast_attention_kernels.triton_supported(device):
        tune_kernels(variant, batch, log)  # first, before this process touches a Triton kernel
        log(f"[tune] KERNEL_CONFIGS = {json.dumps(fast_attention_kernels.KERNEL_CONFIGS)}")

    if on_cuda and fast_attention_kernels.triton_supported(device):
        check_tiny_fp32(device, log)

    encoder32 = build_encoder(variant, device)
    size = encoder32.img_size
    generator = torch.Generator(device="cpu").manual_seed(1)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    images16 = images.to(torch.bfloat16)
    results = []

    def save() -> None:
        """Write results.json and log.txt (atomically) so that a run cut short keeps its numbers."""
        if args.out is None:
            return
        payload = {"env": env, "results": results, "kernel_configs": fast_attention_kernels.KERNEL_CONFIGS}
        for name, text in (("results.json", json.dumps(payload, indent=2)), ("log.txt", "\n".join(lines) + "\n")):
            tmp = args.out / f"{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, args.out / name)

    def run(name: str, model, inputs, n_iters: int, warmup: int, ref=None):
        with torch.inference_mode():
            start = time.perf_counter()
            out = model(inputs)
            synchronize(device)
            first_s = time.perf_counter() - start
            times = time_calls(lambda: model(inputs), device, n_iters, warmup)
        ms = statistics.median(times)
        row = {"name": name, "ms_per_batch": ms, "img_per_s": batch * 1e3 / ms, "first_call_s": first_s}
        if ref is not None:
            row["max_rel_err"], row["rel_l2_err"] = errors(out.float(), ref)
        results.append(row)
        save()
        accuracy = ""
        if ref is not None:
            accuracy = f", max rel err {row['max_rel_err']:.2e}, rel L2 err {row['rel_l2_err']:.2e}"
        log(f"[run] {name}: {ms:.2f} ms/batch ({row['img_per_s']:.2f} img/s; spread "
            f"{min(times):.2f}..{max(times):.2f}; first call {first_s:.1f} s){accuracy}")
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

    if on_cuda:
        floor_ms = linear_floor(encoder16, batch, device, log)
        results.append({"name": "linear layers alone (floor)", "ms_per_batch": floor_ms,
                        "img_per_s": batch * 1e3 / floor_ms})

    if not on_cuda:  # CPUs run float32 best: also time ours there, against the same reference
        encoder32 = copy.deepcopy(encoder16).float()
        encoder32.load_state_dict(reference_state)
        run("ours fp32 eager (torch)", fast_encoder.FastImageEncoderViT(encoder32), images, iters, 1, ref)
        del encoder32
    fast = fast_encoder.FastImageEncoderViT(encoder16, backend="auto")
    run(f"ours bf16 eager ({'triton' if fast_attention_kernels.triton_supported(device) else 'torch'})",
        fast, images16, iters, 2, ref)
    if args.profile:
        with torch.inference_mode():
            profile(lambda: fast(images16), device, args.out and args.out / "profile_eager.txt", log, "ours eager")
    if args.torch_backend and fast_attention_kernels.triton_supported(device):
        run("ours bf16 eager (torch backend)", fast_encoder.FastImageEncoderViT(encoder16, backend="torch"),
            images16, iters, 2, ref)
    if args.compile if args.compile is not None else on_cuda:
        compiled = fast_encoder.accelerate_image_encoder(encoder16, compile=True)
        run("ours bf16 compiled", compiled, images16, iters, 2, ref)
        if args.profile:
            with torch.inference_mode():
                profile(lambda: compiled(images16), device, args.out and args.out / "profile_compiled.txt",
                        log, "ours compiled")

    if args.extra_compile_mode:
        tuned = fast_encoder.accelerate_image_encoder(encoder16, compile=True, compile_mode=args.extra_compile_mode)
        run(f"ours bf16 compiled ({args.extra_compile_mode})", tuned, images16, iters, 2, ref)

    by_name = {row["name"]: row for row in results}
    base32, base16 = by_name["official fp32"]["ms_per_batch"], by_name["official bf16"]["ms_per_batch"]
    log(f"\n{variant}, batch {batch}, {env['device']}, torch {env['torch']}, CUDA {env['cuda']}")
    log(f"{'run':38s} {'ms/batch':>9s} {'img/s':>8s} {'x fp32':>7s} {'x bf16':>7s} {'max rel':>9s} {'rel L2':>9s}")
    for row in results:
        log(f"{row['name']:38s} {row['ms_per_batch']:9.2f} {row['img_per_s']:8.2f} "
            f"{base32 / row['ms_per_batch']:7.2f} {base16 / row['ms_per_batch']:7.2f} "
            f"{row.get('max_rel_err', 0.0):9.2e} {row.get('rel_l2_err', 0.0):9.2e}")
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
