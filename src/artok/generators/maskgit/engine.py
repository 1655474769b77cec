"""A fast sampler for MaskGIT generators: each iteration (bidirectional pass, guidance, draw, confidence,
re-masking) is one function on static shapes, compiled with ``torch.compile`` and on CUDA replayed
as a CUDA graph (``reduce-overhead``), with its randomness drawn beforehand from the caller's
generator and no host round trip inside the loop (the masked counts are read once at the end).

On CPU (eager, the default there) it returns *the same tokens* as `sample_maskgit` for the same seed:
the same functions on the same shapes, the noise drawn in the same order and sizes (tested).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from artok.generators.maskgit.sample import gumbel_noise, maskgit_step
from artok.sampling.configs import MaskGITSamplerConfig
from artok.sampling.engine_support import engine_rows, prepare_engine
from artok.sampling.logits import exponential_noise
from artok.sampling.mask_schedules import masked_counts
from artok.sampling.schedules import cfg_scale_at
from artok.tokens import Tokens


class MaskGITEngine:
    """Fast sampler for one `MaskGITGenerator` (categorical head).

    Args:
        generator: a `MaskGITGenerator`.
        batch_size: the most images sampled at once (CFG doubles the rows internally).
        dtype, compile, cuda_graphs: as for `artok.generators.raster.engine.SamplingEngine` (``"auto"``:
            bf16, compiled, CUDA graphs on CUDA; the generator's dtype, eager elsewhere).
        guidance: reserve rows for classifier-free guidance.
    """

    def __init__(self, generator, batch_size: int, *, dtype: torch.dtype | str | None = None,
                 compile: bool | str = "auto", cuda_graphs: bool | str = "auto", guidance: bool = True) -> None:
        self.model, self.device, self.dtype, self.compiled, self.cuda_graphs = prepare_engine(
            generator, batch_size, dtype, compile, cuda_graphs, "artok.sampling.sample_maskgit")
        self.batch_size, self.guidance = batch_size, guidance
        if self.compiled:
            mode = "reduce-overhead" if self.cuda_graphs else None
            self._step = torch.compile(maskgit_step, mode=mode, fullgraph=True, dynamic=False)
        else:
            self._step = maskgit_step

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, config: MaskGITSamplerConfig, rng: torch.Generator | None = None) -> Tokens:
        """Sample ``len(labels)`` token grids; for the same seed, the tokens (and ``extras``) of
        `sample_maskgit` (exactly on CPU; up to bf16/kernel differences on CUDA)."""
        model = self.model
        batch, guided = labels.shape[0], config.uses_cfg
        rows = engine_rows(self, labels, guided)
        spec, device = model.spec, labels.device
        seq_len, vocab = spec.seq_len, spec.vocab_size
        counts = masked_counts(seq_len, config.iterations, config.mask_schedule)
        ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
        mask = torch.ones(batch, seq_len, dtype=torch.bool, device=device)
        sampling = (guided, config.temperature, config.top_k, config.top_p)
        observed = []
        context = torch._dynamo.config.patch(recompile_limit=64) if self.compiled else nullcontext()
        with context:
            for step, count in enumerate(counts):
                # Drawn as `sample_maskgit` draws them: the categorical race, then the Gumbel noise.
                race = exponential_noise((batch, seq_len, vocab), rng, device)
                gumbel = gumbel_noise((batch, seq_len), rng, device)
                scale = cfg_scale_at(step, config.iterations, config.cfg_scale, config.cfg_schedule)
                noise_scale = config.choice_temperature * (1.0 - (step + 1) / config.iterations)
                ids, mask = self._step(model, ids, mask, rows, race, gumbel, scale, noise_scale, count, *sampling)
                if self.cuda_graphs:
                    ids, mask = ids.clone(), mask.clone()
                observed.append(mask.sum(dim=1).max())
        observed = torch.stack(observed).tolist()  # the one host sync
        return Tokens(spec, ids=ids, extras={"masked_per_step": observed, "scheduled_masked": counts})
