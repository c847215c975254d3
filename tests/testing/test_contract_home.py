"""The backend contract suite lives in flujo.testing; its earlier path warns and still works."""

from __future__ import annotations

import datetime as dt
import importlib
import warnings

import pytest
from pydantic_core import TzInfo

import flujo.testing
from flujo.testing import BAD_RUN_IDS, BackendContract, assert_identical, sample_values


def test_the_contract_suite_and_its_samples_come_from_flujo_testing() -> None:
    assert BackendContract.__module__.startswith("flujo.testing.")
    assert "model" in sample_values() and None in BAD_RUN_IDS
    assert {"BAD_RUN_IDS", "BackendContract", "sample_values"} <= set(dir(flujo.testing))


@pytest.mark.parametrize(("old", "new"), [
    ("BackendContract", "BackendContract"),
    ("BAD_RUN_IDS", "BAD_RUN_IDS"),
    ("sample_values", "sample_values"),
])
def test_the_old_path_gives_the_same_object_and_names_the_new_one(old: str, new: str) -> None:
    module = importlib.import_module("flujo.state.testing")
    with pytest.warns(DeprecationWarning, match=rf"use flujo\.testing\.{new}\b"):
        value = getattr(module, old)
    assert value is getattr(flujo.testing, new)
    assert old in dir(module)


def test_the_old_assert_same_is_assert_identical_and_still_takes_a_path() -> None:
    module = importlib.import_module("flujo.state.testing")
    with pytest.warns(DeprecationWarning, match=r"use flujo\.testing\.assert_identical\b"):
        assert_same = module.assert_same
    assert_same({"a": 1}, {"a": 1}, "$.ctx")
    with pytest.raises(AssertionError, match=r"\$\.a"):
        assert_same({"a": 1.0}, {"a": 1})


def test_a_star_import_of_the_old_path_brings_the_names_with_a_warning() -> None:
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning):
        exec("from flujo.state.testing import *", namespace)
    assert namespace["BackendContract"] is BackendContract
    assert {"BAD_RUN_IDS", "assert_same", "sample_values"} <= set(namespace)


def test_importing_the_old_module_alone_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("flujo.state.testing")


def test_an_unknown_name_on_the_old_path_is_an_attribute_error() -> None:
    module = importlib.import_module("flujo.state.testing")
    with pytest.raises(AttributeError, match="no attribute 'assert_similar'"):
        module.assert_similar  # noqa: B018


def test_assert_same_became_strict_about_time_zones() -> None:
    """What the old helper let through: pydantic's TzInfo where datetime.timezone was saved."""
    saved = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    loaded = saved.replace(tzinfo=TzInfo(3600))
    assert loaded == saved
    with pytest.raises(AssertionError, match=r"^\$"):
        assert_identical(loaded, saved)
