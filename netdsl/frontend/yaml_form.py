"""The YAML front end (docs/language.md, "The YAML form"): ``yaml.compose`` node tree -> the AST the text form builds.

Only the node tree is used, never PyYAML's implicit typing (it reads ``1e-3`` as a string, ``010`` as 8
and ``no`` as false): a number is a plain scalar read from its source text with the text form's number
rule; a quoted scalar is a string. Anchors, aliases, tags and duplicate keys are refused. Every error is
located at the offending node (1-based line and column); the structure is checked completely, so one
run reports every structural problem, and nothing is lowered when there was one.
"""

from __future__ import annotations

import difflib

import yaml

from netdsl.diagnostics import Diagnostics, Loc, did_you_mean
from netdsl.frontend import ast
from netdsl.frontend.text import LITERAL_LIMIT_MESSAGE, MAX_LITERAL_ELEMENTS, number_regex, parse_number, parse_type

TOP_KEYS = ("network", "aliases", "inputs", "constants", "layers", "outputs")
CONSTANT_KEYS = ("type", "value", "load")
#: the keys of load's mapping form
LOAD_KEYS = ("file", "key", "codes")
LAYER_KEYS = ("op", "inputs", "outputs")
#: a layer attribute whose name is a layer key takes another key in the YAML form: the recipe layers'
#: TensorRT ``op`` attribute (``reduce(x, op=max)`` in the text form) is ``operation: max`` here
ATTRIBUTE_KEYS = {"operation": "op"}
_LAYER_EXAMPLES = {"op": "op: quantize", "inputs": "inputs: [x, scale]", "outputs": "outputs: [q]"}

#: inf and nan as the text form spells them, and as YAML does (.inf, .nan); any letter case
_SPECIAL_NUMBERS = {"inf": "inf", ".inf": "inf", "nan": "nan", ".nan": "nan"}
_CORE_TAG_PREFIX = "tag:yaml.org,2002:"


class _Structure(Exception):
    """A structural problem at a node; caught where the structure around it can still be checked."""

    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


class _LiteralTooLarge(Exception):
    def __init__(self, mark: yaml.Mark):
        super().__init__(LITERAL_LIMIT_MESSAGE)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """Composes nodes only, records every anchor, alias and explicit tag it meets, and counts the scalars
    of the list of lists being read, so that a literal over the limit is refused before it is built."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.refused: list[tuple[yaml.Mark, str]] = []
        self.list_scalars = 0
        self.list_mark: yaml.Mark | None = None

    def compose_node(self, parent, index):
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(parent, yaml.SequenceNode):
            if isinstance(event, yaml.ScalarEvent):
                self.list_scalars += 1
                if self.list_scalars > MAX_LITERAL_ELEMENTS:
                    raise _LiteralTooLarge(self.list_mark or mark)
        elif isinstance(event, yaml.SequenceStartEvent):  # an outermost list: a literal, or names
            self.list_scalars, self.list_mark = 0, mark
        if isinstance(event, yaml.AliasEvent):
            self.refused.append((mark, f"aliases are not allowed (*{event.anchor}): write the value out"))
        else:
            if event.anchor is not None:
                self.refused.append((mark, f"anchors are not allowed (&{event.anchor})"))
            if event.tag is not None:
                tag = event.tag.replace(_CORE_TAG_PREFIX, "!!")
                self.refused.append((mark, f"tags are not allowed ({tag}): plain values only"))
        return super().compose_node(parent, index)


def parse_yaml(text: str, file: str, diagnostics: Diagnostics) -> ast.Module | None:
    """Parse a YAML-form model into an AST, or report every structural error and return None."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        _report_refused(loader, file, diagnostics)
        diagnostics.error(_syntax_loc(file, error), _syntax_message(error))
        return None
    except _LiteralTooLarge as error:
        diagnostics.error(_mark_loc(file, error.mark), LITERAL_LIMIT_MESSAGE)
        return None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        diagnostics.error(_position_loc(file, text, error.position), f"invalid YAML: the character "
                          f"#x{error.character:04x} is not allowed ({error.reason})")
        return None
    except RecursionError:
        diagnostics.error(Loc(file, 1, 1), "the model is nested too deeply")
        return None
    finally:
        if loader is not None:
            loader.dispose()
    if _report_refused(loader, file, diagnostics):
        return None
    if root is None:
        diagnostics.error(Loc(file, 1, 1), "the document is empty; a model is a mapping with inputs, "
                                           "constants, layers and outputs")
        return None
    builder = _Builder(file, diagnostics)
    try:
        module = builder.module(root)
    except RecursionError:
        diagnostics.error(Loc(file, 1, 1), "the model is nested too deeply")
        return None
    return module if builder.ok else None


def _report_refused(loader: _Loader | None, file: str, diagnostics: Diagnostics) -> bool:
    if loader is None:
        return False
    for mark, message in loader.refused:
        diagnostics.error(_mark_loc(file, mark), message)
    return bool(loader.refused)


# --- locations -------------------------------------------------------------------------------------


def _mark_loc(file: str, mark: yaml.Mark) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


def _position_loc(file: str, text: str, position: int) -> Loc:
    before = text[:position]
    return Loc(file, before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)


def _syntax_loc(file: str, error: yaml.MarkedYAMLError) -> Loc:
    mark = error.problem_mark or error.context_mark
    return _mark_loc(file, mark) if mark is not None else Loc(file, 1, 1)


def _syntax_message(error: yaml.MarkedYAMLError) -> str:
    message = f"invalid YAML: {error.problem or error.context}"
    if error.problem and error.context:
        where = f" at line {error.context_mark.line + 1}" if error.context_mark is not None else ""
        message += f" ({error.context}{where})"
    return message


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.value == "" and node.style is None:
        return "nothing"
    value = node.value if len(node.value) <= 60 else node.value[:57] + "..."  # a 1 MB scalar stays out
    if node.style is not None:
        return f"the string {_quoted(value)}"
    return f"'{value}'"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _is_plain(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.style is None


def number_expr(text: str, loc: Loc) -> ast.Expr | None:
    """The AST of a number written on its own (``-1``, ``1e-3``, ``0x1p-7``, ``inf``, ``-.nan``), as the
    text form would build it, or None when ``text`` is not one."""
    sign = text[0] if text[:1] in ("+", "-") else ""
    body = text[len(sign):]
    body_loc = Loc(loc.file, loc.line, loc.col + len(sign))
    special = _SPECIAL_NUMBERS.get(body.lower())
    expr: ast.Expr
    if special is not None:
        expr = ast.Name(special, body_loc)
    elif number_regex().fullmatch(body):
        expr = ast.Number(parse_number(body), body, body_loc)
    else:
        return None
    return ast.Unary(sign, expr, loc) if sign else expr


# --- the tree -> AST ---------------------------------------------------------------------------------


class _Builder:
    def __init__(self, file: str, diagnostics: Diagnostics):
        self.file = file
        self.diagnostics = diagnostics
        self.ok = True

    def loc(self, node: yaml.Node) -> Loc:
        return _mark_loc(self.file, node.start_mark)

    def error(self, node: yaml.Node, message: str) -> None:
        self.diagnostics.error(self.loc(node), message)
        self.ok = False

    def guarded(self, build, *args):
        """``build(*args)``, or None after reporting its structural error."""
        try:
            return build(*args)
        except _Structure as problem:
            self.error(problem.node, problem.message)
            return None

    # --- generic shapes ---

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(key, key node, value node) of a mapping, keys being plain or quoted scalars, none twice."""
        if not isinstance(node, yaml.MappingNode):
            raise _Structure(node, f"{what} must be a mapping, found {_describe(node)}")
        items = []
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, f"a key must be a name, found {_describe(key_node)}")
                continue
            key = key_node.value
            if key in seen:
                self.error(key_node, f"duplicate key '{key}' (first at line {seen[key].start_mark.line + 1})")
                continue
            seen[key] = key_node
            items.append((key, key_node, value_node))
        return items

    def sequence(self, node: yaml.Node, what: str, example: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise _Structure(node, f"{what} must be a list, e.g. {example}; found {_describe(node)}")
        return list(node.value)

    def keys(self, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> dict[str, tuple[yaml.Node, ...]]:
        """A mapping whose keys must be among ``allowed``."""
        found = {}
        for key, key_node, value_node in self.mapping(node, what):
            if key not in allowed:
                self.error(key_node, f"unknown key '{key}' in {what}" + did_you_mean(key, allowed)
                           + f"; expected {_choices(allowed)}")
                continue
            found[key] = (key_node, value_node)
        return found

    def name(self, node: yaml.Node, what: str) -> ast.Name:
        """A name (plain or quoted): ``what`` says whose, e.g. "a tensor name"."""
        if not isinstance(node, yaml.ScalarNode):
            raise _Structure(node, f"expected {what}, found {_describe(node)}")
        if not ast.NAME.fullmatch(node.value):
            raise _Structure(node, f"expected {what}, found {_describe(node)} (a name is letters, digits, "
                                   f"'_' and '.', not starting with a digit)")
        return ast.Name(node.value, self.loc(node))

    def names(self, node: yaml.Node, what: str, example: str) -> list[ast.Name]:
        """A list of tensor names: the value of ``what`` (a key)."""
        items = self.sequence(node, f"'{what}'", example)
        names = [self.guarded(self.name, item, "a tensor name") for item in items]
        return [n for n in names if n is not None]

    def type_ref(self, node: yaml.Node) -> ast.TypeRef | None:
        if not isinstance(node, yaml.ScalarNode) or node.value == "":
            raise _Structure(node, f"expected a type such as float32[1, 3], found {_describe(node)}")
        loc = self.loc(node)
        # a quoted type starts one column after its quote; a plain one where the node does
        col = loc.col + (1 if node.style in ("'", '"') else 0)
        type_ref = parse_type(node.value, self.file, loc.line, col, self.diagnostics)
        if type_ref is None:
            self.ok = False
        return type_ref

    def plain_number(self, node: yaml.Node) -> ast.Expr | None:
        """A plain scalar read as a number, or None."""
        if not _is_plain(node):
            return None
        return number_expr(node.value, self.loc(node))

    def number(self, node: yaml.Node) -> ast.Expr:
        expr = self.plain_number(node)
        if expr is not None:
            return expr
        raise _Structure(node, f"expected a number, found {_describe(node)}" + _quote_hint(node))

    def literal(self, node: yaml.Node) -> ast.Expr:
        """A constant's value: a number, or a list nested as deep as the declared shape."""
        if isinstance(node, yaml.SequenceNode):
            return ast.ListExpr([self.literal(item) for item in node.value], self.loc(node))
        return self.number(node)

    def attribute(self, node: yaml.Node) -> ast.Expr:
        """A layer keyword's value: an integer, a list of integers, or a type name."""
        if isinstance(node, yaml.SequenceNode):
            return ast.ListExpr([self.number(item) for item in node.value], self.loc(node))
        expr = self.plain_number(node)
        if expr is not None:
            return expr
        if isinstance(node, yaml.ScalarNode) and ast.NAME.fullmatch(node.value):
            return ast.Name(node.value, self.loc(node))
        raise _Structure(node, f"expected an integer, a list of integers or a type name, found "
                               f"{_describe(node)}" + _quote_hint(node))

    # --- the model ---

    def module(self, root: yaml.Node) -> ast.Module:
        sections = self.guarded(self.keys, root, "the model", TOP_KEYS) or {}
        statements: list[ast.Statement] = []
        if "network" in sections:
            key_node, value_node = sections["network"]
            name = self.guarded(self.name, value_node, "the network name")
            if name is not None:
                statements.append(ast.NetworkStmt(name, self.loc(key_node)))
        for key, build in (("aliases", self.aliases), ("inputs", self.inputs), ("constants", self.constants),
                           ("layers", self.layers)):
            if key in sections:
                statements.extend(self.guarded(build, sections[key][1]) or [])
        if "outputs" in sections:
            key_node, value_node = sections["outputs"]
            output = self.guarded(self.outputs, value_node)
            if output is not None:
                statements.append(output)
        elif isinstance(root, yaml.MappingNode):
            self.error(root, "the model has no 'outputs': add outputs: [NAME, ...]")
        return ast.Module(self.file, statements)

    def aliases(self, node: yaml.Node) -> list[ast.Statement]:
        statements: list[ast.Statement] = []
        for _, key_node, value_node in self.mapping(node, "'aliases' (NAME: \"original name\")"):
            name = self.guarded(self.name, key_node, "an alias name")
            if not isinstance(value_node, yaml.ScalarNode):
                self.error(value_node, f"expected the original name (a string), found {_describe(value_node)}")
            elif name is not None:
                original = ast.String(value_node.value, self.loc(value_node))
                statements.append(ast.AliasStmt(name, original, name.loc))
        return statements

    def inputs(self, node: yaml.Node) -> list[ast.Statement]:
        statements: list[ast.Statement] = []
        for _, key_node, value_node in self.mapping(node, "'inputs' (NAME: TYPE)"):
            name = self.guarded(self.name, key_node, "an input name")
            type_ref = self.guarded(self.type_ref, value_node)
            if name is not None and type_ref is not None:
                statements.append(ast.InputStmt(name, type_ref, name.loc))
        return statements

    def constants(self, node: yaml.Node) -> list[ast.Statement]:
        statements: list[ast.Statement] = []
        for _, key_node, value_node in self.mapping(node, "'constants' (NAME: {type: TYPE, value: ...})"):
            name = self.guarded(self.name, key_node, "a constant name")
            statement = self.guarded(self.constant, name, key_node, value_node)
            if statement is not None:
                statements.append(statement)
        return statements

    def constant(self, name: ast.Name | None, key_node: yaml.Node, node: yaml.Node) -> ast.ConstStmt | None:
        label = f"constant '{key_node.value}'"
        errors_before = len(self.diagnostics.errors)
        fields = self.keys(node, label, CONSTANT_KEYS)
        if len(self.diagnostics.errors) != errors_before:  # a misspelt key: that error says enough
            return None
        if "type" not in fields:
            raise _Structure(node, f"{label} needs a type: {{type: \"float32[1]\", value: [0.5]}}")
        type_ref = self.guarded(self.type_ref, fields["type"][1])
        if "value" in fields and "load" in fields:
            raise _Structure(fields["load"][0], f"{label} has both 'value' and 'load'; give one")
        if "value" in fields:
            value = self.guarded(self.literal, fields["value"][1])
        elif "load" in fields:
            value = self.guarded(self.load, *fields["load"])
        else:
            raise _Structure(node, f"{label} needs a 'value' (a literal) or a 'load' (a file: load: w.npy "
                                   f"or load: [w.npz, key])")
        if name is None or type_ref is None or value is None:
            return None
        return ast.ConstStmt(name, type_ref, value, name.loc)

    def load(self, key_node: yaml.Node, node: yaml.Node) -> ast.Call:
        """``load: w.npy``, ``load: [w.npz, key]`` or ``load: {file: w.npy, key: k, codes: true}``."""
        keywords: list[ast.Keyword] = []
        if isinstance(node, yaml.MappingNode):
            fields = self.keys(node, "load", LOAD_KEYS)
            if "file" not in fields:
                raise _Structure(node, "load needs a file: load: {file: w.npy, codes: true}")
            parts = [fields[key][1] for key in ("file", "key") if key in fields]
            if "codes" in fields:
                codes_key, codes = fields["codes"]
                if not isinstance(codes, yaml.ScalarNode) or codes.value.lower() not in ("true", "false"):
                    raise _Structure(codes, f"codes takes true or false; found {_describe(codes)}")
                keywords.append(ast.Keyword(ast.Name("codes", self.loc(codes_key)),
                                            ast.Name(codes.value.lower(), self.loc(codes)), self.loc(codes_key)))
        else:
            parts = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not 1 <= len(parts) <= 2 or not all(isinstance(p, yaml.ScalarNode) and p.value for p in parts):
            raise _Structure(node, f"load takes a file name (load: w.npy) or a file name and a key "
                                   f"(load: [w.npz, key]); found {_describe(node)}")
        args: list[ast.Expr] = [ast.String(p.value, self.loc(p)) for p in parts]
        return ast.Call(ast.Name("load", self.loc(key_node)), args, self.loc(node), keywords)

    def layers(self, node: yaml.Node) -> list[ast.Statement]:
        items = self.sequence(node, "'layers'", "- {op: quantize, inputs: [x, s], outputs: [q]}")
        return [s for s in (self.guarded(self.layer, item) for item in items) if s is not None]

    def layer(self, node: yaml.Node) -> ast.LayerStmt | None:
        items = self.mapping(node, "a layer")
        present = {key: value_node for key, _, value_node in items}
        missing = [key for key in LAYER_KEYS if key not in present]
        if missing:
            for key, key_node, _ in items:  # a misspelt op/inputs/outputs: say so at the key
                close = difflib.get_close_matches(key, missing, n=1)
                if key not in LAYER_KEYS and close:
                    self.error(key_node, f"unknown key '{key}' in a layer (did you mean '{close[0]}'?)")
                    missing.remove(close[0])
            if missing:
                raise _Structure(node, f"a layer needs {_choices(missing, 'and')}, e.g. "
                                       + ", ".join(_LAYER_EXAMPLES[key] for key in missing))
            return None
        op = self.guarded(self.name, present["op"], "a layer name such as quantize")
        args = self.names(present["inputs"], "inputs", _LAYER_EXAMPLES["inputs"])
        outputs = self.names(present["outputs"], "outputs", _LAYER_EXAMPLES["outputs"])
        keywords = []
        for key, key_node, value_node in items:
            if key in LAYER_KEYS:
                continue
            key_name = self.guarded(self.name, key_node, "an attribute name")
            if key_name is not None and key_name.name in ATTRIBUTE_KEYS:
                key_name = ast.Name(ATTRIBUTE_KEYS[key_name.name], key_name.loc)
            value = self.guarded(self.attribute, value_node)
            if key_name is not None and value is not None:
                keywords.append(ast.Keyword(key_name, value, key_name.loc))
        if op is None:
            return None
        return ast.LayerStmt(outputs, op, list(args), keywords, self.loc(node))

    def outputs(self, node: yaml.Node) -> ast.OutputStmt:
        names = self.names(node, "outputs", "outputs: [out]")
        if not names and not node.value:
            raise _Structure(node, "'outputs' names no tensor: add outputs: [NAME, ...]")
        return ast.OutputStmt(names, self.loc(node))


def _choices(words, last: str = "or") -> str:
    quoted = [f"'{w}'" for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" {last} " + quoted[-1]


def _quote_hint(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode) and node.style is not None:
        if number_expr(node.value, Loc("", 1, 1)) is not None:
            return " (numbers are written unquoted)"
    return ""
