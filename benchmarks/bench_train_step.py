"""Training-step cost: cached embeddings + bf16 against AutoSAM-style uncached fp32.

Baseline: one step that re-runs the frozen SAM image encoder in fp32 on every batch (how
AutoSAM trains). Ours: one step on cached SAM embeddings (prompt encoder + mask decoder
forward, backward, Adam) under bf16 autocast on CUDA. Both are measured in the same run
on the same model; the peak memory of our step is reported too (issue targets: <= 20 ms
and <= 20 GB at batch 10 on an H100).

    python benchmarks/bench_train_step.py                 # GPU: ViT-H, batch 10
    python benchmarks/bench_train_step.py --small         # CPU-sized config
"""

from __future__ import annotations

import argparse
import statistics

import torch

from odssam.config import FeatureEncoderConfig, ModelConfig, PromptEncoderConfig, SamConfig
from odssam.models.fast_encoder import FastImageEncoderViT
from odssam.models.loss import DiceBCELoss
from odssam.models.ods_sam import build_ods_sam
from timing import time_calls


def small_config() -> ModelConfig:
    return ModelConfig(
        sam=SamConfig(variant="vit_tiny", image_size=256),
        prompt_encoder=PromptEncoderConfig(
            input_size=128, feature_encoder=FeatureEncoderConfig(backbone="efficientvit_tiny", neck_blocks=1)
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small CPU-sized model")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--baseline-repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the prompt encoder")
    parser.add_argument("--variants", action="store_true", help="also time fused Adam and channels-last")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest ops of our step")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = small_config() if args.small or device.type == "cpu" else ModelConfig()
    model = build_ods_sam(cfg).to(device).train()
    if args.compile:
        model.prompt_encoder = torch.compile(model.prompt_encoder)
    loss_fn = DiceBCELoss()
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3, weight_decay=1e-5)
    b, s, p, e = args.batch, model.image_size, cfg.prompt_encoder.input_size, model.embedding_size
    x_full = torch.randn(b, 3, s, s, device=device)
    x_prompt = torch.randn(b, 3, p, p, device=device)
    embeddings = torch.randn(b, 256, e, e, device=device).to(torch.bfloat16 if device.type == "cuda" else torch.float32)
    targets = (torch.rand(b, 1, model.logit_size, model.logit_size, device=device) > 0.7).float()
    bf16 = device.type == "cuda"
    encoder = model.sam.image_encoder
    # The baseline re-runs the official encoder module, as AutoSAM does.
    if isinstance(encoder, FastImageEncoderViT):
        encoder = FastImageEncoderViT(encoder, backend="official")  # shares the weights
    official_encoder = encoder

    def make_cached_step(optimizer, x_in):
        def cached_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model.decode(embeddings, model.prompt(x_in))
                loss = loss_fn(logits, targets)
            loss.backward()
            optimizer.step()

        return cached_step

    def uncached_fp32_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            embeddings_fp32 = official_encoder(x_full)
        logits = model.decode(embeddings_fp32, model.prompt(x_full))
        loss_fn(logits, targets).backward()
        optimizer.step()

    def measure(step) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_memory = torch.cuda.memory_allocated()
        median = statistics.median(time_calls(step, device, args.repeats, warmup=3))
        peak = (torch.cuda.max_memory_allocated() - base_memory) / 2**30 if device.type == "cuda" else float("nan")
        return median, peak

    cached_step = make_cached_step(optimizer, x_prompt)
    ours_ms, peak_gib = measure(cached_step)
    variant_results = []
    if args.variants:
        # Same model and inputs; a fresh optimizer per variant (its state does not affect the cost).
        params = model.trainable_parameters()
        fused = dict(fused=True) if device.type == "cuda" else dict(foreach=True)
        fused_adam = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5, **fused)
        variant_results.append(("ours + fused Adam", *measure(make_cached_step(fused_adam, x_prompt))))
        for module in model.prompt_encoder.modules():
            if isinstance(module, torch.nn.Conv2d):  # ODConv's 5-D kernel bank stays as is
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        x_channels_last = x_prompt.contiguous(memory_format=torch.channels_last)
        fused_adam = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5, **fused)
        step = make_cached_step(fused_adam, x_channels_last)
        variant_results.append(("ours + fused Adam + channels_last", *measure(step)))
    if args.profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(3):
                cached_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=args.profile))
    if device.type == "cuda":
        # The fp32 baseline disables TF32 so it runs as plain fp32, like AutoSAM's code.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    baseline = time_calls(uncached_fp32_step, device, args.baseline_repeats, warmup=1)
    base_ms = statistics.median(baseline)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; SAM {cfg.sam.variant}; batch {b}")
    print(f"baseline uncached fp32 step (encoder re-run): {base_ms:9.2f} ms")
    print(f"ours cached {'bf16' if bf16 else 'fp32'} step:                {ours_ms:9.2f} ms  (peak extra memory {peak_gib:.2f} GiB)")
    for label, ms, peak in variant_results:
        print(f"{label + ':':<46}{ms:9.2f} ms  (peak extra memory {peak:.2f} GiB)  {base_ms / ms:.1f}x")
    print(f"ratio: {base_ms / ours_ms:.1f}x; 18,000 steps (200 epochs x 90) take {18000 * ours_ms / 60000:.1f} min")


if __name__ == "__main__":
    main()
