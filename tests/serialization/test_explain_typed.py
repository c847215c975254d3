"""explain_typed says which form a class is written in, and why: what the encoder does."""

from __future__ import annotations

import dataclasses
import decimal
import linecache
from collections.abc import Callable
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr, RootModel, computed_field

from flujo.exceptions import InvalidArgumentError
from flujo.serialization import TypeRegistry, explain_typed, safe_serialize


class Plain(BaseModel):
    n: int
    price: decimal.Decimal
    tags: list[str]


class Loose(BaseModel):
    role: Literal["user", "tool"]
    arguments: dict[str, Any]


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")
    n: int


class Frozen(BaseModel):  # bytes written as base64: a setting of the JSON it writes
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64")
    n: int


class Numbers(RootModel[list[int]]):
    pass


class Computed(BaseModel):
    n: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return 2 * self.n


class Holder(BaseModel):
    inner: Extra


class Cached(BaseModel):  # every instance holds a private value
    n: int
    _hits: int = 0
    _seen: dict[str, int] = PrivateAttr(default_factory=dict)


class Unset(BaseModel):  # a private attribute set only by some code, later
    n: int
    _note: str = PrivateAttr()


class Shelf(BaseModel):
    items: list[Cached] | None = None


class OwnState(BaseModel):
    n: int

    def __getstate__(self) -> dict[Any, Any]:
        return {"n": self.n}


@dataclasses.dataclass
class Point:
    x: int


def instance(cls: type) -> Any:
    makers: dict[type, Callable[[], Any]] = {
        Plain: lambda: Plain(n=1, price=decimal.Decimal("1.5"), tags=["a"]),
        Loose: lambda: Loose(role="tool", arguments={"q": [1, None]}),
        Extra: lambda: Extra(n=1, more=2),
        Frozen: lambda: Frozen(n=1),
        Numbers: lambda: Numbers([1, 2]),
        Computed: lambda: Computed(n=2),
        Holder: lambda: Holder(inner=Extra(n=1)),
        Cached: lambda: Cached(n=1),
        Unset: lambda: Unset(n=1),
        Shelf: lambda: Shelf(items=[Cached(n=1)]),
    }
    return makers[cls]()


@pytest.mark.parametrize(("cls", "reason"), [
    (Plain, None),
    (Loose, None),
    (Extra, "Extra allows extra fields"),
    (Frozen, "model_config settings the guard cannot account for: "),
    (Numbers, "Numbers is a RootModel"),
    (Computed, "Computed has computed or extra fields"),
    (Holder, "Extra allows extra fields"),
    (Cached, "Cached has private attributes with defaults (_hits, _seen)"),
    (Unset, None),
    (Shelf, "Cached has private attributes with defaults"),
])
def test_the_report_is_what_the_encoder_writes(cls: type, reason: str | None) -> None:
    report = explain_typed(cls)
    written = safe_serialize(instance(cls))
    typed_written = isinstance(written["v"], list) and not isinstance(instance(cls), RootModel)
    assert report.typed is typed_written is (reason is None), (report, written)
    if reason is None:
        assert report.reason.startswith("typed form") and report.guard is not None
        assert linecache.getline(report.guard, 1).startswith("def _guard")
    else:
        assert reason in report.reason and report.guard is None
        assert str(report).startswith(f"{cls.__module__}.{cls.__qualname__}: generic form: ")


def test_a_registry_that_writes_no_typed_form_says_so() -> None:
    report = explain_typed(Plain, registry=TypeRegistry(typed_models=False))
    assert not report.typed and "typed_models=False" in report.reason
    assert isinstance(safe_serialize(instance(Plain), registry=TypeRegistry(
        typed_models=False))["v"], dict)


def test_classes_that_are_not_models_or_are_refused() -> None:
    assert "not a pydantic model" in explain_typed(Point).reason
    assert "not a pydantic model" in explain_typed(BaseModel).reason
    refused = explain_typed(OwnState)
    assert not refused.typed and "defines its own __getstate__" in refused.reason
    registry = TypeRegistry()
    registry.register_type(Plain, serializer=lambda p: p.n, deserializer=lambda n: Plain(
        n=n, price=decimal.Decimal(0), tags=[]), name="tests.Plain")
    custom = explain_typed(Plain, registry=registry)
    assert not custom.typed and "custom codec 'tests.Plain'" in custom.reason


@pytest.mark.parametrize("value", [Plain(n=1, price=decimal.Decimal(1), tags=[]), "Plain", 3])
def test_only_classes_are_explained(value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a class"):
        explain_typed(value)


def test_a_model_that_is_not_fully_defined_is_an_invalid_argument() -> None:
    class Later(BaseModel):
        other: Missing  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(InvalidArgumentError, match="Later"):
        explain_typed(Later)
