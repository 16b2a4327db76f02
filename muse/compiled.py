"""Opt-in `torch.compile` of the transformers' forward, falling back to eager when it cannot compile.

Meant for a GPU, where a small model's steps are bound by kernel launches that compiled graphs fuse
(not measured on a GPU yet). On the CPU it was measured not to pay
(`benchmarks/README.md`): matmuls dominate, and compiling the shipped pipeline took 70 s. So it is
off by default everywhere.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from torch import nn

log = logging.getLogger(__name__)


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failed compilation raises (a missing C++ compiler, an unsupported op, ...)."""
    try:
        from torch._dynamo.exc import TorchDynamoException
    except ImportError:  # a torch without dynamo: nothing of ours raises these
        return ()
    return (TorchDynamoException,)


class CompiledForward:
    """A module's forward through `torch.compile`, run eagerly from the first compilation failure on.

    Errors of the model itself (a wrong shape, say) are raised by the eager forward too, so only
    compiler errors switch to eager: a user's bad input still gets its own message.
    """

    def __init__(self, module: nn.Module, backend: Any = "inductor", mode: Optional[str] = None):
        self.eager: Callable = module.forward
        # dynamic: the sampler asks for a different number of positions at every step.
        self.compiled: Callable = torch.compile(self.eager, backend=backend, mode=mode, dynamic=True)
        self.error: Optional[BaseException] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.error is None:
            try:
                return self.compiled(*args, **kwargs)
            except _compile_errors() as err:
                self.error = err
                # dynamo wraps the backend's own error
                cause = getattr(err, "inner_exception", None) or err.__cause__ or err
                log.warning("torch.compile failed, running eagerly: %s: %s", type(cause).__name__,
                            (str(cause).strip().splitlines() or [""])[0])
        return self.eager(*args, **kwargs)


# Dynamo's cache limit is per code object, and every transformer of every pipeline in the process
# shares `MaskedTransformer.forward`, each with a few variants (guidance or not, positions or not).
# Past the limit (8 by default) dynamo runs eagerly without saying so: a second compiled pipeline did.
RECOMPILE_LIMIT = 64


def compile_forward(module: nn.Module, backend: Any = "inductor", mode: Optional[str] = None) -> nn.Module:
    """Route `module`'s calls through a compiled forward (in place; weights and state dict unchanged)."""
    if isinstance(module.__dict__.get("forward"), CompiledForward):
        return module  # already compiled
    import torch._dynamo  # here, not at import: it adds over a second to `import muse`

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed between torch versions
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
            break
    module.forward = CompiledForward(module, backend=backend, mode=mode)
    return module


def is_compiled(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("forward"), CompiledForward)
