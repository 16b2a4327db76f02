"""Picture sheets: the sample sheet of everyday prompts, and one prompt under each setting of a sweep."""

from __future__ import annotations

import math
from collections.abc import Sequence


# The sample sheet's prompts: everyday subjects a new user would try first, fixed once.
SAMPLE_PROMPTS = ("red heart", "grinning face", "rocket", "sun", "fire", "snowman", "blue car", "the moon at night",
                  "cat face", "pizza", "christmas tree", "rainbow", "ghost", "thumbs up", "birthday cake", "penguin")
SAMPLE_SEEDS = (0, 1)


def sample_sheet(pipe, prompts: Sequence[str] = SAMPLE_PROMPTS, seeds: Sequence[int] = SAMPLE_SEEDS,
                 scale: int = 2, **settings):
    """A labelled grid: one column per prompt, one row per seed, each image upscaled `scale`x (nearest)."""
    from PIL import Image, ImageDraw

    rows = [pipe(list(prompts), seed=seed, **settings) for seed in seeds]
    cell = rows[0][0].width * scale
    label_h, cols = 14, 8
    blocks = math.ceil(len(prompts) / cols)
    sheet = Image.new("RGB", (cols * cell, blocks * (label_h + len(seeds) * cell)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, prompt in enumerate(prompts):
        x, y = (i % cols) * cell, (i // cols) * (label_h + len(seeds) * cell)
        draw.text((x + 2, y + 1), prompt[: cell // 6], fill="black")
        for r, images in enumerate(rows):
            sheet.paste(images[i].resize((cell, cell), Image.Resampling.NEAREST), (x, y + label_h + r * cell))
    return sheet


def settings_sheet(pipe, rows: dict[str, dict], prompts: Sequence[str], seeds: Sequence[int] = (0, 1, 2, 3),
                   scale: int = 1):
    """One row per setting (`label -> settings`), each prompt under each seed: what a sweep looks like."""
    from PIL import Image, ImageDraw

    images = {label: [pipe(list(prompts), seed=seed, **settings) for seed in seeds] for label, settings in rows.items()}
    cell = next(iter(images.values()))[0][0].width * scale
    gap = 6
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 8 + max(int(measure.textlength(label)) for label in rows)  # every label whole
    width = label_w + len(prompts) * (len(seeds) * cell + gap)
    sheet = Image.new("RGB", (width, 14 + len(rows) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for p, prompt in enumerate(prompts):
        draw.text((label_w + p * (len(seeds) * cell + gap) + 2, 1), prompt, fill="black")
    for r, (label, by_seed) in enumerate(images.items()):
        y = 14 + r * cell
        draw.text((2, y + cell // 2 - 6), label, fill="black")
        for s, batch in enumerate(by_seed):
            for p, image in enumerate(batch):
                x = label_w + p * (len(seeds) * cell + gap) + s * cell
                sheet.paste(image.resize((cell, cell), Image.Resampling.NEAREST), (x, y))
    return sheet


__all__ = ["SAMPLE_PROMPTS", "SAMPLE_SEEDS", "sample_sheet", "settings_sheet"]
