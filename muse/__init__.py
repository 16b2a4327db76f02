"""muse: MUSE / MaskGIT text-to-image, with a sampler that shows every decoding step."""

from .config import TransformerConfig, VQConfig
from .hub import WeightsError
from .load import describe, load_pipeline
from .pipeline import DecodeStep, GenerationSettings, MusePipeline, PipelineConfig
from .sampling import DecodeState, SamplerSettings, decode
from .text import TextEncoder
from .token_pipeline import TokenPipeline
from .transformer import MaskedTransformer, MaskGitTransformer, TokenCritic
from .vq import VQModel

__version__ = "0.1.0"

__all__ = ["load_pipeline", "describe", "MusePipeline", "TokenPipeline", "PipelineConfig", "GenerationSettings",
           "DecodeStep", "decode", "DecodeState", "SamplerSettings", "VQModel", "VQConfig", "MaskedTransformer",
           "MaskGitTransformer", "TokenCritic", "TransformerConfig", "TextEncoder", "WeightsError"]
