"""Training-step cost: cached embeddings + bf16 against AutoSAM-style uncached fp32.

Baseline: one step that re-runs the frozen SAM image encoder in fp32 on every batch (how
AutoSAM trains). Ours: one step on cached SAM embeddings (prompt encoder + mask decoder
forward, backward, Adam) under bf16 autocast on CUDA. Both are measured in the same run
on the same model; the peak memory of our step is reported too (issue targets: <= 20 ms
and <= 20 GB at batch 10 on an H100).

    python benchmarks/bench_train_step.py                 # GPU: ViT-H, batch 10
    python benchmarks/bench_train_step.py --small         # CPU-sized config
    python benchmarks/bench_train_step.py --variants      # + fused Adam, channels-last,
                                                          #   ODConv forms, torch.compile
"""

from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import dataclass

import torch

from odssam.engine.graphed_step import WARMUP_STEPS, GraphedStep
from odssam.config import FeatureEncoderConfig, ModelConfig, PromptEncoderConfig, SamConfig
from odssam.models.fast_encoder import FastImageEncoderViT
from odssam.models.loss import DiceBCELoss
from odssam.models.ods_sam import build_ods_sam
from odssam.models.odconv import ODConv2d
from timing import time_calls


def interpolate_resize(y: torch.Tensor, size, mode: str) -> torch.Tensor:
    return torch.nn.functional.interpolate(y, size=size, mode=mode, align_corners=False)


@dataclass(frozen=True)
class Variant:
    """One way to run the same cached training step (ours: the trainer's defaults)."""

    name: str
    channels_last: bool = True
    odconv: str = "loop"
    fused_adam: bool = False
    compile: bool = False
    cuda_graph: bool = False  # the whole step captured once and replayed (CUDA only)
    interpolate_neck: bool = False  # the neck resizes with F.interpolate (its CUDA bicubic kernel)


VARIANTS = (
    Variant("graph, neck bicubic by F.interpolate (before)", fused_adam=True, cuda_graph=True, interpolate_neck=True),
    Variant("eager, channels_last, ODConv loop, fused Adam", fused_adam=True),
    Variant("eager, channels_last, ODConv loop, foreach Adam"),
    Variant("eager, NCHW, ODConv grouped, foreach Adam (before)", channels_last=False, odconv="grouped"),
    Variant("eager, NCHW, ODConv loop, fused Adam", channels_last=False, fused_adam=True),
    Variant("eager, channels_last, ODConv grouped, fused Adam", odconv="grouped", fused_adam=True),
    Variant("eager, channels_last, ODConv matmul, fused Adam", odconv="matmul", fused_adam=True),
    Variant("graph, channels_last, ODConv grouped, fused Adam", odconv="grouped", fused_adam=True, cuda_graph=True),
    Variant("compile, NCHW, ODConv loop, fused Adam", channels_last=False, fused_adam=True, compile=True),
)


def small_config() -> ModelConfig:
    return ModelConfig(
        sam=SamConfig(variant="vit_tiny", image_size=256),
        prompt_encoder=PromptEncoderConfig(
            input_size=128, feature_encoder=FeatureEncoderConfig(backbone="efficientvit_tiny", neck_blocks=1)
        ),
    )


def adam_alone_ms(params: list[torch.Tensor], device: torch.device, repeats: int) -> float:
    """GPU time of the trainer's Adam update alone (fused and capturable on CUDA, replayed as
    a CUDA graph there, as inside the graphed step) over ``params``, given random gradients.

    The eager step's profile shows Adam as a range whose span includes the gaps between its
    launches; this is the update's own cost.
    """
    for param in params:
        param.grad = torch.randn_like(param)
    options = dict(fused=True, capturable=True) if device.type == "cuda" else {}
    adam = torch.optim.Adam(params, lr=1e-4, weight_decay=1e-5, **options)
    step = adam.step
    if device.type == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # the optimizer's state exists before capture
                adam.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            adam.step()
        step = graph.replay
    ms = statistics.median(time_calls(step, device, repeats, warmup=2))
    for param in params:
        param.grad = None
    return ms


def paper_recipe_model(path: str) -> ModelConfig:
    """The model section of an experiment YAML with random weights (speed does not depend on them)."""
    if path == "default":
        return ModelConfig()
    from odssam.config import load_config, with_overrides

    changes = {"sam.checkpoint": None, "prompt_encoder.feature_encoder.checkpoint": None}
    return with_overrides(load_config(path).model, changes, "model.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="small CPU-sized model")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--baseline-repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over ours and the variants")
    parser.add_argument("--variants", action="store_true", help="also time the variants in VARIANTS")
    parser.add_argument("--compile", action="store_true", help="include the torch.compile variants")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest ops of the fastest step")
    parser.add_argument("--config", default="configs/kvasir.yaml",
                        help="experiment YAML whose model is timed, random weights (default: the paper recipe); "
                        "'default' for ModelConfig()'s")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = small_config() if args.small or device.type == "cpu" else paper_recipe_model(args.config)
    model = build_ods_sam(cfg).to(device).train()
    loss_fn = DiceBCELoss()
    b, s, p, e = args.batch, model.image_size, cfg.prompt_encoder.input_size, model.embedding_size
    x_full = torch.randn(b, 3, s, s, device=device)
    x_prompt = torch.randn(b, 3, p, p, device=device)
    embeddings = torch.randn(b, 256, e, e, device=device).to(torch.bfloat16 if device.type == "cuda" else torch.float32)
    targets = (torch.rand(b, 1, model.logit_size, model.logit_size, device=device) > 0.7).float()
    bf16 = device.type == "cuda"
    encoder = model.segmenter.image_encoder
    # The baseline re-runs the official encoder module, as AutoSAM does.
    if isinstance(encoder, FastImageEncoderViT):
        encoder = FastImageEncoderViT(encoder, backend="official")  # shares the weights
    official_encoder = encoder

    def make_cached_step(optimizer, prompt_encoder, cache_enabled=True):
        def cached_step(x, embedding, target) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=cache_enabled):
                logits = model.decode(embedding, prompt_encoder(x))
                loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

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
        # The warm-up covers a graph's eager steps and its capture.
        median = statistics.median(time_calls(step, device, args.repeats, warmup=WARMUP_STEPS + 2))
        peak = (torch.cuda.max_memory_allocated() - base_memory) / 2**30 if device.type == "cuda" else float("nan")
        return median, peak

    def make_variant_step(variant: Variant):
        """Set the shared model up as ``variant`` says and return its step."""
        model.prompt_encoder.set_channels_last(variant.channels_last)
        neck = model.prompt_encoder.feature_encoder.neck
        if variant.interpolate_neck:
            neck.resize = functools.partial(interpolate_resize, mode=neck.upsample_mode)
        else:
            neck.__dict__.pop("resize", None)  # back to SamNeck.resize
        for module in model.prompt_encoder.modules():
            if isinstance(module, ODConv2d):
                module.per_sample = variant.odconv
        options = dict(fused=True, capturable=True) if variant.fused_adam and device.type == "cuda" else {}
        adam = torch.optim.Adam(model.trainable_parameters(), lr=1e-3, weight_decay=1e-5, **options)
        prompt_encoder = torch.compile(model.prompt_encoder) if variant.compile else model.prompt_encoder
        step = make_cached_step(adam, prompt_encoder, cache_enabled=not variant.cuda_graph)
        if variant.cuda_graph:
            step = GraphedStep(step)  # the trainer's own graph wrapper
        return functools.partial(step, x_prompt, embeddings, targets)

    # Ours is what the trainer does by default: on CUDA channels-last, fused Adam, CUDA graph.
    cuda = device.type == "cuda"
    ours = Variant("ours", cuda, cfg.prompt_encoder.odconv.per_sample, fused_adam=cuda, cuda_graph=cuda)
    candidates = VARIANTS if args.variants else ()
    runs = [ours] + [
        v for v in candidates if (args.compile or not v.compile) and (device.type == "cuda" or not v.cuda_graph)
    ]
    # Rounds interleave the variants so drift of the clock or the machine hits all of them;
    # each keeps its best median.
    results: dict[Variant, tuple[float, float]] = {}
    for round_index in range(args.rounds):
        for variant in list(runs):
            try:
                ms, peak = measure(make_variant_step(variant))
            except Exception as error:  # a variant that cannot run here is reported, not fatal
                print(f"  {variant.name}: failed: {type(error).__name__}: {error}", flush=True)
                runs.remove(variant)
                continue
            best_ms, first_peak = results.get(variant, (ms, peak))
            results[variant] = (min(ms, best_ms), first_peak)
            print(f"  round {round_index + 1}: {variant.name}: {ms:.2f} ms", flush=True)
    ours_ms, peak_gib = results.pop(ours)
    variant_results = [(variant.name, ms, peak) for variant, (ms, peak) in results.items()]
    fastest = min(runs, key=lambda v: ours_ms if v is ours else results[v][0])
    fastest_step = make_variant_step(fastest)
    if args.profile:
        print(f"profile of: {fastest.name}")
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(3):
                fastest_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=args.profile))
        params = list(model.trainable_parameters())
        print(f"Adam update alone ({len(params)} tensors, {sum(p.numel() for p in params):,} values): "
              f"{adam_alone_ms(params, device, args.repeats):.2f} ms")
    # The baseline trains as AutoSAM does: default layout, no tricks.
    make_variant_step(Variant("baseline", channels_last=False, odconv="grouped"))
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-3, weight_decay=1e-5)
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
