"""Loading a model (parse, lower, check) and running it: the Python API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import arrays
from netdsl.check import CheckedGraph, check
from netdsl.diagnostics import Diagnostic, Diagnostics, Loc, ModelError
from netdsl.frontend.lower import lower
from netdsl.frontend.text import parse_text


class Network:
    """A parsed and checked network: ``graph`` is the checked graph (every tensor typed, every layer
    resolved); ``warnings`` holds the checker's located warnings."""

    def __init__(self, graph: CheckedGraph, warnings: list[Diagnostic]):
        self.graph = graph
        self.warnings = warnings

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def inputs(self) -> dict[str, Any]:
        """Input name -> TensorType."""
        return {v.name: v.type for v in self.graph.inputs}

    @property
    def outputs(self) -> dict[str, Any]:
        """Output name -> TensorType."""
        return {name: self.graph.values[name].type for name in self.graph.outputs}

    def marked(self, names: Iterable[str]) -> Network:
        """The same network with more outputs (``--mark``): each name in ``names`` is a layer output, or
        ``all`` for every layer output. The network's own outputs come first, then the marked ones in graph
        order. Marking changes no value: every executor computes the same bits for every tensor whether it
        is an output or not (docs/cli.md, "Seeing inside"). ValueError for a name that isn't a layer output."""
        wanted = set()
        layer_outputs = [name for node in self.graph.nodes for name in node.outputs]
        for name in names:
            if name == "all":
                wanted.update(layer_outputs)
            elif name in layer_outputs:
                wanted.add(name)
            elif name in self.graph.values:
                kind = "a network input" if self.graph.values[name].kind == "input" else "a constant"
                raise ValueError(f"cannot mark '{name}': it is {kind}, not a layer output")
            else:
                raise ValueError(f"cannot mark '{name}': no such tensor; the layer outputs are "
                                 f"{', '.join(layer_outputs) or 'none'}")
        added = [name for name in layer_outputs if name in wanted and name not in self.graph.outputs]
        graph = replace(self.graph, outputs=self.graph.outputs + tuple(added),
                        output_locs=self.graph.output_locs + tuple(self.graph.values[name].loc for name in added))
        return Network(graph, self.warnings)

    def describe(self) -> str:
        """The checked graph as ``netdsl check -v`` prints it: every tensor's type and shape, constants in
        brief, each layer output's provenance, each layer's granularity and mode."""
        from netdsl.view import describe

        return describe(self.graph)

    def _check_names(self, inputs: dict[str, Any]) -> None:
        """ValueError for an unknown or a missing input."""
        expected = self.inputs
        unknown = sorted(set(inputs) - set(expected))
        if unknown:
            raise ValueError(f"unknown input '{unknown[0]}': the network's inputs are {', '.join(expected) or 'none'}")
        for name, tensor_type in expected.items():
            if name not in inputs:
                raise ValueError(f"missing input '{name}' ({tensor_type})")

    def prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Every input as its type's storage array; ValueError for a missing, unknown or ill-fitting one."""
        self._check_names(inputs)
        prepared = {}
        for name, tensor_type in self.inputs.items():
            try:
                prepared[name] = arrays.coerce(inputs[name], tensor_type)
            except ValueError as error:
                raise ValueError(f"input '{name}' {error}") from None
        return prepared

    def run(self, inputs: dict[str, Any], backend: str = "auto",
            memory_limit: int | str | None = "auto") -> dict[str, Any]:
        """Execute; returns output name -> array. NumPy inputs give NumPy outputs (ml_dtypes types for
        low-precision values); CuPy arrays, PyTorch tensors and other DLPack / ``__cuda_array_interface__``
        arrays on a GPU run there and give outputs of the same kind on the same device, on the caller's
        current stream, with no copy through the host (docs/gpu.md, "Device arrays").

        ``memory_limit``: a run whose estimated peak is over it raises ``MemoryError`` (a
        ``netdsl.memory.MemoryLimitError``) before anything is allocated; "auto" (the default) is the
        memory available now, None or "none" no limit, else bytes or a size such as "8G"
        (docs/reliability.md, "Memory")."""
        from netdsl import memory
        from netdsl.backends import get_backend

        if not all(isinstance(array, np.ndarray) for array in inputs.values()):
            from netdsl.backends.cupy import external

            kind = external.kind_of(inputs.values())
            if kind == external.TORCH_HOST:
                self._check_names(inputs)
                host = {name: external.host_tensor_to_numpy(array, self.inputs[name])
                        if external.kind_of([array]) == external.TORCH_HOST else array
                        for name, array in inputs.items()}
                results = self.run(host, backend, memory_limit)
                return {name: external.numpy_to_host_tensor(array, self.outputs[name].dtype)
                        for name, array in results.items()}
            if kind != external.NUMPY:
                return self._run_on_device(inputs, kind, backend, memory_limit)
        prepared = self.prepare_inputs(inputs)
        executor = get_backend(backend)
        memory.check(self.graph, executor.name, memory_limit, inputs_held=True)
        return executor.run(self.graph, prepared)

    def _run_on_device(self, inputs: dict[str, Any], kind: str, backend: str,
                       memory_limit: int | str | None) -> dict[str, Any]:
        """Device arrays in, device arrays out, through the GPU backend's device-tensor entry point."""
        import contextlib

        from netdsl import memory
        from netdsl.backends import get_backend
        from netdsl.backends.cupy import external
        from netdsl.backends.cupy.device import import_cupy
        from netdsl.backends.cupy.executor import CupyBackend

        if backend == "numpy":
            raise ValueError("device arrays run on the cupy backend (backend='auto' or 'cupy'); for the numpy "
                             "backend give NumPy arrays")
        self._check_names(inputs)
        executor = get_backend("cupy")
        assert isinstance(executor, CupyBackend)
        ordinal, stream = external.current_stream(kind, inputs.values())
        cupy = import_cupy()
        with contextlib.ExitStack() as scope:
            if ordinal is not None:
                scope.enter_context(cupy.cuda.Device(ordinal))
            if stream is not None:
                scope.enter_context(stream)
            memory.check(self.graph, executor.name, memory_limit, inputs_held=True, host=False)
            on_device = {name: external.to_device_tensor(name, inputs[name], tensor_type)
                         for name, tensor_type in self.inputs.items()}
            results = executor.run_device(self.graph, on_device)
            return {name: external.from_device_tensor(results[name], kind) for name in self.graph.outputs}


def loads(text: str, format: str = "net", base_dir: str | Path | None = None,
          filename: str | None = None, trust_paths: bool = False) -> Network:
    """Parse and check a model given as text (``format`` "net" or "yaml"); ``load()`` paths resolve
    against ``base_dir`` (default: the current directory) and may only name files there or below, unless
    ``trust_paths`` (docs/reliability.md). Raises ModelError."""
    if format not in ("net", "yaml"):
        raise ValueError(f"format must be 'net' or 'yaml', got {format!r}")
    file = filename or f"<{format}>"
    diagnostics = Diagnostics(sources={file: (text, format)})
    if format == "net":
        module = parse_text(text, file, diagnostics)
    else:
        from netdsl.frontend.yaml_form import parse_yaml

        module = parse_yaml(text, file, diagnostics)
    if module is None:
        diagnostics.raise_if_errors()
    assert module is not None
    graph = lower(module, Path(base_dir) if base_dir is not None else Path.cwd(), diagnostics,
                  name=Path(filename).stem if filename else "network", trust_paths=trust_paths)
    checked = check(graph, diagnostics)  # the layers that lowered (a failed one's outputs are untyped: skipped)
    diagnostics.raise_if_errors()
    assert checked is not None  # check returns None only with an error
    return Network(checked, diagnostics.sorted())


def load(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
         trust_paths: bool = False) -> Network:
    """Parse and check a ``.net``, ``.yaml``/``.yml`` or ``.onnx`` file (an ONNX model's quantization part,
    docs/onnx.md; ``input_shapes`` gives the shapes of inputs ONNX leaves symbolic). The files its
    ``load()`` reads must lie in its folder or below unless ``trust_paths`` (docs/reliability.md). Raises
    ModelError (and OSError when the file can't be read, netdsl.files.FileError when it is not a regular file;
    UsageError when ONNX support is not installed)."""
    from netdsl import files

    path = Path(path)
    files.check_regular(path)  # a FIFO or a device would block or never end
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, input_shapes or {})
    if input_shapes:
        raise ValueError("input_shapes is for ONNX models (their symbolic dimensions)")
    format = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "net"
    try:
        with files.open_regular(path) as (stream, _):
            text = stream.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ModelError([Diagnostic(Loc(str(path), 1, 1), "error",
                                     f"the file is not UTF-8 text ({error.reason} at byte {error.start})")]) from None
    return loads(text, format=format, base_dir=path.parent, filename=str(path), trust_paths=trust_paths)


def _load_onnx(path: Path, input_shapes: dict[str, tuple[int, ...]]) -> Network:
    from netdsl.interop.onnx import import_model

    diagnostics = Diagnostics()
    graph = import_model(path, diagnostics, input_shapes)
    checked = check(graph, diagnostics) if graph is not None and not diagnostics.errors else None
    diagnostics.raise_if_errors()
    assert checked is not None  # None only with an error
    return Network(checked, diagnostics.sorted())
