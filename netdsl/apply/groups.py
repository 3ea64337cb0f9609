"""Fused groups: the weights a loader fuses into one layer share one global scale.

vLLM and TensorRT-LLM load q/k/v into one QKV layer, gate/up into one gate-up layer and an expert's w1/w3
into one w13 layer, and keep one per-tensor scale per fused layer (vLLM takes the max and warns when they
differ; TensorRT-LLM asserts they are equal). So ``apply`` runs the recipe once on the group's weights
stacked along their output dimension (rows), which gives every tensor-wide reduction (a global amax) the
whole group, and splits the outputs back by rows. Row-wise results (codes, block and channel scales) are
exactly what each weight alone would give; scalar results are shared.
"""

from __future__ import annotations

import re

#: the members of each fused layer, by the last component of the module name
FUSED_MEMBERS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj"),  # attention: QKV
    ("gate_proj", "up_proj"),  # MLP and MoE experts: gate-up
    ("w1", "w3"),  # Mixtral-style experts: w13
)
_MODULE = re.compile(r"^(?P<parent>.*)\.(?P<member>[^.]+)\.weight$")


def fused_groups(names: list[str]) -> list[list[str]]:
    """``names`` (the tensors a recipe applies to) partitioned into groups, each in the loader's fusion
    order (q, k, v; gate, up; w1, w3); a tensor outside every fused layer is a group of its own. Groups
    come in the order of their first member in ``names``."""
    members: dict[tuple[str, int], dict[str, str]] = {}
    key_of: dict[str, tuple[str, int]] = {}
    for name in names:
        match = _MODULE.match(name)
        if match is None:
            continue
        for kind, fusion in enumerate(FUSED_MEMBERS):
            if match["member"] in fusion:
                key = (match["parent"], kind)
                members.setdefault(key, {})[match["member"]] = name
                key_of[name] = key
    groups: list[list[str]] = []
    seen: set[tuple[str, int]] = set()
    for name in names:
        layer = key_of.get(name)
        if layer is None:
            groups.append([name])
        elif layer not in seen:
            seen.add(layer)
            found = members[layer]
            groups.append([found[m] for m in FUSED_MEMBERS[layer[1]] if m in found])
    return groups


def module_of(name: str) -> str:
    """``PREFIX`` of a ``PREFIX.weight`` tensor (the layer a loader's configs name)."""
    return name[: -len(".weight")] if name.endswith(".weight") else name
