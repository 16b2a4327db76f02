"""aMUSEd through muse: measured times on a tiny random aMUSEd, and the real models' cost from their FLOPs.

1. Tiny model (diffusers' fast-test sizes, `muse.amused.make_tiny_amused`, token grid --grid): time per
   step and per image of `pipe(..., output_type="ids")`, `pipe(...)` (final image) and `pipe.stream(...)`
   (palette previews every step), against diffusers' own AmusedPipeline on the same folder (ABBA order).
2. Real sizes (the published amused-256 / amused-512 configs): FLOPs of one transformer step (guided:
   batch 2), of the VQ decode and of the CLIP-L text encoder, counted by torch's FlopCounterMode on the
   meta device (no weights); this CPU's float32 matmul rate measured at the transformer's feed-forward
   shape; the estimate = FLOPs / rate (a lower bound: it counts matmuls and convolutions only).
   The VQ decoder and the palette preview are also timed at full size with random weights (same work).

    .venv/bin/python benchmarks/amused.py            # writes benchmarks/results/amused.json
    .venv/bin/python benchmarks/amused.py --runs 3 --grid 16
    .venv/bin/python benchmarks/amused.py --only tiny --runs 9   # re-measure one part, keep the other
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_common import (RESULTS_DIR, abba, machine_info, median, set_threads, summary, table,  # noqa: E402
                                     versions, write_json)

PROMPT = "A painting of a squirrel eating a burger"
# The published configs (amused/amused-256 and amused/amused-512): the transformer differs only in its
# token grid and its down/upsampling around the transformer layers; the VQ and CLIP-L are shared.
TRANSFORMER = dict(hidden_size=1024, use_bias=False, cond_embed_dim=768, micro_cond_encode_dim=256,
                   micro_cond_embed_dim=1280, encoder_hidden_size=768, vocab_size=8256, codebook_size=8192,
                   in_channels=768, block_out_channels=768, num_res_blocks=3, block_num_heads=12,
                   num_hidden_layers=22, num_attention_heads=16, intermediate_size=2816, layer_norm_eps=1e-06)
REAL = {"amused-256": dict(sample_size=16, downsample=False, upsample=False),
        "amused-512": dict(sample_size=32, downsample=True, upsample=True)}
VQ = dict(act_fn="silu", block_out_channels=[128, 256, 256, 512, 768], down_block_types=["DownEncoderBlock2D"] * 5,
          in_channels=3, latent_channels=64, layers_per_block=2, lookup_from_codebook=True,
          mid_block_add_attention=False, norm_num_groups=32, norm_type="group", num_vq_embeddings=8192,
          out_channels=3, sample_size=32, up_block_types=["UpDecoderBlock2D"] * 5, force_upcast=True)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              projection_dim=768, max_position_embeddings=77, vocab_size=49408)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def tiny(args: argparse.Namespace) -> dict[str, Any]:
    """Ours vs diffusers on the tiny model: seconds per image and per step."""
    import torch
    from diffusers import AmusedPipeline as DiffusersAmused

    from muse import load_pipeline
    from muse.amused import make_tiny_amused

    folder = make_tiny_amused(Path(tempfile.mkdtemp()) / "tiny_amused", grid=args.grid)
    ours = load_pipeline(folder)
    theirs = DiffusersAmused.from_pretrained(str(folder), use_safetensors=True)
    theirs.set_progress_bar_config(disable=True)
    steps = args.timesteps
    calls = {
        "ours ids": lambda: ours(PROMPT, output_type="ids", seed=0, timesteps=steps),
        "diffusers latent": lambda: theirs(PROMPT, generator=torch.Generator().manual_seed(0),
                                           num_inference_steps=steps, output_type="latent"),
        "ours image": lambda: ours(PROMPT, seed=0, timesteps=steps),
        "diffusers image": lambda: theirs(PROMPT, generator=torch.Generator().manual_seed(0),
                                          num_inference_steps=steps),
        "ours stream, previews": lambda: list(ours.stream(PROMPT, seed=0, timesteps=steps)),
    }
    same = torch.equal(calls["ours ids"](), calls["diffusers latent"]().images)
    for call in calls.values():  # warm-up: first calls allocate, and the palette is fitted once
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for pair in (("ours ids", "diffusers latent"), ("ours image", "diffusers image")):
        for name in abba(args.runs, pair):
            times[name].append(timed(calls[name]))
    for _ in range(args.runs):
        times["ours stream, previews"].append(timed(calls["ours stream, previews"]))
    return {"grid": args.grid, "tokens": args.grid ** 2, "timesteps": steps, "same_ids_as_diffusers": same,
            "seconds": {name: summary(values) for name, values in times.items()},
            "per_step_ms": {name: 1000 * median(values) / steps for name, values in times.items()}}


def flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def real_flops() -> dict[str, Any]:
    """FLOPs of the published sizes, counted on the meta device."""
    import torch
    from diffusers import UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    out: dict[str, Any] = {}
    with torch.device("meta"):
        text = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L))
        ids = torch.zeros(2, 77, dtype=torch.long)
        out["clip_l_2_prompts"] = flops(lambda: text(ids, output_hidden_states=True))
        vq = VQModel(**VQ)
        for name, extra in REAL.items():
            model = UVit2DModel(**TRANSFORMER, **extra)
            g = extra["sample_size"]
            tokens = torch.zeros(2, g, g, dtype=torch.long)
            hidden, pooled, micro = torch.zeros(2, 77, 768), torch.zeros(2, 768), torch.zeros(2, 5)
            out[name] = {
                "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                "transformer_step_guided": flops(lambda: model(tokens, encoder_hidden_states=hidden,
                                                               pooled_text_emb=pooled, micro_conds=micro)),
                "vq_decode": flops(lambda: vq.decode(tokens[:1], force_not_quantize=True, shape=(1, g, g, 64))),
            }
    return out


def matmul_rate(runs: int) -> float:
    """This CPU's float32 GFLOP/s at the transformer's feed-forward shape (512 x 1024 @ 1024 x 2816)."""
    import torch

    a, b = torch.randn(512, 1024), torch.randn(1024, 2816)
    a @ b  # warm-up
    seconds = median([timed(lambda: [a @ b for _ in range(10)]) for _ in range(runs)]) / 10
    return 2 * 512 * 1024 * 2816 / seconds / 1e9


def real_decoder_and_previews(runs: int) -> dict[str, Any]:
    """The full-size VQ decoder (random weights, same work) vs the palette preview, at 256 and 512 px."""
    import torch
    from diffusers import VQModel

    from muse.amused.pipeline import AmusedTokenizer, PalettePreview

    torch.manual_seed(0)
    vq = AmusedTokenizer(VQModel(**VQ).eval())
    preview = PalettePreview()
    out: dict[str, Any] = {}
    with torch.inference_mode():
        out["palette_fit_s"] = timed(lambda: preview.fit(vq, 16))  # one 16 x 16 decode, once per model
        for px, g in ((256, 16), (512, 32)):
            ids = torch.randint(0, 8192, (1, g, g), generator=torch.Generator().manual_seed(0))
            out[f"{px}px"] = {"vq_decode_s": summary([timed(lambda: vq.decode(ids)) for _ in range(runs)]),
                              "palette_preview_s": summary([timed(lambda: preview.decode(vq, ids))
                                                            for _ in range(runs)])}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--grid", type=int, default=16, help="tiny model's token grid (16: 256 tokens, as amused-256)")
    p.add_argument("--timesteps", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "amused.json")
    p.add_argument("--only", choices=("tiny", "real"), help="measure one part and update it in --out "
                   "(the tiny model's timings are the ones a busy machine disturbs most)")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.only and args.out.is_file() else {}
    part = {"machine": machine_info(), "threads": threads, "versions": versions(),
            "args": {k: str(v) for k, v in vars(args).items()}}
    results.update({"benchmark": "amused", **({f"{args.only}_run": part} if args.only else part)})
    if args.only != "real":
        tiny_part(results, args)
    if args.only != "tiny":
        real_part(results, args)
    print(f"\nwrote {write_json(args.out, results)}")
    return 0


def tiny_part(results: dict[str, Any], args: argparse.Namespace) -> None:
    results["tiny"] = t = tiny(args)
    print(f"tiny aMUSEd, {t['tokens']} tokens, {t['timesteps']} steps, guidance on; same ids as diffusers: "
          f"{t['same_ids_as_diffusers']}")
    print(table(["call", "s / image (median)", "ms / step"],
                [[name, f"{s['median']:.4f}", f"{t['per_step_ms'][name]:.2f}"] for name, s in t["seconds"].items()]))


def real_part(results: dict[str, Any], args: argparse.Namespace) -> None:
    rate = matmul_rate(args.runs)
    counted = real_flops()
    results["cpu_matmul_gflops"] = rate
    results["real_flops"] = counted
    rows = []
    for name in REAL:
        c = counted[name]
        step = c["transformer_step_guided"] / 1e9
        image = (args.timesteps * c["transformer_step_guided"] + c["vq_decode"] + counted["clip_l_2_prompts"]) / 1e9
        c["estimate_step_s"], c["estimate_image_s"] = step / rate, image / rate
        rows.append([name, c["params_millions"], f"{step:.0f}", f"{c['vq_decode'] / 1e9:.0f}", f"{image:.0f}",
                     f"{step / rate:.1f}", f"{image / rate:.0f}"])
    print(f"\nreal sizes, {args.timesteps} steps, guided (batch 2); this CPU: {rate:.0f} GFLOP/s float32 matmul")
    print(table(["model", "params (M)", "GFLOP / step", "GFLOP decode", "GFLOP / image", "est. s / step",
                 "est. s / image"], rows))
    results["real_decoder"] = d = real_decoder_and_previews(max(1, args.runs // 2))
    print(f"\nfull-size VQ decoder vs palette preview (random weights); palette fitted once in "
          f"{d['palette_fit_s']:.1f} s")
    print(table(["size", "VQ decode s", "palette preview s"],
                [[px, f"{d[px]['vq_decode_s']['median']:.3f}", f"{d[px]['palette_preview_s']['median']:.5f}"]
                 for px in ("256px", "512px")]))


if __name__ == "__main__":
    sys.exit(main())
