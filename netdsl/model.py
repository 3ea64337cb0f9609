"""Loading a model (parse, lower, check) and running it: the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netdsl import arrays
from netdsl.check import check
from netdsl.diagnostics import Diagnostic, Diagnostics, Loc, ModelError
from netdsl.frontend.lower import lower
from netdsl.frontend.text import parse_text
from netdsl.ir import Graph, TensorType, print_graph


class Network:
    """A parsed and checked network. ``warnings`` holds the checker's located warnings.

    A recipe (a network whose input dimensions are names, or one loaded with ``recipe=True``) takes its
    inputs as build-time weights and is checked for each concrete shape it meets (:meth:`bind`, cached per
    shape); ``run`` binds it to the shapes of the arrays it is given (docs/checkpoints.md).
    """

    def __init__(self, graph: Graph, warnings: list[Diagnostic], recipe: bool = False):
        self.graph = graph
        self.warnings = warnings
        self.recipe = recipe
        self._bound: dict[tuple[tuple[int, ...], ...], Network] = {}

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def inputs(self) -> dict[str, Any]:
        """Input name -> TensorType (a NamedType where the dimensions are names)."""
        return {v.name: v.declared or v.type for v in self.graph.inputs}

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> Network:
        """This recipe checked for concrete input ``shapes`` (cached: each distinct shape is checked once).
        Raises ValueError for a shape that doesn't fit the declared one, ModelError (located in the recipe,
        each message saying the bound dimensions) where the layers reject it."""
        if not self.recipe:
            raise ValueError(f"'{self.name}' is not a recipe: its inputs have fixed shapes")
        key = tuple(tuple(int(d) for d in shapes[v.name]) if v.name in shapes else () for v in self.graph.inputs)
        bound = self._bound.get(key)
        if bound is not None:
            return bound
        bindings: dict[str, int] = {}
        types = {}
        for value, shape in zip(self.graph.inputs, key):
            if value.name not in shapes:
                raise ValueError(f"missing input '{value.name}' ({value.declared or value.type})")
            declared = value.declared_type()
            problem = declared.match(shape, bindings)
            if problem:
                raise ValueError(f"input '{value.name}': {problem}")
            types[value.name] = TensorType(declared.dtype, shape)
        graph = self.graph.bind(types, weights=True)
        diagnostics = Diagnostics()
        check(graph, diagnostics)
        if diagnostics.errors:
            where = ", ".join(f"{name}={extent}" for name, extent in bindings.items()) or \
                ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
            raise ModelError([Diagnostic(d.loc, d.severity, f"{d.message} (with {where})")
                              for d in diagnostics.sorted()])
        bound = self._bound[key] = Network(graph, diagnostics.sorted())
        return bound

    @property
    def outputs(self) -> dict[str, Any]:
        """Output name -> TensorType."""
        return {name: self.graph.values[name].type for name in self.graph.outputs}

    def describe(self) -> str:
        """The checked graph: every tensor's type and shape, each layer's granularity and mode."""
        return print_graph(self.graph)

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

        if self.recipe:
            shapes = {name: tuple(np.shape(array)) for name, array in inputs.items()}
            return self.bind(shapes).run(inputs, backend, memory_limit)
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

        if backend == "numpy":
            raise ValueError("device arrays run on the cupy backend (backend='auto' or 'cupy'); for the numpy "
                             "backend give NumPy arrays")
        self._check_names(inputs)
        executor = get_backend("cupy")
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
          filename: str | None = None, recipe: bool = False) -> Network:
    """Parse and check a model given as text (``format`` "net" or "yaml"); ``load()`` paths resolve
    against ``base_dir`` (default: the current directory). A model whose input dimensions are names, or any
    model with ``recipe=True``, is a recipe: its inputs are weights and it is checked when bound to concrete
    shapes (:meth:`Network.bind`; a recipe without named dimensions is bound here). Raises ModelError."""
    if format not in ("net", "yaml"):
        raise ValueError(f"format must be 'net' or 'yaml', got {format!r}")
    file = filename or f"<{format}>"
    diagnostics = Diagnostics()
    if format == "net":
        module = parse_text(text, file, diagnostics)
    else:
        from netdsl.frontend.yaml_form import parse_yaml

        module = parse_yaml(text, file, diagnostics)
    if module is None:
        diagnostics.raise_if_errors()
    assert module is not None
    graph = lower(module, Path(base_dir) if base_dir is not None else Path.cwd(), diagnostics,
                  name=Path(filename).stem if filename else "network")
    recipe = recipe or graph.named_dims
    if not diagnostics.errors and not recipe:
        check(graph, diagnostics)
    diagnostics.raise_if_errors()
    network = Network(graph, diagnostics.sorted(), recipe)
    if recipe and not graph.named_dims:
        network.bind({v.name: v.type.shape for v in graph.inputs if v.type is not None})
    return network


def load(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None, recipe: bool = False) -> Network:
    """Parse and check a ``.net``, ``.yaml``/``.yml`` or ``.onnx`` file (an ONNX model's quantization part,
    docs/onnx.md; ``input_shapes`` gives the shapes of inputs ONNX leaves symbolic; ``recipe``: as
    :func:`loads`). Raises ModelError (and OSError when the file can't be read; UsageError when ONNX support
    is not installed)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, input_shapes or {})
    if input_shapes:
        raise ValueError("input_shapes is for ONNX models (their symbolic dimensions)")
    format = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "net"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ModelError([Diagnostic(Loc(str(path), 1, 1), "error",
                                     f"the file is not UTF-8 text ({error.reason} at byte {error.start})")]) from None
    return loads(text, format=format, base_dir=path.parent, filename=str(path), recipe=recipe)


def _load_onnx(path: Path, input_shapes: dict[str, tuple[int, ...]]) -> Network:
    from netdsl.interop.onnx import import_model

    diagnostics = Diagnostics()
    graph = import_model(path, diagnostics, input_shapes)
    if graph is not None and not diagnostics.errors:
        check(graph, diagnostics)
    diagnostics.raise_if_errors()
    assert graph is not None
    return Network(graph, diagnostics.sorted())
