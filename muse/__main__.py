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


# Extra spellings kept for the flags users already type.
ALIASES = {"use_critic": ("--no-critic", False, "same as --no-use-critic"),
           "superres": ("--base-only", False, "skip the super-res stage (same as --no-superres)")}


def _settings_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The request options: output and model options, then one per setting of the schema (`muse.settings`).

    Values are checked by the schema after parsing, so a bad one is the same one-line message as from
    Python (argparse only converts the type)."""
    from muse.settings import SCHEMA

    p.add_argument("-o", "--out", type=Path, default=Path("out.png"), help="output PNG (several images: out-0.png, ...)")
    p.add_argument("--gif", type=Path, help="also save an animated GIF of every decoding step")
    p.add_argument("--weights", help="model folder or Hub repo id (default: the shipped weights/)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformers (meant for a GPU; "
                   "compiling takes about a minute)")
    p.add_argument("--negative-prompt", help="what guidance steers away from")
    settings = p.add_argument_group("settings (default: the weights' tuned defaults)")
    for name, spec in SCHEMA.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        text = spec.help.replace("%", "%%")  # argparse formats help with %
        if spec.kind is bool:
            settings.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
            if name in ALIASES:
                alias, value, text = ALIASES[name]
                settings.add_argument(alias, dest=name, action="store_const", const=value, help=text)
        elif spec.kind is str:
            settings.add_argument(flag, dest=name, choices=spec.choices, help=text)
        else:
            lo, hi = (int(spec.lo), int(spec.hi)) if spec.kind is int else (spec.lo, spec.hi)
            limits = f" [{lo:g} to {hi:g}{', exclusive' if spec.below_hi else ''}]" if spec.kind is float else \
                f" [{lo} to {hi}]"
            settings.add_argument(flag, dest=name, type=spec.kind, metavar=name.upper(), help=text + limits)


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
    _settings_args(sr, skip=("superres",))
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
    from muse.settings import SCHEMA, GenerationSettings

    kwargs = {k: getattr(a, k) for k in SCHEMA if getattr(a, k, None) is not None}
    if not a.prompt.strip():  # an empty shell variable, most often: an image of nothing asked for is no answer
        raise ValueError('the prompt is empty: give a few words on what to draw, such as "red heart"')
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
