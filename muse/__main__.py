"""Command line: python -m muse {generate,inpaint,superres} ...

  python -m muse generate "grinning face" --seed 0 -o out.png --gif steps.gif
  python -m muse inpaint photo.png mask.png "red heart" -o filled.png
  python -m muse superres small.png "rocket" -o big.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, default=Path("out.png"), help="output PNG (several images: out-0.png, ...)")
    p.add_argument("--gif", type=Path, help="also save an animated GIF of every decoding step")
    p.add_argument("--weights", help="model folder or Hub repo id (default: the shipped weights/)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformers (meant for a GPU; "
                   "compiling takes about a minute)")
    p.add_argument("--negative-prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--timesteps", type=int)
    p.add_argument("--cond-scale", type=float)
    p.add_argument("--temperature", type=float)
    p.add_argument("--topk-filter-thres", type=float)
    p.add_argument("--critic-noise-scale", type=float)
    p.add_argument("--schedule", choices=("cosine", "linear", "arccos", "power"))
    p.add_argument("--no-critic", dest="use_critic", action="store_false", default=None)
    p.add_argument("--base-only", dest="superres", action="store_false", default=None, help="skip the super-res stage")
    p.add_argument("--num-images", type=int)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m muse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="text to image")
    gen.add_argument("prompt")
    _settings_args(gen)
    inp = sub.add_parser("inpaint", help="regenerate the white part of a mask")
    inp.add_argument("image", type=Path)
    inp.add_argument("mask", type=Path)
    inp.add_argument("prompt")
    _settings_args(inp)
    sr = sub.add_parser("superres", help="super-resolve a low-resolution image")
    sr.add_argument("image", type=Path)
    sr.add_argument("prompt")
    _settings_args(sr)
    return parser.parse_args(argv)


def _check_outputs(a: argparse.Namespace) -> None:
    """Refuse an output name PIL cannot write before any work is done."""
    Image.init()
    for path, kind in ((a.out, "-o/--out"), (a.gif, "--gif")):
        if path is None:
            continue
        if path.suffix.lower() not in Image.EXTENSION:
            raise ValueError(f"{kind} {path}: unknown image extension {path.suffix!r} (use .png, .jpg, .webp ...)")
        if path.is_dir():
            raise ValueError(f"{kind} {path} is a folder; give a file name")
    if a.gif is not None and a.gif.suffix.lower() != ".gif":
        raise ValueError(f"--gif {a.gif}: the animation is written as GIF; name it .gif")


def run(a: argparse.Namespace) -> list[Path]:
    from muse import load_pipeline
    from muse.pipeline import GenerationSettings

    keys = ("seed", "timesteps", "cond_scale", "temperature", "topk_filter_thres", "critic_noise_scale", "schedule",
            "use_critic", "superres", "num_images")
    kwargs = {k: getattr(a, k) for k in keys if getattr(a, k, None) is not None}
    if a.command == "superres":
        kwargs.pop("superres", None)
    _check_outputs(a)
    GenerationSettings(**kwargs)  # fail fast, before the model loads
    pipe = load_pipeline(a.weights, device=a.device)
    if a.compile:
        pipe.compile()
    previews = a.gif is not None
    if a.command == "generate":
        steps = pipe.stream(a.prompt, negative_prompt=a.negative_prompt, previews=previews, **kwargs)
    elif a.command == "inpaint":
        steps = pipe.stream_inpaint(a.image, a.mask, a.prompt, negative_prompt=a.negative_prompt,
                                    previews=previews, **kwargs)
    else:
        steps = pipe.stream_superres(a.image, a.prompt, negative_prompt=a.negative_prompt,
                                     previews=previews, **kwargs)
    history = list(steps)
    final = history[-1]
    images = final.canvas
    a.out.parent.mkdir(parents=True, exist_ok=True)
    paths = [a.out] if len(images) == 1 else [a.out.with_name(f"{a.out.stem}-{i}{a.out.suffix}") for i in range(len(images))]
    for image, path in zip(images, paths):
        image.save(path)
    if a.gif is not None:
        from muse.viz import decoding_gif

        decoding_gif(history, a.gif)
    print(f"seed {final.seed}: wrote {', '.join(map(str, paths))}" + (f" and {a.gif}" if a.gif else ""))
    return paths


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    from muse.hub import WeightsError

    try:
        run(a)
    except (ValueError, TypeError, WeightsError) as err:  # ImageError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. the output folder cannot be written
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
