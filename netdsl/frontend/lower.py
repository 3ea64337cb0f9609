"""The one lowering both front ends share: AST -> graph IR.

It resolves types and names, evaluates literal arithmetic (float64, then rounded to nearest even to
the declared type), loads ``load()`` files, and builds the layer nodes with their attributes. Every
problem becomes a located diagnostic; lowering carries on so that one run reports them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netdsl import arrays, dtypes, files
from netdsl.diagnostics import Diagnostics, Loc, did_you_mean
from netdsl.frontend import ast
from netdsl.frontend.text import LITERAL_LIMIT_MESSAGE, MAX_LITERAL_ELEMENTS, SPECIAL_NUMBERS, expand_block
from netdsl.ir import MAX_VOLUME, Graph, LoadRef, NamedType, Node, TensorType, Value
from netdsl.ops import OPS, OpDef

#: TensorRT's Dims::MAX_DIMS: a tensor has at most 8 dimensions
MAX_RANK = 8
#: TensorRT's layer attributes are at most 64-bit
MAX_INT64 = 2**63 - 1
#: names "did you mean" may compare in one model: a model with thousands of unknown names among thousands
#: of tensors would otherwise take quadratic time
SUGGESTION_BUDGET = 200_000


class _LoweringError(Exception):
    def __init__(self, loc: Loc, message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


def lower(module: ast.Module, base_dir: Path, diagnostics: Diagnostics, name: str | None = None,
          trust_paths: bool = False) -> Graph:
    """Build the graph of ``module``; ``name`` is the default network name (the file stem). ``load()``
    reads files in ``base_dir`` and below only, unless ``trust_paths`` (docs/reliability.md)."""
    return _Lowering(module, base_dir, diagnostics, trust_paths).run(name or Path(module.file).stem)


class _Lowering:
    def __init__(self, module: ast.Module, base_dir: Path, diagnostics: Diagnostics, trust_paths: bool = False):
        self.module = module
        self.base_dir = base_dir
        self.trust_paths = trust_paths
        self.diagnostics = diagnostics
        self.used: set[str] = set()
        self.suggestion_budget = SUGGESTION_BUDGET
        #: the current literal's elements whose finite value overflows float64 (1e999), by index: where, as written
        self.overflowed: dict[int, tuple[Loc, str]] = {}
        self.overflow_event: tuple[Loc, str] | None = None

    def run(self, default_name: str) -> Graph:
        statements = self.module.statements
        graph = Graph(default_name, self.module.file)
        self.graph = graph
        outputs: list[ast.Name] = []
        aliases: list[ast.AliasStmt] = []
        for index, statement in enumerate(statements):
            try:
                if isinstance(statement, ast.NetworkStmt):
                    if index != 0:
                        raise _LoweringError(statement.loc, "'network' must be the first statement")
                    graph.name = statement.name.name
                elif isinstance(statement, ast.InputStmt):
                    self.input(statement)
                elif isinstance(statement, ast.ConstStmt):
                    self.constant(statement)
                elif isinstance(statement, ast.LayerStmt):
                    self.layer(statement)
                elif isinstance(statement, ast.OutputStmt):
                    outputs.extend(statement.names)
                elif isinstance(statement, ast.AliasStmt):
                    aliases.append(statement)
            except (_LoweringError, RecursionError) as error:
                if isinstance(error, RecursionError):  # e.g. a chain of 100000 unary minus signs
                    error = _LoweringError(statement.loc, "this statement is nested too deeply")
                self.diagnostics.error(error.loc, error.message)
                if isinstance(statement, (ast.InputStmt, ast.ConstStmt)) and statement.name.name not in graph.values:
                    # defined but untyped, so that its uses report nothing more
                    kind = "input" if isinstance(statement, ast.InputStmt) else "const"
                    graph.values[statement.name.name] = Value(statement.name.name, kind, statement.name.loc)
                    self.used.add(statement.name.name)
        self.outputs(outputs)
        for value in graph.inputs:
            if value.name not in self.used and value.name not in graph.outputs:
                self.diagnostics.warning(value.loc, f"input '{value.name}' is not used")
        self.rename(aliases)
        return graph

    def rename(self, aliases: list[ast.AliasStmt]) -> None:
        """Give every aliased tensor its original name (after every use is resolved by the written one)."""
        graph, renames = self.graph, {}
        taken = {}
        for alias in aliases:
            written, original = alias.name.name, alias.original.value
            if written not in graph.values:
                self.diagnostics.error(alias.name.loc, f"alias of an unknown tensor '{written}'"
                                       + did_you_mean(written, graph.values))
            elif written in renames:
                self.diagnostics.error(alias.name.loc, f"'{written}' is already aliased")
            elif original in taken or (original in graph.values and original not in renames):
                self.diagnostics.error(alias.original.loc, f"'{original}' already names a tensor")
            elif not original:
                self.diagnostics.error(alias.original.loc, "an alias needs a non-empty name")
            else:
                renames[written] = original
                taken[original] = written
        if not renames:
            return
        graph.values = {renames.get(name, name): value for name, value in graph.values.items()}
        for name, value in graph.values.items():
            value.name = name
        for node in graph.nodes:
            node.inputs = [renames.get(name, name) for name in node.inputs]
            node.outputs = [renames.get(name, name) for name in node.outputs]
        graph.outputs = [renames.get(name, name) for name in graph.outputs]

    # --- names -----------------------------------------------------------------------------------

    def define(self, value: Value) -> None:
        previous = self.graph.values.get(value.name)
        if previous is not None:
            previous.type = None  # which one a use means is unclear: its uses report nothing more
            raise _LoweringError(value.loc, f"'{value.name}' is already defined at line {previous.loc.line}")
        self.graph.values[value.name] = value

    def lookup(self, name: ast.Name) -> Value:
        value = self.graph.values.get(name.name)
        if value is None:
            hint = ""
            if self.suggestion_budget >= len(self.graph.values):  # each suggestion compares every name
                self.suggestion_budget -= len(self.graph.values)
                hint = did_you_mean(name.name, self.graph.values)
            raise _LoweringError(name.loc, f"unknown tensor '{name.name}'" + hint)
        return value

    def outputs(self, names: list[ast.Name]) -> None:
        if not names:
            end = self.module.statements[-1].loc if self.module.statements else Loc(self.module.file, 1, 1)
            self.diagnostics.error(end, "the network has no outputs: add 'output NAME'")
        for name in names:
            if name.name in self.graph.outputs:
                self.diagnostics.error(name.loc, f"'{name.name}' is already an output")
                continue
            try:
                self.lookup(name)
            except _LoweringError as error:
                self.diagnostics.error(error.loc, error.message)
                continue
            self.graph.outputs.append(name.name)
            self.graph.output_locs.append(name.loc)

    # --- types and constants ---------------------------------------------------------------------

    def input(self, statement: ast.InputStmt) -> None:
        """An input; its dimensions may be names (``bfloat16[N, K]``), bound for each concrete shape the
        network meets (docs/checkpoints.md)."""
        ref = statement.type
        names = {i: d.name for i, d in enumerate(ref.dims)
                 if isinstance(d, ast.Name) and d.name.lower() not in SPECIAL_NUMBERS}
        value = Value(statement.name.name, "input", statement.name.loc)
        if names:
            concrete = [ast.Number(1, "1", d.loc) if i in names else d for i, d in enumerate(ref.dims)]
            probe = self.tensor_type(ast.TypeRef(ref.dtype, concrete, ref.loc))  # checks the rest of the type
            value.declared = NamedType(probe.dtype, tuple(names.get(i, d) for i, d in enumerate(probe.shape)))
        else:
            value.type = self.tensor_type(ref)
        self.define(value)

    def tensor_type(self, ref: ast.TypeRef) -> TensorType:
        try:
            dtype = dtypes.lookup(ref.dtype.name)
        except KeyError:
            raise _LoweringError(ref.dtype.loc, f"unknown type '{ref.dtype.name}'" + did_you_mean(
                ref.dtype.name, list(dtypes.DTYPES) + list(dtypes.ALIASES))) from None
        if len(ref.dims) > MAX_RANK:
            raise _LoweringError(ref.loc, f"a tensor has at most {MAX_RANK} dimensions (TensorRT's limit); "
                                          f"this type has {len(ref.dims)}")
        shape = []
        for dim in ref.dims:
            if isinstance(dim, ast.Name) and dim.name.lower() not in SPECIAL_NUMBERS:
                raise _LoweringError(dim.loc, f"a dimension must be a non-negative integer; only an input's "
                                              f"dimensions may be names (here '{dim.name}')")
            if isinstance(dim, ast.Number) and _integer_text(dim.text) and not dim.value <= MAX_VOLUME:
                raise _LoweringError(dim.loc, f"dimension {_abbreviated(dim.text)} is over TensorRT's limit of 2^31-1")
            if not (isinstance(dim, ast.Number) and isinstance(dim.value, int)):
                raise _LoweringError(dim.loc, "a dimension must be a non-negative integer")
            shape.append(dim.value)
        tensor_type = TensorType(dtype, tuple(shape))
        # the nonzero extents too: a zero-element [0, 10**20] still can't be an array
        extents = math.prod(d for d in shape if d)
        if extents > MAX_VOLUME:
            size = f"{tensor_type.volume} elements" if tensor_type.volume else \
                f"nonzero extents multiplying to {extents}"
            raise _LoweringError(ref.loc, f"{tensor_type} has {size}, over TensorRT's limit of 2^31-1")
        return tensor_type

    def constant(self, statement: ast.ConstStmt) -> None:
        tensor_type = self.tensor_type(statement.type)
        value = Value(statement.name.name, "const", statement.name.loc, type=tensor_type)
        expr = statement.value
        if isinstance(expr, ast.Call):
            value.source, given, value.data = self.load(expr, tensor_type)
            self.overflow_warning(value, given, lambda index: expr.loc, {})
        else:
            self.overflowed = {}
            value.data, given, locate = self.literal(expr, tensor_type)
            self.overflow_warning(value, given, locate, self.overflowed)
        self.define(value)

    def overflow_warning(self, value: Value, given: np.ndarray, locate: Callable[[int], Loc],
                         overflowed: dict[int, tuple[Loc, str]]) -> None:
        """A located warning for a data constant whose finite values round to +-Inf in its type (IEEE's
        Inf is kept: docs/special-values.md, "Constants"); ``overflowed``: the literal's elements that
        already overflowed float64 (``1e999``), by index. The first such value goes on ``value.overflow``."""
        dtype = value.type.dtype if value.type else None
        if dtype is None or not dtype.is_float or value.data is None:
            return
        finite = np.isfinite(given.reshape(-1))
        finite[list(overflowed)] = True
        lost = np.isinf(dtypes.decode(value.data, dtype)).reshape(-1) & finite
        count = int(lost.sum())
        if not count:
            return
        index = int(np.argmax(lost))
        if index in overflowed:
            loc, text = overflowed[index]
        else:
            number = str(given.reshape(-1)[index])  # NumPy's shortest text for the file's dtype
            loc, text = locate(index), number.removesuffix(".0")
        value.overflow = text
        more = f" ({count} values overflow)" if count > 1 else ""
        self.diagnostics.warning(loc, f"{_abbreviated(text)} overflows {dtype.name} and becomes Inf in constant "
                                      f"'{value.name}'{more}")

    def literal(self, expr: ast.Expr, tensor_type: TensorType) -> tuple[np.ndarray, np.ndarray, Callable[[int], Loc]]:
        """The storage array of a literal, its float64 values as written (flat), and where element i is."""
        if tensor_type.volume > MAX_LITERAL_ELEMENTS:
            raise _LoweringError(expr.loc, LITERAL_LIMIT_MESSAGE)
        parts: list[np.ndarray | float] = []
        sources: list[ast.Expr] = []  # the number, or the NumberBlock, each part came from
        self.flatten(expr, tensor_type.shape, parts, sources)
        sizes = np.cumsum([part.size if isinstance(part, np.ndarray) else 1 for part in parts])
        given = np.concatenate([np.atleast_1d(np.asarray(part, np.float64)) for part in parts]) if parts else \
            np.zeros(0, np.float64)

        def locate(index: int) -> Loc:
            part = int(np.searchsorted(sizes, index, side="right"))
            source = sources[part]
            if not isinstance(source, ast.NumberBlock):
                return source.loc
            return _leaves(expand_block(source))[index - (int(sizes[part - 1]) if part else 0)].loc

        values = given.reshape(tensor_type.shape)
        dtype = tensor_type.dtype
        if dtype.is_float:
            with np.errstate(over="ignore"):  # out-of-range literals become +-Inf, as a cast does
                return values.astype(dtype.storage), given, locate
        exact = dtypes.representable(values, dtype).reshape(-1)
        if not exact.all():
            index = int(np.argmin(exact))
            raise _LoweringError(locate(index), f"{float(given[index])!r} is not exactly representable in "
                                                f"{dtype.name}")
        return dtypes.encode(values.astype(np.float32), dtype), given, locate

    def flatten(self, expr: ast.Expr, shape: tuple[int, ...], parts: list[np.ndarray | float],
                sources: list[ast.Expr], start: int = 0) -> int:
        """Append the literal's values to ``parts`` (``start``: how many come before); how many it adds."""
        if isinstance(expr, ast.NumberBlock):
            if expr.shape == shape:
                parts.append(expr.values)
                sources.append(expr)
                infinite = np.flatnonzero(np.isinf(expr.values))
                if infinite.size:  # where a finite number overflowed float64 (1e999), as number() notes
                    leaves = _leaves(expand_block(expr))
                    for index in infinite.tolist():
                        self.overflow_event = None
                        self.number(leaves[index])
                        if self.overflow_event is not None:
                            self.overflowed[start + index] = self.overflow_event
                return expr.values.size
            expr = expand_block(expr)  # the parser's AST, to say where it doesn't fit
        if not shape:
            if isinstance(expr, ast.ListExpr):
                raise _LoweringError(expr.loc, "expected a number here, found a list (the literal is nested "
                                               "deeper than the declared shape)")
            self.overflow_event = None
            parts.append(self.number(expr))
            sources.append(expr)
            if self.overflow_event is not None:
                self.overflowed[start] = self.overflow_event
            return 1
        if not isinstance(expr, ast.ListExpr):
            raise _LoweringError(expr.loc, f"expected a list of {shape[0]} here (the declared shape is "
                                           f"{list(shape)} at this depth)")
        if len(expr.items) != shape[0]:
            raise _LoweringError(expr.loc, f"this list has {len(expr.items)} elements, the declared shape "
                                           f"needs {shape[0]}")
        count = 0
        for item in expr.items:
            count += self.flatten(item, shape[1:], parts, sources, start + count)
        return count

    def number(self, expr: ast.Expr) -> float:
        """Literal arithmetic in float64, as Python and NumPy compute it."""
        if isinstance(expr, ast.Number):
            try:
                number = float(expr.value)
            except OverflowError:  # an integer past float64's range rounds to inf, as 1e999 does
                number = math.inf
            if math.isinf(number) and self.overflow_event is None:
                self.overflow_event = expr.loc, expr.text
            return number
        if isinstance(expr, ast.Name):
            special = SPECIAL_NUMBERS.get(expr.name.lower())
            if special is None:
                raise _LoweringError(expr.loc, f"'{expr.name}' is not a number (literals take numbers, "
                                               f"inf, nan and + - * /)")
            return special
        if isinstance(expr, ast.Unary):
            operand = self.number(expr.operand)
            return -operand if expr.op == "-" else operand
        if isinstance(expr, ast.BinOp):
            left, right = self.number(expr.left), self.number(expr.right)
            with np.errstate(all="ignore"):
                result = float({"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}[expr.op](
                    np.float64(left), np.float64(right)))
            if math.isinf(result) and math.isfinite(left) and math.isfinite(right) and (expr.op != "/" or right):
                self.overflow_event = self.overflow_event or (expr.loc, f"{left!r} {expr.op} {right!r}")
            return result
        raise _LoweringError(expr.loc, "expected a number")

    def load(self, call: ast.Call, tensor_type: TensorType) -> tuple[LoadRef, np.ndarray, np.ndarray]:
        """A ``load("file", ["key"], [codes=true])`` constant, read by :mod:`netdsl.files` (docs/files.md):
        where it came from, the file's array and its storage form. Confined to the model's folder unless the
        model is trusted; every problem located at the call (or at the key it concerns)."""
        if call.func.name != "load":
            raise _LoweringError(call.func.loc, f"unknown function '{call.func.name}'; a constant's value is a "
                                                f"literal or load(\"file.npy\") / load(\"file.npz\", \"key\")")
        if not 1 <= len(call.args) <= 2 or not all(isinstance(a, ast.String) for a in call.args):
            raise _LoweringError(call.loc, "load takes a file name and, for a file of several arrays, a key: "
                                           "load(\"file.npy\") or load(\"file.npz\", \"key\")")
        codes = self.load_codes(call.keywords)
        strings = [a.value for a in call.args if isinstance(a, ast.String)]
        path_text, key = strings[0], (strings[1] if len(strings) == 2 else None)
        named = f"'{path_text}'{f' key {key!r}' if key else ''}"
        try:
            path = self.base_dir / path_text if self.trust_paths else files.confined(path_text, self.base_dir)
            given = files.read_array(path, tensor_type, key, codes)
            data = arrays.coerce(given, tensor_type)
        except files.KeyNotFound as error:
            loc = call.args[1].loc if error.key and len(call.args) == 2 else call.loc
            hint = did_you_mean(error.key, error.available) if error.key and error.available else \
                f' as load("{path_text}", "KEY")' if not error.key else ""
            raise _LoweringError(loc, f"'{path_text}' {error}{hint}") from None
        except files.FileError as error:
            raise _LoweringError(call.loc, f"cannot read '{self.base_dir / path_text}': {error}") from None
        except ValueError as error:  # MismatchError, or a value the declared type can't hold
            raise _LoweringError(call.loc, f"{named} {error}") from None
        return LoadRef(path_text, key, codes), given, data

    def load_codes(self, keywords: list[ast.Keyword]) -> bool:
        """``load``'s one keyword: ``codes=true`` (the file holds raw codes) or ``codes=false``."""
        codes = False
        for index, keyword in enumerate(keywords):
            if keyword.key.name != "codes" or index:
                raise _LoweringError(keyword.key.loc, f"load has one keyword, codes=true; "
                                                      f"'{keyword.key.name}' is not it"
                                     if keyword.key.name != "codes" else "'codes' is given twice")
            value = keyword.value
            if not isinstance(value, ast.Name) or value.name.lower() not in ("true", "false"):
                raise _LoweringError(value.loc, "codes takes true or false")
            codes = value.name.lower() == "true"
        return codes

    # --- layers ----------------------------------------------------------------------------------

    def layer(self, statement: ast.LayerStmt) -> None:
        op = OPS.get(statement.op.name)
        if op is None:
            raise _LoweringError(statement.op.loc, f"unknown layer '{statement.op.name}'"
                                 + did_you_mean(statement.op.name, OPS))
        if len(statement.outputs) != len(op.outputs):
            raise _LoweringError(statement.loc, f"{op.name} has {len(op.outputs)} output"
                                 f"{'s' if len(op.outputs) > 1 else ''} ({', '.join(op.outputs)}), "
                                 f"but {len(statement.outputs)} name{'s are' if len(statement.outputs) > 1 else ' is'} "
                                 f"given")
        args = statement.args
        if not op.required_inputs <= len(args) <= len(op.inputs):
            count = f"{op.required_inputs}" if op.required_inputs == len(op.inputs) else \
                f"{op.required_inputs} to {len(op.inputs)}"
            loc = args[len(op.inputs)].loc if len(args) > len(op.inputs) else statement.op.loc
            raise _LoweringError(loc, f"{op.name} takes {count} tensors ({', '.join(op.inputs)}), got {len(args)}")
        inputs, failed = [], False
        for arg in args:
            try:
                if not isinstance(arg, ast.Name):
                    raise _LoweringError(arg.loc, f"{op.name}'s positional arguments are tensor names; "
                                                  f"attributes are keywords, e.g. axis=1")
                self.used.add(arg.name)
                self.lookup(arg)
                inputs.append(arg.name)
            except _LoweringError as error:
                self.diagnostics.error(error.loc, error.message)
                failed = True
        try:
            attrs, attr_locs = self.attributes(op, statement.keywords)
        except _LoweringError as error:
            self.diagnostics.error(error.loc, error.message)
            failed = True
        # a layer that fails still defines its outputs (untyped), so later uses report nothing more
        node = None if failed else Node(op, inputs, [o.name for o in statement.outputs], attrs, statement.loc,
                                        [a.loc for a in args], attr_locs)
        for out in statement.outputs:
            self.define(Value(out.name, "layer", out.loc, producer=node))
        if node is not None:
            self.graph.nodes.append(node)

    def attributes(self, op: OpDef[Any, Any], keywords: list[ast.Keyword]) -> tuple[Any, dict[str, Loc]]:
        values: dict[str, object] = {}
        locs: dict[str, Loc] = {}
        for keyword in keywords:
            key = keyword.key.name
            kind = op.attr_kinds.get(key)
            if kind is None:
                raise _LoweringError(keyword.key.loc, f"{op.name} has no attribute '{key}'"
                                     + did_you_mean(key, op.attr_kinds) + f"; it takes {', '.join(op.attr_kinds)}")
            if key in values:
                raise _LoweringError(keyword.key.loc, f"'{key}' is given twice")
            values[key] = self.attribute(key, kind, keyword.value)
            locs[key] = keyword.value.loc
        return op.attrs(**values), locs

    def attribute(self, key: str, kind: str, expr: ast.Expr) -> object:
        if kind == "dtype":
            if not isinstance(expr, ast.Name):
                raise _LoweringError(expr.loc, f"{key} takes a type name, e.g. {key}=fp8")
            try:
                return dtypes.lookup(expr.name)
            except KeyError:
                raise _LoweringError(expr.loc, f"unknown type '{expr.name}'" + did_you_mean(
                    expr.name, list(dtypes.DTYPES) + list(dtypes.ALIASES))) from None
        if kind == "int":
            return self.integer(key, expr)
        if kind == "word":
            if not isinstance(expr, ast.Name):
                raise _LoweringError(expr.loc, f"{key} takes a word, e.g. {key}=max")
            return expr.name
        if kind == "bool":
            if not (isinstance(expr, ast.Name) and expr.name in ("true", "false")):
                raise _LoweringError(expr.loc, f"{key} takes true or false")
            return expr.name == "true"
        if isinstance(expr, ast.NumberBlock):
            expr = expand_block(expr)
        if not isinstance(expr, ast.ListExpr):
            raise _LoweringError(expr.loc, f"{key} takes a list of integers, e.g. {key}=[4, -1]")
        return tuple(self.integer(key, item) for item in expr.items)

    @staticmethod
    def integer(key: str, expr: ast.Expr) -> int:
        sign = 1
        if isinstance(expr, ast.Unary):
            sign = -1 if expr.op == "-" else 1
            expr = expr.operand
        if isinstance(expr, ast.Number) and _integer_text(expr.text) and not expr.value <= MAX_INT64:
            raise _LoweringError(expr.loc, f"{key} takes 64-bit integers; {_abbreviated(expr.text)} is too large")
        if not (isinstance(expr, ast.Number) and isinstance(expr.value, int)):
            raise _LoweringError(expr.loc, f"{key} takes integers")
        return sign * expr.value


def _leaves(expr: ast.Expr) -> list[ast.Expr]:
    """A literal's numbers, in order."""
    if not isinstance(expr, ast.ListExpr):
        return [expr]
    return [leaf for item in expr.items for leaf in _leaves(item)]


def _integer_text(text: str) -> bool:
    """A decimal or hex integer literal (which the front ends read as inf when it is too long to convert)."""
    lowered = text.lower()
    if lowered.startswith("0x"):
        return len(lowered) > 2 and all(c in "0123456789abcdef" for c in lowered[2:])
    return lowered.isdigit()


def _abbreviated(text: str) -> str:
    """A literal for a message: Python won't print an int past 4300 digits, and nobody wants to read it."""
    return text if len(text) <= 24 else f"{text[:12]}...{text[-4:]} ({len(text)} characters)"

