"""Pictures of the decoding: pure functions from `DecodeStep`s to PIL images and GIFs.

Nothing here touches a network or a UI: the playground (`app.py`) and the CLI call these on the
steps that `MusePipeline.stream*` yields. Token grids are upscaled with nearest-neighbour so every
token stays a crisp block. The token maps are drawn with PIL and numpy (matplotlib lends its colour
maps); the schedule plot uses matplotlib's object API (no pyplot state, safe in threads).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .orders import FIXED_ORDERS
from .sampling import NEVER_SCORE
from .schedules import ScheduleLike, mask_counts

if TYPE_CHECKING:  # only for annotations: viz needs no model code at run time
    from .pipeline import DecodeStep

HIGHLIGHT = (255, 196, 0)  # outline of the tokens fixed at this step
KNOWN_GRAY = (0.86, 0.86, 0.86)  # tokens a stage did not generate (inpainting: kept tokens)
SENTINEL = NEVER_SCORE / 10  # |score| above this: a position the sampler did not choose from
STAGE_NAMES = {"base": "base", "superres": "super-res"}
# What ranked a step's tokens (`muse.settings.ORDERS`, a step's `state.ranking`), in a status line's words.
ORDER_WORDS = {"confidence": "ranked by confidence", "critic": "ranked by the critic", "halton": "Halton order",
               "random": "random order"}
FIXED_ORDER_NAMES = {"halton": "Halton", "random": "random"}  # the fixed orders, as "the Halton order" names them


# ----- pixels -------------------------------------------------------------------------------

def upscale(image: Image.Image, size: int) -> Image.Image:
    """Nearest-neighbour resize so the longer side is `size` (tokens stay crisp blocks)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    scale = size / max(image.size)
    target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if target == image.size else image.resize(target, Image.Resampling.NEAREST)


def tile(images: Sequence[Image.Image], columns: Optional[int] = None, gap: int = 0,
         background: tuple = (255, 255, 255)) -> Image.Image:
    """Images of one size in a grid (row-major), `columns` defaulting to a near-square layout."""
    if not images:
        raise ValueError("tile needs at least one image")
    if len(images) == 1:
        return images[0]
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), background)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        sheet.paste(im.convert("RGB"), (c * (w + gap), r * (h + gap)))
    return sheet


def _grid(mask) -> np.ndarray:
    """A (h, w) bool/number grid from a tensor or array, on the CPU."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask)


def highlight_tokens(image: Image.Image, tokens, size: int, color: tuple = HIGHLIGHT,
                     width: Optional[int] = None) -> Image.Image:
    """Upscale `image` to `size` and outline each token where `tokens` ((h, w) bool) is set."""
    grid = _grid(tokens).astype(bool)
    out = upscale(image.convert("RGB"), size)
    h, w = grid.shape
    if out.width % w == 0 and out.height % h == 0:  # whole-pixel cells (the usual case): one numpy pass
        cell_w, cell_h = out.width // w, out.height // h
        width = width or max(1, round(min(cell_w, cell_h) / 8))
        ring = np.ones((cell_h, cell_w), dtype=bool)
        ring[width:cell_h - width, width:cell_w - width] = False
        outline = np.kron(grid, ring).astype(bool)
        pixels = np.array(out)
        pixels[outline] = color
        return Image.fromarray(pixels)
    cell_w, cell_h = out.width / w, out.height / h
    width = width or max(1, round(min(cell_w, cell_h) / 8))
    draw = ImageDraw.Draw(out)
    for y, x in zip(*np.nonzero(grid)):
        x0, y0 = round(x * cell_w), round(y * cell_h)
        x1, y1 = round((x + 1) * cell_w) - 1, round((y + 1) * cell_h) - 1
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
    return out


def step_canvas(step: "DecodeStep", size: int = 256, highlight: bool = True) -> Image.Image:
    """This step's canvas (still-masked tokens greyed by the pipeline), newly fixed tokens outlined;
    a batch is tiled, each image `size` px."""
    if step.canvas is None:
        raise ValueError("this step has no canvas: decode with previews=True")
    if highlight and not step.is_final:
        images = [highlight_tokens(im, step.revealed[i], size) for i, im in enumerate(step.canvas)]
    else:
        images = [upscale(im, size) for im in step.canvas]
    return tile(images)


def step_prediction(step: "DecodeStep", size: int = 256) -> Image.Image:
    """The model's full prediction at this step (masked tokens filled with its guess), upscaled; a batch is tiled."""
    if step.prediction is None:
        raise ValueError("this step has no prediction image: decode with previews=True")
    return tile([upscale(im, size) for im in step.prediction])


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at `size` px (loaded once per size: loading it costs more than drawing with it)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def caption(image: Image.Image, text: str, height: Optional[int] = None) -> Image.Image:
    """`image` with a white strip below it holding `text`."""
    height = height or max(14, image.width // 14)
    out = Image.new("RGB", (image.width, image.height + height), (255, 255, 255))
    out.paste(image.convert("RGB"), (0, 0))
    font = _font(max(9, int(height * 0.7)))
    _text_middle_left(ImageDraw.Draw(out), (4, image.height + height // 2), text, font)
    return out


@functools.lru_cache(maxsize=2048)
def _rendered(text: str, font) -> tuple[Image.Image, int, int, int]:
    """`text` drawn once in `font` as a mask (255 = ink), with its box's left, top and bottom offsets from
    the drawing origin. A run's pictures write the same labels again and again (every step's, every
    run's): drawing them once saves most of the time the pictures take."""
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    return mask, left, top, bottom


def _text_middle_left(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font) -> None:
    """Text whose left edge is at x and vertical middle at y (bitmap fonts have no anchors)."""
    mask, left, top, bottom = _rendered(text, font)
    draw.bitmap((xy[0] + left, xy[1] - (top + bottom) // 2 + top), mask, fill=(20, 20, 20))


# ----- the run as a sequence ----------------------------------------------------------------

def _with_canvas(steps: Sequence["DecodeStep"]) -> list["DecodeStep"]:
    steps = [s for s in steps if s.canvas is not None]
    if not steps:
        raise ValueError("no step has a canvas: decode with previews=True")
    return steps


def timeline_sheet(steps: Sequence["DecodeStep"], size: int = 96, columns: int = 12, gap: int = 3) -> Image.Image:
    """The whole decoding in one picture: for each stage a title, then every step's canvas (newly fixed
    tokens outlined; a batch tiled in `size` px) left to right, `columns` to a row, each with its step
    number and the tokens fixed so far written below it. One picture instead of one per step: the page
    fetches and lays out one file."""
    steps = _with_canvas(steps)
    stages = _stages(steps)
    cell = max(8, size // math.ceil(math.sqrt(len(steps[0].canvas))))  # each image of a batch
    cell_w, cell_h = step_canvas(steps[0], cell).size
    columns = max(1, min(columns, max(len(rows) for rows in stages.values())))
    label_h, title_h = max(12, size // 7), max(16, size // 5)
    font, title_font = _font(max(9, int(label_h * 0.8))), _font(max(10, int(title_h * 0.6)))
    row_h = cell_h + label_h + gap
    height = sum(title_h + math.ceil(len(rows) / columns) * row_h for rows in stages.values())
    sheet = Image.new("RGB", (columns * (cell_w + gap) - gap, height - gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for stage, rows in stages.items():
        side = rows[0].canvas[0].width
        fixed = fixed_order(rows)
        order = f" in the {FIXED_ORDER_NAMES[fixed]} order" if fixed else ""
        _text_middle_left(draw, (2, y + title_h // 2),
                          f"{STAGE_NAMES.get(stage, stage)} stage, {side} px: {len(rows)} steps{order} "
                          "(step · tokens fixed so far)", title_font)
        y += title_h
        for i, s in enumerate(rows):
            r, c = divmod(i, columns)
            x, top = c * (cell_w + gap), y + r * row_h
            sheet.paste(step_canvas(s, cell), (x, top))
            _text_middle_left(draw, (x + 2, top + cell_h + label_h // 2), f"{s.step} · {s.num_fixed}/{s.num_tokens}",
                              font)
        y += math.ceil(len(rows) / columns) * row_h
    return sheet


def decoding_gif(steps: Sequence["DecodeStep"], path: Union[str, Path], size: int = 256,
                 frame_ms: int = 180, final_ms: int = 2000, captions: bool = True) -> Path:
    """Write an animated GIF of every step's canvas (all stages; a batch tiled), the last frame held
    `final_ms`. Steps without a canvas are skipped. Returns the path."""
    steps = _with_canvas(steps)
    frames = []
    for s in steps:
        frame = tile([upscale(im, size) for im in s.canvas], gap=0)
        if captions:
            frame = caption(frame, s.label)
        frames.append(frame.convert("RGB"))
    durations = [frame_ms] * len(frames)
    durations[-1] = final_ms
    for i, s in enumerate(steps[:-1]):  # a short pause where one stage hands over to the next
        if s.step == s.total:
            durations[i] = max(frame_ms, final_ms // 3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One palette for every frame, from the first (the masked grey, the caption) and the last (the image's
    # colours): quantizing each frame to it is quick, and with a shared palette the writer stores only the
    # rectangle that changed since the previous frame.
    palette = tile([frames[0], frames[-1]], columns=2).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    indexed = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    indexed[0].save(path, format="GIF", save_all=True, append_images=indexed[1:], duration=durations, loop=0,
                    optimize=False, disposal=1)
    return path


# ----- token maps ---------------------------------------------------------------------------

def _stages(steps: Sequence["DecodeStep"]) -> dict[str, list["DecodeStep"]]:
    stages: dict[str, list] = {}
    for s in steps:
        stages.setdefault(s.stage, []).append(s)
    if not stages:
        raise ValueError("no steps")
    return stages


def ranking(step: "DecodeStep") -> str:
    """What ranked this step's tokens (one of `muse.settings.ORDERS`): the model's confidence, the token
    critic, or a fixed order ("halton", "random") that does not look at the model's output."""
    return step.ranking


def order_words(step: "DecodeStep") -> str:
    """What ranked this step's tokens, in a status line's words ("Halton order", "ranked by the critic")."""
    return ORDER_WORDS.get(ranking(step), ranking(step))


def fixed_order(steps: Sequence["DecodeStep"]) -> Optional[str]:
    """The fixed order ("halton", "random") that ranked these steps' tokens, None when the model's
    confidence or its critic ranked them."""
    return next((ranking(s) for s in steps if ranking(s) in FIXED_ORDERS), None)


def reveal_order(steps: Sequence["DecodeStep"], index: int = 0) -> dict[str, np.ndarray]:
    """Per stage, an int (h, w) grid: the 1-based step that fixed each token, 0 for known tokens."""
    out = {}
    for stage, rows in _stages(steps).items():
        order = np.zeros(_grid(rows[0].revealed[index]).shape, dtype=np.int64)
        for s in rows:
            order[_grid(s.revealed[index]).astype(bool)] = s.step
        out[stage] = order
    return out


def at_reveal(steps: Sequence["DecodeStep"], values: Callable[["DecodeStep"], Optional[np.ndarray]],
              index: int = 0) -> dict[str, np.ndarray]:
    """Per stage, a float (h, w) grid: `values(step)` (an (h, w) grid of row `index`, or None) at the
    step that fixed each token; NaN for known tokens and where a step has no value."""
    out = {}
    for stage, rows in _stages(steps).items():
        grid = np.full(_grid(rows[0].revealed[index]).shape, np.nan, dtype=np.float64)
        for s in rows:
            got = values(s)
            if got is not None:
                fixed = _grid(s.revealed[index]).astype(bool)
                grid[fixed] = np.asarray(got, dtype=np.float64)[fixed]
        out[stage] = grid
    return out


def _field(step: "DecodeStep", name: str, index: int) -> Optional[np.ndarray]:
    value = getattr(step, name)
    return None if value is None else _grid(value[index]).astype(np.float64)


def model_probability(step: "DecodeStep", index: int = 0) -> Optional[np.ndarray]:
    """(h, w): the model's probability of the token it sampled at this step (exp of `log_probs`: the
    guided distribution before temperature and top-k); NaN where it was not asked."""
    logp = _field(step, "log_probs", index)
    return None if logp is None else np.exp(logp)


def critic_probability(step: "DecodeStep", index: int = 0) -> Optional[np.ndarray]:
    """(h, w): the critic's probability that the sampled token is right, sigmoid(-its "wrong" logit);
    None on a step without a critic pass (the last one, or the critic off)."""
    wrong = _field(step, "critic_scores", index)
    return None if wrong is None else 1.0 / (1.0 + np.exp(wrong))


def keep_noise(step: "DecodeStep", index: int = 0) -> Optional[np.ndarray]:
    """(h, w): the random term the sampler added to the keep score at this step."""
    return _field(step, "keep_noise", index)


def order_place(step: "DecodeStep", index: int = 0) -> Optional[np.ndarray]:
    """(h, w): under a fixed order, each candidate's place in it (0 = the first position the order keeps;
    the sampler's keep score is minus the place), NaN off the candidates; None when the model's confidence
    or its critic ranked the step."""
    if ranking(step) not in FIXED_ORDERS:
        return None
    scores = _grid(step.scores[index]).astype(np.float64)
    return np.where(np.abs(scores) < SENTINEL, -scores, np.nan)


def confidence_at_reveal(steps: Sequence["DecodeStep"], index: int = 0) -> dict[str, np.ndarray]:
    """Per stage, a float (h, w) grid in [0, 1]: the model's probability of each token at the step that
    fixed it; NaN for known tokens."""
    return at_reveal(steps, lambda s: model_probability(s, index), index)


def critic_at_reveal(steps: Sequence["DecodeStep"], index: int = 0) -> dict[str, np.ndarray]:
    """Per stage, the critic's probability that each token is right at the step that fixed it; NaN for
    known tokens and for tokens fixed without a critic pass (the last step fixes all the rest)."""
    return at_reveal(steps, lambda s: critic_probability(s, index), index)


def noise_at_reveal(steps: Sequence["DecodeStep"], index: int = 0) -> dict[str, np.ndarray]:
    """Per stage, the noise the sampler added to each token's keep score at the step that fixed it."""
    return at_reveal(steps, lambda s: keep_noise(s, index), index)


def place_at_reveal(steps: Sequence["DecodeStep"], index: int = 0) -> dict[str, np.ndarray]:
    """Per stage, each token's place in the fixed order that ranked it (`order_place`); NaN for known
    tokens, and everywhere when no fixed order ranked the run."""
    return at_reveal(steps, lambda s: order_place(s, index), index)


def ranked_by(step: "DecodeStep", index: int = 0) -> Optional[np.ndarray]:
    """(h, w): what the sampler ranked by before its noise: minus the place in a fixed order (which has no
    noise), -critic logit with a critic pass, else the model's log-probability; NaN off the candidates."""
    place = order_place(step, index)
    if place is not None:
        return -place
    wrong = _field(step, "critic_scores", index)
    return -wrong if wrong is not None else _field(step, "log_probs", index)


def noise_decided(step: "DecodeStep", index: int = 0) -> tuple[int, int]:
    """(tokens fixed at this step that the noise chose, tokens fixed at it): a fixed token counts when the
    same number chosen by the noiseless score alone would have left it masked. The last step fixes
    every remaining token whatever the scores: (0, n)."""
    fixed = _grid(step.revealed[index]).astype(bool)
    base = ranked_by(step, index)
    if base is None or step.step == step.total:
        return 0, int(fixed.sum())
    candidates = np.isfinite(base)
    kept = candidates & ~_grid(step.masked[index]).astype(bool)
    k = int(kept.sum())
    if k == 0:
        return 0, int(fixed.sum())
    # ties broken by position, like the sampler's stable sort
    order = np.argsort(-np.where(candidates, base, -np.inf).ravel(), kind="stable")[:k]
    noiseless = np.zeros(base.size, dtype=bool)
    noiseless[order] = True
    return int((fixed.ravel() & ~noiseless).sum()), int(fixed.sum())


MAP_SIZE = 224  # the side of each token map in the figures, px
TICK_ROOM, LEGEND_ROOM = 40, 34  # px beside a map's colour bar for its tick labels and its legend
TEXT_RGB = (20, 20, 20)
HATCH_RGB = (178, 178, 178)


def _hatched(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8: light grey with diagonal lines, the figures' "no value"."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:] = [round(255 * c) for c in KNOWN_GRAY]
    out[(x + y) % 7 == 0] = HATCH_RGB
    return out


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values from lo to hi (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    span = hi - lo
    if not span > 0:
        return [lo]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _vertical_text(lines: Sequence[str], font, height: int) -> Image.Image:
    """Lines of text turned a quarter anticlockwise (a colour bar's legend), centred on `height`."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(font.size * 1.25) if hasattr(font, "size") else 12
    width = max(int(probe.textlength(line, font=font)) for line in lines) + 4
    strip = Image.new("RGB", (max(width, height), line_h * len(lines) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        x = (strip.width - probe.textlength(line, font=font)) / 2
        draw.text((x, i * line_h), line, fill=TEXT_RGB, font=font)
    return strip.rotate(90, expand=True)


def _map_panel(grid: np.ndarray, cmap: str, title: str, bar_label: str, discrete: Optional[int] = None,
               limits: Optional[tuple[float, float]] = None) -> Image.Image:
    """One token grid as colours (nearest blocks, MAP_SIZE px), its title above and its colour bar with
    ticks and legend beside it; NaN (known, or no value) hatched grey, so no colour of the scale can be
    mistaken for it. `discrete`: values 1..discrete, one colour each; `limits` fix the scale (a
    probability's 0-1), else it spans the values. Drawn with PIL and numpy alone (matplotlib only lends
    its colour maps): the playground draws these at the end of every run."""
    from matplotlib import colormaps

    colour_map = colormaps[cmap]
    h, w = grid.shape
    finite = np.isfinite(grid)
    if discrete:
        palette = (np.asarray(colour_map(np.linspace(0, 1, discrete)))[:, :3] * 255).round().astype(np.uint8)
        cells = palette[np.clip(np.nan_to_num(grid, nan=1.0).round().astype(int) - 1, 0, discrete - 1)]
        lo, hi = 0.5, discrete + 0.5
        ticks = list(range(1, discrete + 1)) if discrete <= 12 else \
            sorted({1, discrete, *range(0, discrete + 1, max(1, discrete // 6))} - {0})
    else:
        if limits is not None:
            lo, hi = limits
        else:
            values = grid[finite]
            lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1e-6
        t = np.clip((np.nan_to_num(grid, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
        cells = (np.asarray(colour_map(t))[..., :3] * 255).round().astype(np.uint8)
        ticks = _nice_ticks(lo, hi)
    cell = max(1, MAP_SIZE // max(h, w))
    side_h, side_w = h * cell, w * cell
    blocks = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)
    known = np.repeat(np.repeat(finite, cell, axis=0), cell, axis=1)
    picture = Image.fromarray(np.where(known[..., None], blocks, _hatched(side_h, side_w)))

    font, small = _font(13), _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_lines = title.split("\n")
    line_h, pad, bar_w, gap = 16, 8, 14, 10
    top = pad + line_h * len(title_lines) + 4
    labels = [f"{v:g}" for v in ticks]
    # fixed room for the tick labels and a two-line legend: panels of one size line up in a sheet
    tick_w = max([TICK_ROOM] + [int(probe.textlength(text, font=small)) for text in labels])
    legend = _vertical_text(bar_label.split("\n"), small, side_h)
    width = pad + side_w + gap + bar_w + 4 + tick_w + 6 + max(LEGEND_ROOM, legend.width) + pad
    out = Image.new("RGB", (max(width, int(max(probe.textlength(x, font=font) for x in title_lines)) + 2 * pad),
                            top + side_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(title_lines):
        draw.text((pad + (side_w - probe.textlength(line, font=font)) / 2, pad + i * line_h), line,
                  fill=TEXT_RGB, font=font)
    out.paste(picture, (pad, top))
    draw.rectangle((pad - 1, top - 1, pad + side_w, top + side_h), outline=TEXT_RGB)
    # the colour bar, highest value at the top
    bar_h = round(side_h * 0.9)
    bx, by = pad + side_w + gap, top + (side_h - bar_h) // 2
    rows = np.linspace(hi, lo, bar_h)
    if discrete:
        ramp = palette[np.clip(np.floor(rows - 0.5).astype(int), 0, discrete - 1)]
    else:
        ramp = (np.asarray(colour_map((rows - lo) / (hi - lo)))[:, :3] * 255).round().astype(np.uint8)
    out.paste(Image.fromarray(np.repeat(ramp[:, None], bar_w, axis=1)), (bx, by))
    draw.rectangle((bx - 1, by - 1, bx + bar_w, by + bar_h), outline=TEXT_RGB)
    for value, text in zip(ticks, labels):
        y = by + (hi - value) / (hi - lo) * bar_h
        draw.line((bx + bar_w, y, bx + bar_w + 3, y), fill=TEXT_RGB)
        _text_middle_left(draw, (bx + bar_w + 5, round(y)), text, small)
    out.paste(legend, (bx + bar_w + 4 + tick_w + 6, top + (side_h - legend.height) // 2))
    return out


def _sheet(rows: Sequence[Sequence[Image.Image]], footer: str = "") -> Image.Image:
    """Panels in a grid (each cell as wide and tall as its column's and row's largest), `footer` below."""
    widths = [max(row[c].width for row in rows) for c in range(len(rows[0]))]
    heights = [max(im.height for im in row) for row in rows]
    font = _font(11)
    foot = 18 if footer else 0
    out = Image.new("RGB", (sum(widths), sum(heights) + foot), (255, 255, 255))
    y = 0
    for row, height in zip(rows, heights):
        x = 0
        for im, width in zip(row, widths):
            out.paste(im, (x, y))
            x += width
        y += height
    if footer:
        draw = ImageDraw.Draw(out)
        _text_middle_left(draw, ((out.width - int(draw.textlength(footer, font=font))) // 2, y + foot // 2),
                          footer, font)
    return out


def reveal_order_map(steps: Sequence["DecodeStep"], index: int = 0) -> Image.Image:
    """Which step fixed each token, one coloured panel per stage with a colour bar; hatched = known."""
    orders = reveal_order(steps, index)
    stages = _stages(steps)
    fixed = fixed_order(steps)
    name = f", {FIXED_ORDER_NAMES[fixed]} order" if fixed else ""
    panels = [_map_panel(np.where(order > 0, order, np.nan).astype(np.float64), "viridis",
                         f"{STAGE_NAMES.get(stage, stage)}: reveal order{name}", "step that fixed the token",
                         discrete=stages[stage][-1].total)
              for stage, order in orders.items()]
    return _sheet([panels])


PROBABILITY_LABEL = "model's p(sampled token), 0-1"
CRITIC_LABEL = "critic's P(token right) = sigmoid(-logit), 0-1"


def noise_label(critic: bool) -> str:
    """What the keep score's noise is, in the sampler's terms."""
    return ("noise added to -critic logit\n(uniform x critic_noise_scale x anneal)" if critic else
            "noise added to log p\n(Gumbel x choice_temperature x anneal)")


def order_label(order: str) -> str:
    """What a fixed order's panel shows, for its colour bar."""
    return f"place in the {FIXED_ORDER_NAMES[order]} order\n(0 = kept first; no noise)"


def _ranked_by_order(steps: Sequence["DecodeStep"], ranking: Optional[str]) -> Optional[str]:
    """The fixed order that ranked a run: `ranking` when it names one, else (None) the steps' own."""
    return ranking if ranking in FIXED_ORDERS else fixed_order(steps) if ranking is None else None


Limits = Optional[tuple[float, float]]


@dataclass(frozen=True)
class Panel:
    """One row of the confidence figure: a quantity per stage, what its colour bar says, its scale."""

    title: str
    grids: dict[str, np.ndarray]  # per stage, (h, w); NaN = no value
    cmap: str
    label: str  # the colour bar's legend: the quantity, in the sampler's terms
    limits: Union[Limits, dict[str, Limits]]  # per stage or for all; None: symmetric about 0, spanning the values


def confidence_panels(steps: Sequence["DecodeStep"], index: int = 0, critic: Optional[bool] = None,
                      ranking: Optional[str] = None) -> list[Panel]:
    """What decided each token when it was fixed. Ranked by the model or its critic: the model's probability
    of the token; the critic's probability that it is right (when a critic ranked); the noise the sampler
    added to the keep score. Ranked by a fixed order (halton, random): the token's place in that order, which
    alone chose it (no noise), then the model's probability of the token, for information only.
    `ranking`: what ranked the run (`muse.settings.ORDERS`; None: read from the steps); `critic`: whether a
    critic ranked (None: from `ranking`, else from the steps' critic passes)."""
    fixed = _ranked_by_order(steps, ranking)
    probability = confidence_at_reveal(steps, index)
    if fixed:
        places = place_at_reveal(steps, index)
        name = FIXED_ORDER_NAMES[fixed]
        return [Panel(f"place in the {name} order\n(what ranked the tokens)", places, "viridis", order_label(fixed),
                      {stage: (0.0, float(grid.size - 1)) for stage, grid in places.items()}),
                Panel("model's p(token) when fixed\n(for information, not the ranking)", probability, "magma",
                      PROBABILITY_LABEL, (0.0, 1.0))]
    if critic is None:
        critic = ranking == "critic" if ranking is not None else any(s.critic_scores is not None for s in steps)
    panels = [Panel("model's p(token) when fixed", probability, "magma", PROBABILITY_LABEL, (0.0, 1.0))]
    if critic:
        panels.append(Panel("critic's P(right) when fixed", critic_at_reveal(steps, index), "viridis", CRITIC_LABEL,
                            (0.0, 1.0)))
    panels.append(Panel("noise in the keep score", noise_at_reveal(steps, index), "PuOr_r", noise_label(critic), None))
    return panels


def confidence_map(steps: Sequence["DecodeStep"], index: int = 0, critic: Optional[bool] = None,
                   ranking: Optional[str] = None) -> Image.Image:
    """`confidence_panels` as one figure, a column per stage; the noise panel says how many of the
    ranked choices its noise made (`noise_decided`); under a fixed order the footer says it alone chose."""
    stages = _stages(steps)
    panels = confidence_panels(steps, index, critic, ranking)
    fixed = _ranked_by_order(steps, ranking)
    critic = len(panels) == 3
    rows: list[list[Image.Image]] = [[] for _ in panels]
    for stage, rows_of_stage in stages.items():
        name = STAGE_NAMES.get(stage, stage)
        chosen = [noise_decided(s, index) for s in rows_of_stage]
        decided = sum(d for d, _ in chosen)
        ranked = sum(n for s, (_, n) in zip(rows_of_stage, chosen) if s.step < s.total)
        for r, panel in enumerate(panels):
            title, limits = f"{name}: {panel.title}", panel.limits
            if isinstance(limits, dict):
                limits = limits[stage]
            if limits is None:
                finite = panel.grids[stage][np.isfinite(panel.grids[stage])]
                m = float(np.abs(finite).max()) if finite.size else 0.0
                limits = (-m, m) if m > 0 else (-1.0, 1.0)
                title += f"\n(noise chose {decided} of {ranked} ranked tokens)"
            rows[r].append(_map_panel(panel.grids[stage], panel.cmap, title, panel.label, limits=limits))
    if fixed:
        return _sheet(rows, f"hatched: no value (a known token) · no noise: the {FIXED_ORDER_NAMES[fixed]} order "
                            "alone chose the tokens each step kept")
    return _sheet(rows, "hatched: no value (a known token" + ("; for the critic, a token fixed at the last step, "
                                                              "which keeps all the rest unranked)" if critic else ")"))


MASKED_RGB = (110, 110, 110)  # still masked after the step
EARLIER_RGB = (240, 240, 240)  # fixed at an earlier step
KNOWN_RGB = (200, 212, 230)  # not generated by this stage (inpainting's kept tokens)


def step_tokens(step: "DecodeStep", size: int = 256, index: int = 0) -> tuple[Image.Image, str]:
    """The tokens fixed at this step (outlined) coloured by what ranked them (the critic's P(right) at a
    step with a critic pass, else the model's p(token)), the rest flat (grey: still masked, near white:
    fixed earlier, blue-grey: known), with a 0-1 colour bar naming the quantity. Under a fixed order
    (halton, random), which ranks by place alone, the colours are the model's p(token) for information and
    the bar says the order ranked. Returns (picture, quantity's name). Drawn with PIL alone: cheap enough
    for every streamed step."""
    from matplotlib import colormaps

    critic = critic_probability(step, index)
    values, name = (critic, CRITIC_LABEL) if critic is not None else (model_probability(step, index), PROBABILITY_LABEL)
    fixed = _grid(step.revealed[index]).astype(bool)
    masked = _grid(step.masked[index]).astype(bool)
    region = _grid(step.region[index]).astype(bool)
    h, w = fixed.shape
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    rgb[:] = EARLIER_RGB
    rgb[~region] = KNOWN_RGB
    rgb[masked] = MASKED_RGB
    cmap = "viridis" if critic is not None else "magma"
    if values is not None:
        shown = fixed & np.isfinite(values)
        colours = np.asarray(colormaps[cmap](np.clip(values[shown], 0.0, 1.0)))[:, :3]
        rgb[shown] = (colours * 255).round().astype(np.uint8)
    grid = highlight_tokens(Image.fromarray(rgb), fixed, size)
    order = ranking(step)
    if critic is not None:
        legend = "critic's P(right)"
    elif order in FIXED_ORDERS:
        legend = f"p(token); the {FIXED_ORDER_NAMES[order]} order ranked"
    else:
        legend = "model's p(token)"
    bar = _probability_bar(grid.width, max(36, size // 6), cmap, legend)
    out = Image.new("RGB", (grid.width, grid.height + bar.height), (255, 255, 255))
    out.paste(grid, (0, 0))
    out.paste(bar, (0, grid.height))
    return out, name


@functools.lru_cache(maxsize=16)
def _probability_bar(width: int, height: int, cmap: str, text: str) -> Image.Image:
    """step_tokens' 0-1 colour bar and its legend `text` (the same for every step: drawn once)."""
    from matplotlib import colormaps

    pad = 6
    out = Image.new("RGB", (width, height), (255, 255, 255))
    ramp = (np.asarray(colormaps[cmap](np.linspace(0, 1, width - 2 * pad)))[:, :3] * 255).astype(np.uint8)
    out.paste(Image.fromarray(np.repeat(ramp[None], height // 3, axis=0)), (pad, 3))
    draw, font = ImageDraw.Draw(out), _font(max(9, height // 3))
    y = 3 + height // 3 + (height - height // 3) // 2
    _text_middle_left(draw, (pad, y), "0", font)
    _text_middle_left(draw, (out.width - pad - draw.textlength("1", font=font), y), "1", font)
    _text_middle_left(draw, ((out.width - draw.textlength(text, font=font)) // 2, y), text, font)
    return out


def step_summary(step: "DecodeStep", index: int = 0) -> str:
    """One line on what decided this step: the tokens fixed, the range of what ranked them, and how many
    of them the sampler's noise chose; under a fixed order, their places in it (the order alone chose
    them) and the model's p(token) for information."""
    fixed = _grid(step.revealed[index]).astype(bool)
    n = int(fixed.sum())
    line = f"{step.label}: {n} fixed now"
    if n == 0:
        return line
    place = order_place(step, index)
    if place is not None:
        name = FIXED_ORDER_NAMES[ranking(step)]
        line += f", the next in the {name} order"
        if np.isfinite(place[fixed]).any():
            line += f" (places {np.nanmin(place[fixed]):.0f}-{np.nanmax(place[fixed]):.0f})"
        p = model_probability(step, index)
        if p is not None and np.isfinite(p[fixed]).any():
            v = p[fixed]
            line += f"; model p {np.nanmin(v):.2f}-{np.nanmax(v):.2f} (mean {np.nanmean(v):.2f}), not the ranking"
        return line + ("; the last step fixes every remaining token" if step.step == step.total else
                       "; no noise: the order alone chose them")
    critic = critic_probability(step, index)
    values, what = (critic, "critic P(right)") if critic is not None else (model_probability(step, index), "model p")
    if values is not None and np.isfinite(values[fixed]).any():
        v = values[fixed]
        line += f", {what} {np.nanmin(v):.2f}-{np.nanmax(v):.2f} (mean {np.nanmean(v):.2f})"
    decided, _ = noise_decided(step, index)
    if step.step == step.total:
        line += "; the last step fixes every remaining token, unranked"
    elif step.keep_noise is not None:
        line += f"; the noise chose {decided} of them"
    return line


SAME_RGB = (245, 245, 245)  # both runs fixed the same token
PENDING_RGB = (90, 90, 90)  # not fixed in both runs yet


def difference_grids(a: Sequence["DecodeStep"], b: Sequence["DecodeStep"],
                     index: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per stage both runs reached: (differs, when). `differs` (h, w) bool: both runs fixed the token and
    chose different ones; `when` (h, w) float: the fraction of its run (0-1] at which the later of the two
    fixed it (NaN while either has not), i.e. the moment both had chosen."""
    sa, sb = _stages(a), _stages(b)
    out = {}
    for stage in [s for s in sa if s in sb]:
        la, lb = sa[stage][-1], sb[stage][-1]
        ids_a, ids_b = _grid(la.ids[index]), _grid(lb.ids[index])
        fixed_a = ~_grid(la.masked[index]).astype(bool)
        fixed_b = ~_grid(lb.masked[index]).astype(bool)
        frac_a = reveal_order(sa[stage], index)[stage] / la.total
        frac_b = reveal_order(sb[stage], index)[stage] / lb.total
        both = fixed_a & fixed_b
        when = np.where(both, np.maximum(frac_a, frac_b), np.nan)
        out[stage] = (both & (ids_a != ids_b), when)
    return out


def difference_map(a: Sequence["DecodeStep"], b: Sequence["DecodeStep"], size: int = 192,
                   index: int = 0) -> Image.Image:
    """Where two runs chose different tokens, and when: a panel per stage both reached; a differing token
    is coloured by the fraction of the run at which the second of the two fixed it (colour bar 0-100%),
    a token both chose alike is near white, one not fixed in both yet dark grey. PIL only: drawn every step."""
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    panels = []
    font = _font(max(10, size // 14))
    for stage, (differs, when) in difference_grids(a, b, index).items():
        both = np.isfinite(when)
        rgb = np.empty(differs.shape + (3,), dtype=np.uint8)
        rgb[:] = PENDING_RGB
        rgb[both] = SAME_RGB
        rgb[differs] = (np.asarray(cmap(when[differs]))[:, :3] * 255).round().astype(np.uint8)
        grid = upscale(Image.fromarray(rgb), size)
        n, total = int(differs.sum()), int(both.sum())
        panels.append(caption(grid, f"{STAGE_NAMES.get(stage, stage)}: {n} of {total} differ",
                              height=max(18, size // 10)))
    if not panels:
        raise ValueError("the two runs share no stage yet")
    gap, bar_h, pad = 8, max(34, size // 6), 6
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    sheet = Image.new("RGB", (width, panels[0].height + bar_h), (255, 255, 255))
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 0))
        x += panel.width + gap
    ramp = (np.asarray(cmap(np.linspace(0, 1, width - 2 * pad)))[:, :3] * 255).astype(np.uint8)
    top = panels[0].height + 2
    sheet.paste(Image.fromarray(np.repeat(ramp[None], bar_h // 3, axis=0)), (pad, top))
    draw = ImageDraw.Draw(sheet)
    y = top + bar_h // 3 + (bar_h - bar_h // 3) // 2
    _text_middle_left(draw, (pad, y), "0%", font)
    _text_middle_left(draw, (width - pad - int(draw.textlength("100%", font=font)), y), "100%", font)
    text = "differs: when both had fixed it"
    _text_middle_left(draw, ((width - int(draw.textlength(text, font=font))) // 2, y), text, font)
    return sheet


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: only the schedule plot is drawn with matplotlib

    return Figure(figsize=(width, height), dpi=100, layout="constrained", facecolor="white")


def _to_image(fig) -> Image.Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # straight from the renderer's buffer: no PNG written and read back
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


def schedule_plot(schedule: ScheduleLike, timesteps: int,
                  token_counts: Union[Sequence[int], dict[str, int]] = (64, 256),
                  title: Optional[str] = None) -> Image.Image:
    """Masked tokens after each step for `schedule` and `timesteps`, one line per stage's token count.
    A named schedule's plot is drawn once per setting (the playground shows it before and after every run)."""
    counts = tuple(token_counts.items()) if isinstance(token_counts, dict) else tuple(token_counts)
    if isinstance(schedule, str):
        return _schedule_plot(schedule, timesteps, counts, title).copy()
    return _draw_schedule_plot(schedule, timesteps, counts, title)


@functools.lru_cache(maxsize=64)
def _schedule_plot(schedule: str, timesteps: int, token_counts: tuple, title: Optional[str]) -> Image.Image:
    return _draw_schedule_plot(schedule, timesteps, token_counts, title)


def _draw_schedule_plot(schedule: ScheduleLike, timesteps: int, token_counts: tuple,
                        title: Optional[str]) -> Image.Image:
    items = [(f"{STAGE_NAMES.get(k[0], k[0])} ({k[1]} tokens)", k[1]) if isinstance(k, tuple) else (f"{k} tokens", k)
             for k in token_counts]
    fig = _figure(4.6, 3.0)
    ax = fig.subplots()
    name = schedule if isinstance(schedule, str) else getattr(schedule, "__name__", "custom")
    for label, n in items:
        counts = [n] + mask_counts(schedule, timesteps, n)
        ax.plot(range(timesteps + 1), counts, marker="o", markersize=3 if timesteps > 24 else 4, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("tokens still masked")
    ax.set_xlim(0, max(timesteps, 1))
    ax.set_ylim(bottom=0)
    if timesteps <= 16:
        ax.set_xticks(range(timesteps + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{name} schedule, {timesteps} steps", fontsize=10)
    return _to_image(fig)
