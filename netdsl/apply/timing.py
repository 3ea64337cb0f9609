"""Where ``netdsl apply``'s time goes (``--timing``, docs/scale.md): the seconds each phase kept a thread busy,
summed over the threads of this process, and the bytes it moved.

Several shards are written at once (each a thread, with a thread reading ahead), so the phases overlap and
their sum exceeds the wall time; a phase whose sum approaches ``wall x threads`` is the one that limits the
run, and the waits (for the read ahead, for the GPU) say which side the others waited on. On Dask only the
client's own phases are counted (the workers' are theirs). Each phase's first start and last end (seconds
since the command started) show when it ran: the shard threads start once the plan is made, and their first
launches wait for the GPU to be ready.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

#: the phases in the order a group passes through them (the report's rows)
PHASES = {
    "plan": "import apply's modules, open the checkpoint, plan and check",
    "gpu start": "CuPy, the CUDA context and the kernels made ready (a thread, beside plan)",
    "read": "read the weights (to the device with cupy)",
    "wait read": "wait for the read ahead",
    "wait gpu": "wait for the GPU (one group at a time)",
    "run": "bind and run the recipe (cupy: its launches)",
    "download": "outputs to the host (cupy: waits for the GPU)",
    "convert": "outputs to their stored dtypes",
    "write": "write the output files",
    "writeback": "hand the written bytes to the disk (posix_fadvise; threads of their own)",
    "hash": "SHA-256 of the output (the manifest's)",
    "wait hash": "wait for the SHA-256 to catch up with the writes",
    "fsync": "fsync each finished file (in the commit threads, while the shard threads go on)",
    "finish": "index, configs, other files",
    "shard": "the shard threads' whole time (the phases from wait read to wait hash are part of it)",
}


class _Phase:
    __slots__ = ("timing", "name", "nbytes", "start")

    def __init__(self, timing: Timing, name: str, nbytes: int):
        self.timing, self.name, self.nbytes = timing, name, nbytes

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.timing.add(self.name, time.perf_counter() - self.start, self.nbytes, self.start)


class _Off:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()


class Timing:
    """Busy seconds and bytes per phase; counts only while ``enabled``."""

    def __init__(self) -> None:
        self.enabled = False
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self.spans: dict[str, tuple[float, float]] = {}  # phase -> (first start, last end), perf_counter seconds
        self.started = time.perf_counter()

    def phase(self, name: str, nbytes: int = 0) -> _Phase | _Off:
        """``with TIMING.phase("read", n):`` counts the block's seconds (and ``n`` bytes) under ``name``."""
        return _Phase(self, name, nbytes) if self.enabled else _OFF

    def add(self, name: str, seconds: float, nbytes: int = 0, start: float | None = None) -> None:
        """``seconds`` (and ``nbytes``) more under ``name``, for a stretch that began at ``start`` (perf_counter;
        None: it ends now)."""
        if not self.enabled:
            return
        end = time.perf_counter() if start is None else start + seconds
        start = end - seconds
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.bytes[name] = self.bytes.get(name, 0) + nbytes
            first, last = self.spans.get(name, (start, end))
            self.spans[name] = (min(first, start), max(last, end))

    def reset(self, enabled: bool) -> None:
        """Start counting afresh (or stop, ``enabled`` False); the spans are measured from now."""
        with self._lock:
            self.enabled = enabled
            self.seconds.clear()
            self.bytes.clear()
            self.spans.clear()
            self.started = time.perf_counter()

    def report(self, wall: float, size: int) -> str:
        """The table ``--timing`` prints: the wall time and rate for a checkpoint of ``size`` bytes, then each
        phase's busy seconds, the GB it moved at GB/s a thread, and when it first started and last ended
        (seconds since :meth:`reset`)."""
        lines = [f"timing: {size / 1e9:.2f} GB checkpoint in {wall:.2f} s ({size / wall / 1e9:.2f} GB/s); busy seconds "
                 f"per phase, summed over threads, and when each phase first started and last ended:",
                 f"  {'phase':<10} {'seconds':>8} {'GB':>7} {'GB/s':>6} {'from':>6} {'to':>6}  what"]
        for name, what in PHASES.items():
            if name not in self.seconds:
                continue
            seconds, nbytes = self.seconds[name], self.bytes.get(name, 0)
            moved = f"{nbytes / 1e9:7.2f} {nbytes / seconds / 1e9:6.2f}" if nbytes and seconds > 0 else f"{'':7} {'':6}"
            first, last = (t - self.started for t in self.spans[name])
            lines.append(f"  {name:<10} {seconds:8.2f} {moved} {first:6.2f} {last:6.2f}  {what}")
        return "\n".join(lines)


#: this process's timing (``netdsl apply --timing`` turns it on)
TIMING = Timing()
