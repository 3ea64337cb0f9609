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
from netdsl.ir import Graph, TensorType, attr_items, format_attr


class Network:
    """A parsed and checked network: ``graph`` is the checked graph (every tensor typed, every layer
    resolved); ``warnings`` holds the checker's located warnings."""

    #: a Network is checked for fixed shapes; a :class:`Recipe` is bound to them first
    recipe = False

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
                host = {name: external.host_tensor_to_numpy(array)
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


class Recipe:
    """A network whose input is a weight (docs/checkpoints.md): its dimensions may be names
    (``bfloat16[N, K]``), and it is checked for each concrete shape it meets (:meth:`bind`, cached: each
    distinct shape once), with the input as a build-time weight, so that scales computed from it are
    constant-rooted. ``run`` binds it to the shapes of the arrays it is given."""

    recipe = True

    def __init__(self, graph: Graph, warnings: list[Diagnostic]):
        self.source = graph
        self.graph = graph  # as written, not checked: what ``netdsl convert`` writes
        self.warnings = warnings
        self._bound: dict[tuple[tuple[int, ...], ...], Network] = {}

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def inputs(self) -> dict[str, Any]:
        """Input name -> NamedType (the declared type, dimensions that are names included)."""
        return {v.name: v.declared_type() for v in self.source.inputs}

    def describe(self) -> str:
        """The recipe as declared; ``bind(...).describe()`` gives the checked graph for one shape."""
        lines = [f"recipe {self.name} (checked again for each shape it meets)"]
        lines += [f"  input  {v.name} : {v.declared_type()}" for v in self.source.inputs]
        lines += [f"  const  {v.name} : {v.type}" for v in self.source.constants]
        for node in self.source.nodes:
            attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in attr_items(node.attrs))
            arguments = ", ".join(node.inputs + ([attrs] if attrs else []))
            lines.append(f"  layer  {', '.join(node.outputs)} = {node.op.name}({arguments})")
        lines.append(f"  output {', '.join(self.source.outputs)}")
        return "\n".join(lines) + "\n"

    def bind(self, shapes: dict[str, tuple[int, ...]]) -> Network:
        """This recipe checked for concrete input ``shapes`` (cached per shape). ValueError for a shape that
        doesn't fit the declared one; ModelError (located in the recipe, each message saying the bound
        dimensions) where the layers reject it."""
        inputs = self.source.inputs
        missing = [v for v in inputs if v.name not in shapes]
        if missing:
            raise ValueError(f"missing input '{missing[0].name}' ({missing[0].declared_type()})")
        key = tuple(tuple(int(d) for d in shapes[v.name]) for v in inputs)
        bound = self._bound.get(key)
        if bound is not None:
            return bound
        bindings: dict[str, int] = {}
        types = {}
        for value, shape in zip(inputs, key):
            declared = value.declared_type()
            problem = declared.match(shape, bindings)
            if problem:
                raise ValueError(f"input '{value.name}': {problem}")
            types[value.name] = TensorType(declared.dtype, shape)
        diagnostics = Diagnostics()
        checked = check(self.source.bind(types), diagnostics)
        if checked is None:
            where = ", ".join(f"{name}={extent}" for name, extent in bindings.items()) or \
                ", ".join(f"{name} {list(shape)}" for name, shape in zip((v.name for v in inputs), key))
            raise ModelError([Diagnostic(d.loc, d.severity, f"{d.message} (with {where})")
                              for d in diagnostics.sorted()])
        bound = self._bound[key] = Network(checked, diagnostics.sorted())
        return bound

    def run(self, inputs: dict[str, Any], backend: str = "auto",
            memory_limit: int | str | None = "auto") -> dict[str, Any]:
        """:meth:`Network.run` of the recipe bound to the inputs' shapes."""
        return self.bind({name: tuple(np.shape(array)) for name, array in inputs.items()}).run(
            inputs, backend, memory_limit)


def loads(text: str, format: str = "net", base_dir: str | Path | None = None,
          filename: str | None = None, trust_paths: bool = False, recipe: bool = False) -> Network | Recipe:
    """Parse and check a model given as text (``format`` "net" or "yaml"); ``load()`` paths resolve
    against ``base_dir`` (default: the current directory) and may only name files there or below, unless
    ``trust_paths`` (docs/reliability.md). A model whose input dimensions are names, or any model with
    ``recipe=True``, is a :class:`Recipe` (its inputs are weights; it is checked when bound to concrete
    shapes, here already where it names no dimension). Raises ModelError."""
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
    if recipe or graph.named_dims:
        diagnostics.raise_if_errors()
        result = Recipe(graph, diagnostics.sorted())
        if not graph.named_dims:
            result.bind({v.name: v.declared_type().dims for v in graph.inputs})  # type: ignore[misc]
        return result
    checked = check(graph, diagnostics)  # the layers that lowered (a failed one's outputs are untyped: skipped)
    diagnostics.raise_if_errors()
    assert checked is not None  # check returns None only with an error
    return Network(checked, diagnostics.sorted())


def load(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
         trust_paths: bool = False, recipe: bool = False) -> Network | Recipe:
    """Parse and check a ``.net``, ``.yaml``/``.yml`` or ``.onnx`` file (an ONNX model's quantization part,
    docs/onnx.md; ``input_shapes`` gives the shapes of inputs ONNX leaves symbolic). The files its
    ``load()`` reads must lie in its folder or below unless ``trust_paths`` (docs/reliability.md); ``recipe``:
    as :func:`loads`. Raises
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
    return loads(text, format=format, base_dir=path.parent, filename=str(path), trust_paths=trust_paths,
                 recipe=recipe)


def _load_onnx(path: Path, input_shapes: dict[str, tuple[int, ...]]) -> Network:
    from netdsl.interop.onnx import import_model

    diagnostics = Diagnostics()
    graph = import_model(path, diagnostics, input_shapes)
    checked = check(graph, diagnostics) if graph is not None and not diagnostics.errors else None
    diagnostics.raise_if_errors()
    assert checked is not None  # None only with an error
    return Network(checked, diagnostics.sorted())
