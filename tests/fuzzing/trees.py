"""Structure-aware mutations of a parsed JSON/YAML document, and their serialisation back to text.

A mutation picks one node by its path and replaces it with an edge value (NaN, inf, huge or
negative numbers, the wrong type), deletes it, renames or adds a key, nests it thousands of levels
deep, or makes it an alias of another node. Raw YAML snippets (tags, anchors, alias bombs, merge
keys) are spliced in as text through a placeholder, since no Python value dumps as them.
"""

from __future__ import annotations

import copy
import json
import math

import yaml
from hypothesis import strategies as st

EDGE_VALUES = [
    math.nan,
    math.inf,
    -math.inf,
    10**30,
    -(10**30),
    2**63,
    2**31,
    -1,
    0,
    -0.0,
    1e308,
    5e-324,
    "",
    "x" * 5000,
    None,
    True,
    False,
    [],
    {},
    "../../outside",
    "/etc/passwd",
    "a\x00b",
    "NaN",
    "int8",
    [None],
]
RAW_YAML = [
    '!!python/object/apply:os.system ["touch pwned-by-yaml"]',
    "!!python/name:os.system",
    "*undefined_alias",
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14t21:59:43.10-05:00",
    "!!set {a: null, b: null}",
    "&loop [1, *loop]",
    "{<<: {a: 1}, b: 2}",
    "{a: 1, a: 2}",
    "!!float nan",
    "0x7fffffffffffffffffff",
    "1_000_000",
    "'\\x00'",
    ".inf",
    "[&a [x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a], &c [*b, *b, *b, *b, *b, *b, *b, *b],"
    " &d [*c, *c, *c, *c, *c, *c, *c, *c], &e [*d, *d, *d, *d, *d, *d, *d, *d]]",
]
DEPTHS = [64, 1000, 50000]
_RAW = "__fuzz_raw_{}__"
_SCALARS = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)


def node_paths(tree, prefix: tuple = ()) -> list[tuple]:
    """Every node's path (keys and indices), the root's () first."""
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += node_paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += node_paths(value, (*prefix, i))
    return out


def _parent(tree, path: tuple):
    for part in path[:-1]:
        tree = tree[part]
    return tree


@st.composite
def _value(draw, tree, path: tuple, raws: list):
    kind = draw(st.sampled_from(["edge", "scalar", "container", "nest", "alias", "raw"]))
    if kind == "edge":
        return copy.deepcopy(draw(st.sampled_from(EDGE_VALUES)))
    if kind == "scalar":
        return draw(_SCALARS)
    if kind == "container":
        return draw(
            st.one_of(st.lists(_SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), _SCALARS, max_size=3))
        )
    if kind == "nest":  # spliced as text: building it as objects would hit the serialiser's recursion limit
        depth = draw(st.sampled_from(DEPTHS))
        lists = draw(st.booleans())
        raws.append(
            ("[" * depth + "]" * depth,) * 2
            if lists
            else ("{a: " * depth + "1" + "}" * depth, '{"a": ' * depth + "1" + "}" * depth)
        )
        return _RAW.format(len(raws) - 1)
    if kind == "alias":  # the same object twice: yaml.safe_dump writes an anchor and an alias
        paths = [p for p in node_paths(tree) if p != path[: len(p)]]  # never an ancestor: no cycles
        return _at(tree, draw(st.sampled_from(paths))) if paths else None
    raw = draw(st.sampled_from(RAW_YAML))
    raws.append((raw, raw))
    return _RAW.format(len(raws) - 1)


def _at(tree, path: tuple):
    for part in path:
        tree = tree[part]
    return tree


@st.composite
def mutated_tree(draw, seed: dict, max_ops: int = 3):
    """(mutated document, raw (YAML, JSON) snippets to splice into its text, description of what was done)."""
    tree, raws, done = copy.deepcopy(seed), [], []
    for _ in range(draw(st.integers(1, max_ops))):
        # The root is replaced one time in 20: a document that is not a mapping is found at once.
        paths = node_paths(tree)[1:] if draw(st.integers(0, 19)) else [()]
        path = draw(st.sampled_from(paths or [()]))
        op = draw(st.sampled_from(["replace", "replace", "delete", "rename", "add_key"]))
        if not path:
            op = "replace"
        if op == "replace":
            value = draw(_value(tree, path, raws))
            if path:
                _parent(tree, path)[path[-1]] = value
            else:
                tree = value
        elif op == "delete":
            del _parent(tree, path)[path[-1]]
        elif op == "rename" and isinstance(_parent(tree, path), dict):
            parent = _parent(tree, path)
            parent[draw(st.text(max_size=8))] = parent.pop(path[-1])
        else:
            target = _at(tree, path)
            if isinstance(target, dict):
                target[draw(st.sampled_from(["unknown_key", "__class__", "", "steps", "x" * 300]))] = draw(_SCALARS)
            elif isinstance(target, list):
                target.append(copy.deepcopy(target[0]) if target else None)
        done.append(f"{op} {'.'.join(map(str, path)) or '(root)'}")
    return tree, raws, done


def to_yaml(tree, raws: list) -> str:
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=1000)
    return _splice_raws(text, [y for y, _ in raws])


def to_json(tree, raws: list) -> str:
    """JSON with NaN/Infinity tokens (Python's json reads them); YAML-only snippets make it invalid JSON."""
    text = json.dumps(tree, allow_nan=True, indent=1)
    return _splice_raws(text, [j for _, j in raws], quoted=True)


def _splice_raws(text: str, raws: list[str], quoted: bool = False) -> str:
    for i, raw in enumerate(raws):
        name = _RAW.format(i)
        text = text.replace(f'"{name}"' if quoted else name, raw)
    return text
