"""The multi-step loop of a per-token continuous head, run as one unit and, on CUDA, replayed as
one CUDA graph.

MAR-style samplers call their diffusion / flow head ``steps`` times per iteration (MAR-B: 100
respaced DDPM steps x 64 iterations = 6,400 head calls per batch). Each call is a small MLP, a few
dozen kernels, so on a GPU the loop is bound by kernel launches, not by arithmetic. `HeadSampler`
draws all the noise of an iteration up front, then runs every step of the loop on static buffers;
on CUDA the whole loop for a given row count is captured once into a `torch.cuda.CUDAGraph`
(rows padded up to a multiple of ``row_bucket``, so one graph serves every iteration with that
many rows) and each later iteration is one graph replay: 3 copies in, one replay, one copy out.

What it samples is exactly what `artok.sampling.continuous.sample_head` samples:
- on CPU (and with ``cuda_graphs=False``) it consumes the random generator in the same order and
  sizes (one draw per noise slice, then the final noise) and returns the same tokens;
- under capture the noise of all steps is one draw of the same shape, so the stream differs but
  the law does not; the computation is the same functions (`artok.sampling.continuous`) on the
  same shapes, with padded rows that never mix with real ones (the head is row-wise).
"""

from __future__ import annotations

import math
import weakref

import torch

from artok.sampling.continuous import _final_mean, _resolve_method, ddpm_table

GRAPH_MODES = (True, False, "auto")
_SAMPLERS: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


class HeadSampler:
    """``z (N or 2N rows under guidance), cfg_scale, rng -> N x D`` tokens from a continuous head.

    Args:
        head: a `DiffusionHead` or `FlowHead`.
        steps, method, temperature, diffusion_scale, clip_x0, final_noise: as in
            `artok.sampling.continuous.sample_head`.
        guided: ``z`` is ``[conditional; unconditional]``.
        cuda_graphs: capture the loop on CUDA (``"auto"``: on for a CUDA head; ignored on CPU).
        row_bucket: captured row counts are padded up to a multiple of this.
    """

    def __init__(self, head: torch.nn.Module, *, steps: int, method: str = "auto", temperature: float = 1.0,
                 diffusion_scale: float = 1.0, guided: bool = False, clip_x0: float | None = None,
                 final_noise: float = 0.0, cuda_graphs: bool | str = "auto", row_bucket: int = 64) -> None:
        if cuda_graphs not in GRAPH_MODES:
            raise ValueError(f"cuda_graphs must be True, False or 'auto', got {cuda_graphs!r}")
        if row_bucket < 1:
            raise ValueError(f"row_bucket must be >= 1, got {row_bucket}")
        # A weak reference: the per-head cache of `for_config` is keyed weakly by the head, and a
        # strong one here would keep every head ever sampled alive.
        self._head = weakref.ref(head)
        self.method = _resolve_method(head, method)
        self.steps, self.temperature, self.diffusion_scale = steps, temperature, diffusion_scale
        self.guided, self.clip_x0, self.final_noise = guided, clip_x0, final_noise
        self.row_bucket = row_bucket
        device = next(head.parameters()).device
        self.device = device
        self.cuda_graphs = device.type == "cuda" and cuda_graphs in (True, "auto")
        # Host-side constants, computed once: nothing inside the loop reads the device back.
        self.table = ddpm_table(head.alphas_cumprod, steps) if self.method == "ddpm" else None
        self.draws = 1 if self.method == "euler" else steps  # noise slices the loop reads
        self._graphs: dict[int, _CapturedLoop] = {}
        self._pool = None

    @property
    def head(self) -> torch.nn.Module:
        head = self._head()
        if head is None:
            raise RuntimeError("the head of this HeadSampler no longer exists")
        return head

    @classmethod
    def for_config(cls, head: torch.nn.Module, config, guided: bool, **options) -> "HeadSampler":
        """From a sampler config with the head fields (`MARSamplerConfig`'s ``steps``, ``method``,
        ``temperature``, ``diffusion_scale``, ``final_noise``).

        Samplers are kept per head and settings, so captured graphs are reused by later sampling
        calls; the key includes the address of every weight, so a head whose weights were moved or
        converted (which a graph would not see) gets a fresh sampler."""
        settings = dict(steps=config.steps, method=config.method, temperature=config.temperature,
                        diffusion_scale=config.diffusion_scale, guided=guided,
                        final_noise=getattr(config, "final_noise", 0.0), **options)
        weights = tuple((p.data_ptr(), p.dtype) for p in head.parameters())
        key = (tuple(sorted(settings.items(), key=lambda item: item[0])), weights)
        per_head = _SAMPLERS.setdefault(head, {})
        if key not in per_head:
            per_head.clear()  # one live set of graphs per head
            per_head[key] = cls(head, **settings)
        return per_head[key]

    def _loop(self, z: torch.Tensor, noise: torch.Tensor, cfg_scale) -> torch.Tensor:
        return _final_mean(self.head, z, self.method, steps=self.steps, temperature=self.temperature,
                           diffusion_scale=self.diffusion_scale, guided=self.guided, cfg_scale=cfg_scale,
                           clip_x0=self.clip_x0, noise=noise, table=self.table)

    def draw_noise(self, rows: int, rng: torch.Generator | None) -> torch.Tensor:
        """The loop's noise, ``draws x rows x D``: slice by slice as the plain sampler draws it, or
        in one call under graph capture (same law, fewer launches)."""
        shape = (rows, self.head.token_dim)
        if self.cuda_graphs:
            return torch.randn((self.draws, *shape), generator=rng, device=self.device)
        return torch.stack([torch.randn(shape, generator=rng, device=self.device) for _ in range(self.draws)])

    @torch.no_grad()
    def final_mean(self, z: torch.Tensor, noise: torch.Tensor, cfg_scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """`artok.sampling.continuous.final_mean` with pre-drawn ``noise`` (at least ``draws`` slices;
        the extra ones are unused): a graph replay on CUDA. Continuous speculative decoding runs its
        draft and target heads on shared noise this way."""
        noise = noise[: self.draws]
        if self.cuda_graphs:
            return self._replay(z, noise, cfg_scale)
        return self._loop(z, noise, cfg_scale)

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, cfg_scale: float | torch.Tensor = 1.0,
                 rng: torch.Generator | None = None) -> torch.Tensor:
        rows = z.shape[0] // 2 if self.guided else z.shape[0]
        noise = self.draw_noise(rows, rng)
        if self.cuda_graphs:
            mean = self._replay(z, noise, cfg_scale)
        else:
            mean = self._loop(z, noise, cfg_scale)
        if self.final_noise > 0:
            mean = mean + self.final_noise * torch.randn(mean.shape, generator=rng, device=mean.device, dtype=mean.dtype)
        return mean

    # -- CUDA graphs ---------------------------------------------------------------------------
    def _replay(self, z: torch.Tensor, noise: torch.Tensor, cfg_scale) -> torch.Tensor:
        rows = noise.shape[1]
        padded = self.row_bucket * math.ceil(rows / self.row_bucket)
        graph = self._graphs.get(padded)
        if graph is None:
            graph = _CapturedLoop(self, padded, z.shape[-1], z.dtype, self._pool)
            self._pool = graph.graph.pool()  # later captures share the memory pool
            self._graphs[padded] = graph
        return graph(z, noise, cfg_scale, rows)


class _CapturedLoop:
    """One head loop for ``padded`` rows on static buffers, refilled before each replay. With
    ``capture=False`` the loop runs eagerly on the same buffers (how the CPU tests check the
    padding and the buffer layout that the CUDA graph relies on)."""

    def __init__(self, sampler: HeadSampler, padded: int, cond_dim: int, dtype: torch.dtype, pool,
                 capture: bool = True) -> None:
        device = sampler.device
        halves = 2 if sampler.guided else 1
        self.sampler, self.padded, self.guided = sampler, padded, sampler.guided
        self.z = torch.zeros(halves * padded, cond_dim, dtype=dtype, device=device)
        self.noise = torch.zeros(sampler.draws, padded, sampler.head.token_dim, device=device)
        self.scale = torch.ones(padded, device=device)
        self.graph = None
        if capture:
            self._capture(pool)

    def _capture(self, pool) -> None:
        sampler, device = self.sampler, self.sampler.device
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):  # warm-up off the capture (allocator, cuBLAS workspaces)
            for _ in range(2):
                sampler._loop(self.z, self.noise, self.scale)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.out = sampler._loop(self.z, self.noise, self.scale)

    def __call__(self, z: torch.Tensor, noise: torch.Tensor, cfg_scale, rows: int) -> torch.Tensor:
        padded = self.padded
        if self.guided:
            self.z[:rows].copy_(z[:rows])
            self.z[padded : padded + rows].copy_(z[rows:])
        else:
            self.z[:rows].copy_(z)
        self.noise[:, :rows].copy_(noise)
        if isinstance(cfg_scale, torch.Tensor):
            self.scale[:rows].copy_(cfg_scale)
        else:
            self.scale.fill_(float(cfg_scale))
        if self.graph is None:
            self.out = self.sampler._loop(self.z, self.noise, self.scale)
        else:
            self.graph.replay()
        return self.out[:rows].clone()
