"""The levelled guard of a model class that contains itself (a tree): it checks the models
level by level instead of calling itself per node, and counts the levels, which decide
whether the tree's JSON may be written as text. It must accept exactly what the guard that
calls itself accepts (the reference), note the same objects, and count the tree's height."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from flujo.serialization import (
    TypeRegistry,
    deserialize_from_json,
    safe_serialize,
    serialize_to_bytes,
)
from flujo.serialization._guard import MAX_LEVELS, GuardWriter

from ._support import assert_same
from .test_roundtrip_property import PROPERTY_SETTINGS


class Tree(BaseModel):
    name: str
    weight: float
    children: list[Tree] = []
    best: Tree | None = None
    by_name: dict[str, Tree] = {}


class Left(BaseModel):  # contains itself through another class
    n: int
    right: Right | None = None


class Right(BaseModel):
    left: Left | None = None
    lefts: list[Left] = []


class Name(str):
    pass


class Sapling(Tree):
    pass


def guards(cls: type[BaseModel]) -> tuple[Any, Any]:
    """The levelled guard of ``cls`` and the reference, which calls itself."""
    schema: dict[str, Any] = cls.__pydantic_core_schema__  # type: ignore[assignment]
    levelled = GuardWriter().build(schema, "test levelled")[0]
    reference = GuardWriter(level_trees=False).build(schema, "test reference")[0]
    return levelled, reference


TREE_GUARDS = guards(Tree)
LEFT_GUARDS = guards(Left)


def run(guard: Any, value: Any) -> tuple[bool, Any, Counter[int]]:
    """Whether ``guard`` accepts ``value``, what it returned, and the ids it noted."""
    kept: list[Any] = []
    try:
        result = guard(value, kept.append)
    except RecursionError:  # the reference, on a cycle: the encoder takes it as a refusal
        return False, None, Counter()
    return bool(result), result, Counter(id(obj) for obj in kept)


def height(tree: Tree) -> int:
    inside = [*tree.children, *tree.by_name.values(), *([tree.best] if tree.best else [])]
    return 1 + max((height(child) for child in inside), default=0)


def nodes(tree: Tree) -> list[Tree]:
    found = [tree]
    for child in [*tree.children, *tree.by_name.values(), *([tree.best] if tree.best else [])]:
        found += nodes(child)
    return found


@st.composite
def trees(draw: st.DrawFn, depth: int = 5, complete: bool | None = None) -> Tree:
    """Trees of up to ``depth`` levels below the root; ``complete``: every field of every
    node set (the typed form's), else (False) some left unset, or (None) drawn."""
    if complete is None:
        complete = draw(st.booleans())
    weight = draw(st.floats(allow_nan=False, allow_infinity=False))
    fields: dict[str, Any] = {"name": draw(st.text(max_size=3)), "weight": weight}
    if depth == 0:
        children, best, by_name = [], None, {}
    else:
        below = trees(depth - 1, complete)
        children = draw(st.lists(below, max_size=3))
        best = draw(st.none() | below)
        by_name = draw(st.dictionaries(st.text(max_size=2), below, max_size=2))
    # an unset field is a different instance state: such a tree is written generically
    if complete or children or draw(st.booleans()):
        fields["children"] = children
    if complete or best is not None or draw(st.booleans()):
        fields["best"] = best
    if complete or by_name or draw(st.booleans()):
        fields["by_name"] = by_name
    return Tree(**fields)


def spoil(tree: Tree, rnd: random.Random) -> str:
    """Make one node of ``tree`` something the typed form cannot hold exactly (or share or
    loop a node); what was done."""
    every = nodes(tree)
    node = rnd.choice(every)
    how = rnd.choice(["str weight", "nan", "int weight", "str subclass", "subclass child",
                      "extra state", "private", "unset", "shared", "cycle", "tuple children",
                      "none"])
    if how == "str weight":
        node.__dict__["weight"] = "1.5"
    elif how == "nan":
        node.__dict__["weight"] = float("nan")
    elif how == "int weight":
        node.__dict__["weight"] = 3
    elif how == "str subclass":
        node.__dict__["name"] = Name("x")
    elif how == "subclass child":
        node.__dict__["children"] = [*node.children, Sapling(name="s", weight=1.0)]
    elif how == "extra state":
        node.__dict__["surprise"] = 1
    elif how == "private":
        object.__setattr__(node, "__pydantic_private__", {"x": 1})
    elif how == "unset":
        node.__pydantic_fields_set__.discard("name")
    elif how == "shared":
        other = rnd.choice(every)
        node.__dict__["children"] = [*node.children, other]
    elif how == "cycle":
        node.__dict__["children"] = [*node.children, rnd.choice(every)]
        node.__dict__["best"] = tree
    elif how == "tuple children":
        node.__dict__["children"] = tuple(node.children)
    return how


@PROPERTY_SETTINGS
@given(trees(depth=4), st.randoms(use_true_random=False), st.booleans())
def test_the_levelled_guard_accepts_what_the_reference_accepts(
        tree: Tree, rnd: random.Random, spoiled: bool) -> None:
    how = spoil(tree, rnd) if spoiled else "none"
    levelled, reference = TREE_GUARDS
    accepted, levels, kept = run(levelled, tree)
    expected, _, reference_kept = run(reference, tree)
    assert accepted == expected, how
    if accepted:
        # the same objects noted, as often (a shared node twice: the encoder sees it)
        assert kept == reference_kept, how
        if how not in ("shared", "cycle"):
            assert levels == height(tree), how
    if how == "none":
        assert accepted == all(len(node.model_fields_set) == 5 for node in nodes(tree))


@PROPERTY_SETTINGS
@given(trees(depth=3))
def test_a_tree_comes_back_exactly_and_its_bytes_are_those_of_the_data(tree: Tree) -> None:
    text = serialize_to_bytes(tree)
    assert text == orjson.dumps(safe_serialize(tree))  # as text or as data: the same bytes
    assert_same(tree, deserialize_from_json(text))


def leaf(name: str, best: Tree | None = None) -> Tree:
    """A tree node with every field set (the typed form's)."""
    return Tree(name=name, weight=1.0, children=[], best=best, by_name={})


def test_a_class_that_contains_itself_through_another_is_levelled_through_it() -> None:
    levelled, reference = LEFT_GUARDS
    value = Left(n=1, right=Right(left=Left(n=2, right=Right(
        left=None, lefts=[Left(n=3, right=None), Left(n=4, right=None)])), lefts=[]))
    assert run(levelled, value)[:2] == (True, 3)
    assert run(levelled, value)[2] == run(reference, value)[2]
    value.right.left.right.lefts[1].__dict__["n"] = True  # type: ignore[union-attr]
    assert run(levelled, value)[0] is run(reference, value)[0] is False
    assert_same(value, deserialize_from_json(serialize_to_bytes(value)))


def test_a_cycle_ends_the_walk_and_is_written_as_before() -> None:
    levelled, _ = TREE_GUARDS
    tree = leaf("a")
    tree.children.append(tree)
    assert run(levelled, tree)[0] is False  # MAX_LEVELS, not a loop forever
    # the generic form writes it with a reference, or refuses it without references
    back = deserialize_from_json(serialize_to_bytes(tree))
    assert back.children[0] is back
    from flujo.exceptions import CircularReferenceError

    with pytest.raises(CircularReferenceError, match="its own ancestor"):
        serialize_to_bytes(tree, registry=TypeRegistry(references=False))


def test_a_chain_longer_than_the_walk_fails_the_guard() -> None:
    levelled, _ = TREE_GUARDS
    tree = leaf("0")
    for i in range(MAX_LEVELS):
        tree = leaf(str(i), best=tree)
    assert run(levelled, tree)[0] is False
    assert run(levelled, tree.best)[1] == MAX_LEVELS


class Forest(BaseModel):  # contains trees, not itself
    name: str
    trees: list[Tree] = []


def guard_source(label: str) -> str:
    import linecache

    return "".join(next(lines for name, (_, _, lines, _) in linecache.cache.items()
                        if label in name))


def test_the_guard_of_each_class_that_contains_itself_is_levelled() -> None:
    schema: dict[str, Any] = Forest.__pydantic_core_schema__  # type: ignore[assignment]
    GuardWriter().build(schema, "forest levelled")
    functions = {part.partition("(")[0]: part
                 for part in guard_source("forest levelled").split("def ")[1:]}
    forest, tree = functions["_guard0"], functions["_guard1"]  # Forest's, Tree's
    assert "while level:" not in forest and "push(" not in forest
    assert "while level:" in tree and "push(" in tree and "_guard1(" in forest
    GuardWriter(level_trees=False).build(schema, "forest reference")
    assert "while level:" not in guard_source("forest reference")
    value = Forest(name="f", trees=[Tree(name="a", weight=1.0,
                                         children=[Tree(name="b", weight=2.0)])])
    assert_same(value, deserialize_from_json(serialize_to_bytes(value)))


# Found by review: a tree whose class contains itself also through three other classes (the
# last one past the inlined levels has a function of its own, which calls the tree's guard:
# a walk inside the walk, whose levels the outer one cannot count).
class Deep1(BaseModel):
    kids: list[Deep1] = []
    c: Deep2 | None = None


class Deep2(BaseModel):
    c: Deep3 | None = None


class Deep3(BaseModel):
    c: Deep4 | None = None


class Deep4(BaseModel):
    d: Deep1 | None = None


def data_outcome(value: Any) -> Any:
    try:
        return orjson.dumps(safe_serialize(value))
    except Exception as exc:  # the data path's refusal, as serialize_to_bytes reports it
        return type(exc).__name__


def bytes_outcome(value: Any) -> Any:
    try:
        return serialize_to_bytes(value)
    except Exception as exc:
        return "TypeError" if "cannot write JSON" in str(exc) else type(exc).__name__


@pytest.mark.parametrize("length", [3, 10, 40, 70])
def test_a_walk_inside_the_walk_is_not_counted_as_one_level(length: int) -> None:
    chain = Deep1(kids=[], c=None)
    for _ in range(length):
        chain = Deep1(kids=[], c=Deep2(c=Deep3(c=Deep4(d=chain))))
    assert run(TREE_GUARDS[0], leaf("x"))[1] == 1  # (a tree's own guard counts)
    written = bytes_outcome(chain)
    assert written == data_outcome(chain)
    if isinstance(written, bytes):
        assert_same(chain, deserialize_from_json(written))


def test_a_tree_that_holds_a_model_many_times_is_written_once_with_references() -> None:
    # each of three levels holds the one below 3,000 times: 2.7e10 paths, 4 models
    node = leaf("leaf")
    for i in range(3):
        node = Tree(name=str(i), weight=1.0, children=[node] * 3000, best=None, by_name={})
    back = deserialize_from_json(serialize_to_bytes(node))
    shared = back.children[0] is back.children[-1] and back.children[0].children[0] is \
        back.children[1].children[2999]
    assert shared
    levelled, _ = TREE_GUARDS
    assert run(levelled, node)[0] is False  # a level holds a model twice


def test_a_cycle_through_two_children_without_references_is_refused_quickly() -> None:
    from flujo.exceptions import CircularReferenceError

    node = leaf("a")
    node.children.extend([node, node])  # each level would double
    with pytest.raises(CircularReferenceError, match="its own ancestor"):
        serialize_to_bytes(node, registry=TypeRegistry(references=False))
    levelled, _ = TREE_GUARDS
    assert run(levelled, node)[0] is False
