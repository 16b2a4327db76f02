"""Evaluation of a pipeline on the emoji data: tokenizer, super-res and inpainting fidelity, critics,
prompt adherence on four rows of prompts, the settings sweep, and picture sheets.

  python -m muse.eval all --data data/emoji [--weights weights]      (every part below but the sweep)
  python -m muse.eval adherence | inpaint | superres | tokenizer | critic | guidance | samples | sweep

Adherence is model-independent: generate from each prompt at seed 0, then retrieve the nearest dataset
images in 16x16 box-filtered RGB; a hit is the right emoji (either set) at rank 1 or within the 5
nearest (`retrieval`). The prompts are four rows (`prompts`): base-form names, skin-tone names, CLDR
short names and held-out paraphrases. Random dataset images stand in for generations to give the
floor. Super-res fidelity hands the super-res stage a perfect 32 px input and compares its 64 px output
with the original; inpainting fills a centred square of a quarter of each image from its name, against
a blur fill of the same hole (`fidelity`). The critic's ranking asks of each stage's critic what the
sampler asks of it, which sampled tokens are wrong, beside the generator's own confidence (`critic`).
The guidance part measures how far the caption moves the base stage's prediction, which bounds what
guidance can change (`guidance`). The sweep moves one setting at a time and measures adherence and
diversity (`__main__.SWEEP`).
"""

from .critic import critic_ranking, ranking_auc
from .fidelity import blur_fill, centre_square, inpaint_fidelity, superres_fidelity, tokenizer_metrics
from .guidance import guidance_gap
from .prompts import ROWS, cldr_prompts, name_prompts, paraphrase_prompts, prompt_rows, skin_tone_prompts
from .retrieval import adherence, diversity, features, generate, random_floor, retrieve, topk_accuracy
from .sheet import SAMPLE_PROMPTS, SAMPLE_SEEDS, sample_sheet, settings_sheet

__all__ = ["critic_ranking", "ranking_auc", "guidance_gap", "blur_fill", "centre_square", "inpaint_fidelity",
           "superres_fidelity", "tokenizer_metrics", "ROWS", "cldr_prompts", "name_prompts", "paraphrase_prompts",
           "prompt_rows", "skin_tone_prompts", "adherence", "diversity", "features", "generate", "random_floor",
           "retrieve", "topk_accuracy", "SAMPLE_PROMPTS", "SAMPLE_SEEDS", "sample_sheet", "settings_sheet"]
