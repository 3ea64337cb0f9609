"""The one kernel loader: ``kernels/*.cu`` compiled by NVRTC (through CuPy) with every instantiation the
launchers use (abi.KERNEL_NAMES), once per process and device, the cubins kept in a disk cache.

The kernels live in ``kernels/`` (shipped as ``netdsl/kernels`` in the wheel) and share the number
formats of ``kernels/formats.cuh``, the CUDA twin of :mod:`netdsl.dtypes`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdsl import settings
from netdsl.atomic import FileError, write_atomically
from netdsl.backends.cupy import abi
from netdsl.backends.cupy.device import current, import_cupy
from netdsl.resources import resource_dir


def kernels_dir() -> Path:
    """``netdsl/kernels`` in an installed wheel, else ``<repo>/kernels`` in a source checkout."""
    return resource_dir("kernels")


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)


def kernel_source(file: str) -> str:
    """The text of ``kernels/<file>`` with its local headers inlined, each once.

    Inlining (rather than ``-I``) makes the key of the on-disk kernel cache (the source's hash) cover
    the headers too.
    """
    directory = kernels_dir()
    seen: set[str] = set()

    def expand(name: str) -> str:
        text = _PRAGMA_ONCE.sub("", (directory / name).read_text())

        def include(match: re.Match[str]) -> str:
            header = match.group(1)
            if header in seen:
                return ""
            seen.add(header)
            return expand(header)

        return _INCLUDE.sub(include, text)

    return expand(file)


@dataclass(frozen=True)
class Module:
    """A loaded cubin and its kernels' mangled names."""

    module: Any  # cupy.cuda.function.Module
    mangled: dict[str, str]  # name expression -> lowered (mangled) name

    def function(self, name: str) -> Any:
        return self.module.get_function(self.mangled[name])


#: kernels per NVRTC program: a file's instantiations compile in parts, which precompile() builds in
#: parallel processes (quantize.cu alone holds 144)
PART_SIZE = 24


@functools.cache
def parts(file: str) -> tuple[tuple[str, ...], ...]:
    """The instantiations of kernels/<file>, in programs of PART_SIZE."""
    names = abi.KERNEL_NAMES[file]
    return tuple(names[i:i + PART_SIZE] for i in range(0, len(names), PART_SIZE))


@functools.cache
def _part_of(file: str) -> dict[str, int]:
    return {name: index for index, part in enumerate(parts(file)) for name in part}


def _cache_paths(file: str, part: int, on_device: int) -> tuple[Path, Path]:
    """Where the cubin of kernels/<file>, part ``part``, for ``on_device`` and its name map are kept: keyed
    by source, options, instantiations, NVRTC version and architecture."""
    cupy = import_cupy()
    from cupy.cuda import nvrtc

    arch = cupy.cuda.Device(on_device).compute_capability
    fingerprint = [kernel_source(file), *abi.compile_options(), *parts(file)[part], arch, repr(nvrtc.getVersion()),
                   cupy.__version__]
    key = hashlib.sha256("\0".join(fingerprint).encode()).hexdigest()[:32]
    cubin_path = settings.kernel_cache() / f"{file}-{part}-{key}.cubin"
    return cubin_path, cubin_path.with_suffix(".json")


def compile_cubin(file: str, names: tuple[str, ...], options: tuple[str, ...]) -> tuple[bytes, dict[str, str]]:
    """kernels/<file> compiled by NVRTC with ``options`` for the current device: the cubin and the mangled
    name of each instantiation in ``names`` (benchmarks/sweep_dq.py builds tuning variants through it)."""
    from cupy.cuda import compiler

    image, mangled = compiler.compile_using_nvrtc(kernel_source(file), options, name_expressions=names, filename=file)
    return (image if isinstance(image, bytes) else image.encode()), dict(mangled)


def load(image: bytes, mangled: dict[str, str]) -> Module:
    """A cubin loaded on the current device."""
    from cupy.cuda import function

    loaded = function.Module()
    loaded.load(image)
    return Module(loaded, mangled)


@functools.cache
def module(file: str, part: int, on_device: int) -> Module:
    """kernels/<file> compiled by NVRTC for ``on_device`` with the names of part ``part`` of
    KERNEL_NAMES[file], once per process and device, the cubin kept on disk (_cache_paths).

    Not cupy.RawModule: CuPy appends ``-ftz=true`` to every RawModule/RawKernel compilation, which
    flushes float32 subnormals (e8m0's 2^-127, fp8 and fp4 decoding, tiny scales) and breaks the
    numerics. cupy.cuda.compiler.compile_using_nvrtc passes our options as they are.
    """
    from cupy.cuda import driver

    with import_cupy().cuda.Device(on_device):
        cubin_path, names_path = _cache_paths(file, part, on_device)
        try:
            return load(cubin_path.read_bytes(), json.loads(names_path.read_text()))
        except (OSError, ValueError, driver.CUDADriverError):
            image, mangled = compile_cubin(file, parts(file)[part], abi.compile_options())
            _write_atomically(cubin_path, image)
            _write_atomically(names_path, json.dumps(mangled).encode())
            return load(image, mangled)


def precompile(device: int | None = None) -> int:
    """Build every kernel part missing from the disk cache, in parallel processes (one per part);
    returns how many were built. Runs before a test suite or a benchmark so that the first launch of a
    kernel does not pay for compiling its whole file."""
    import subprocess
    import sys

    on_device = current() if device is None else device
    missing = [(file, part) for file in abi.KERNEL_NAMES for part in range(len(parts(file)))
               if not _cached(file, part, on_device)]
    code = ("import sys; from netdsl.backends.cupy import loader; "
            "loader.module(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[3]),
                                                                     os.environ.get("PYTHONPATH", "")])))
    jobs = [subprocess.Popen([sys.executable, "-c", code, file, str(part), str(on_device)], env=env)
            for file, part in missing]
    for job in jobs:
        job.wait()
    return len(missing)


def load_cached(on_device: int) -> int:
    """Load every kernel part already in the disk cache for ``on_device`` (none is compiled here); returns
    how many. :func:`device.make_ready` runs it (in a thread) beside ``netdsl apply``'s planning, so the first launches
    find their modules loaded."""
    count = 0
    for file in abi.KERNEL_NAMES:
        for part in range(len(parts(file))):
            if _cached(file, part, on_device):
                module(file, part, on_device)
                count += 1
    return count


def _cached(file: str, part: int, on_device: int) -> bool:
    """Whether the disk cache holds the cubin of kernels/<file>, part ``part``, for ``on_device``."""
    return all(path.is_file() for path in _cache_paths(file, part, on_device))


def _write_atomically(path: Path, data: bytes) -> None:
    """Best effort, through netdsl's one atomic writer: a cache that cannot be written only costs a
    recompilation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda stream: stream.write(data))
    except (OSError, FileError):
        pass


_functions: dict[tuple[str, str, int], Any] = {}


def kernel(file: str, name: str, on_device: int | None = None) -> Any:
    """The kernel function ``name`` of kernels/<file> on ``on_device`` (default: the current one), cached."""
    on_device = current() if on_device is None else on_device
    key = (file, name, on_device)
    function = _functions.get(key)
    if function is None:
        function = _functions[key] = module(file, _part_of(file)[name], on_device).function(name)
    return function
