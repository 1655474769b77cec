"""Peak memory of one call (CUDA allocator peak; CPU resident memory sampled in a thread)."""

from __future__ import annotations

import os
import platform

import torch

# -- memory ----------------------------------------------------------------------------------------
#: How often the CPU memory sampler reads the process's resident memory.
MEMORY_SAMPLE_SECONDS = 0.001


_STATM = "/proc/self/statm"


def _anonymous_resident_bytes() -> int | None:
    """Resident memory of this process that is not file-backed (``/proc/self/statm``: resident
    minus shared pages), or None where /proc is missing. File-backed pages are left out because a
    first call faults in kernel code pages that are no allocation of the call."""
    try:
        with open(_STATM) as file:
            fields = file.read().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * _page_size()


def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def _peak_resident_bytes() -> int:
    """The process's lifetime peak RSS (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


def _release_free_heap() -> None:
    """Hand freed heap pages back to the system (glibc ``malloc_trim``) before a measurement.

    Without it the resident memory at the start already holds what earlier calls freed but malloc
    kept, the measured call reuses that memory, and its peak reads ~0 (measured: tiny preset, batch
    64, 3.0 MB with the trim, 0.02 MB without). No-op where the C library has no ``malloc_trim``."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_method(device: torch.device | str) -> str:
    """What `PeakMemory` measures on ``device`` (written into the results as ``memory_method``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "cuda: torch.cuda.max_memory_allocated above memory_allocated at the start (reset_peak_memory_stats)"
    if _anonymous_resident_bytes() is not None:
        return (f"cpu: anonymous resident memory (/proc/self/statm) sampled every {MEMORY_SAMPLE_SECONDS * 1e3:g} ms "
                "in a background thread, peak minus the value at the start (heap trimmed first); peaks shorter than "
                "a sample can be missed")
    return "cpu: growth of the process's peak RSS (getrusage); a lower bound, 0 when the process peaked earlier"


class PeakMemory:
    """Context manager: the most memory the code inside needed beyond what was allocated when it
    started, in bytes (``peak_bytes``) and MB (``peak_mb``, 2^20 bytes). One measure for every
    benchmark in artok (`run_benchmark`, the tokenizer benchmark), described by `memory_method`.

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``, minus the allocation at the
    start. CPU on Linux: a background thread samples the process's anonymous resident memory every
    `MEMORY_SAMPLE_SECONDS` (torch releases the GIL inside ops, so it samples during them); the
    peak minus the value at the start, after trimming the heap. The process's RSS alone (what was
    reported before) is the same for every batch size; torch.profiler's memory events only give
    the net allocation of each op, a peak has to be rebuilt from private records, and starting it
    costs ~1 s per call; a dispatch-mode tracker of tensor outputs misses the buffers ops use
    internally (tiny preset, batch 512: 20.1 MB against 24.5 MB resident). Elsewhere: the growth
    of the lifetime peak RSS (``getrusage``), a lower bound.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.method = memory_method(self.device)
        self.peak_bytes = 0
        self._start = 0
        self._peak = 0
        self._stop = None
        self._thread = None

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif _anonymous_resident_bytes() is not None:
            _release_free_heap()
            self._start = self._peak = _anonymous_resident_bytes()
            self._start_sampler()
        else:
            self._start = _peak_resident_bytes()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _anonymous_resident_bytes() or 0)
        else:
            peak = _peak_resident_bytes()
        self.peak_bytes = max(0, peak - self._start)

    def _start_sampler(self) -> None:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="artok-peak-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_SECONDS):
            resident = _anonymous_resident_bytes()
            if resident is not None and resident > self._peak:
                self._peak = resident
