"""``Record`` means what ``@dataclass`` means for everything the linter uses of it: each
case is run on a Record class and on the dataclass written the same way."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from corral.lint_rules import records
from corral.lint_rules.records import FrozenInstanceError, Record


class FrozenRecord(Record, frozen=True, order=True):
    line: int
    code: str
    source: str = records.field(default="", compare=False, repr=False)
    tags: tuple[str, ...] = records.field(default_factory=tuple)
    kind: str = "call"


@dataclasses.dataclass(frozen=True, order=True)
class FrozenData:
    line: int
    code: str
    source: str = dataclasses.field(default="", compare=False, repr=False)
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)
    kind: str = "call"


class PlainRecord(Record):
    name: str
    seen: set[str] = records.field(default_factory=set)

    def __post_init__(self) -> None:
        self.seen.add(self.name)


@dataclasses.dataclass
class PlainData:
    name: str
    seen: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        self.seen.add(self.name)


PAIRS = [(FrozenRecord, FrozenData), (PlainRecord, PlainData)]
CALLS: list[tuple[type[Any], tuple[Any, ...], dict[str, Any]]] = [
    (FrozenRecord, (3, "CRL101"), {}),
    (FrozenRecord, (3,), {"code": "CRL101", "source": "x()", "kind": "import"}),
    (FrozenRecord, (), {"line": 1, "code": "A", "tags": ("t",)}),
    (FrozenRecord, (1, "A", "src", ("t",), "k"), {}),
    (PlainRecord, ("a",), {}),
    (PlainRecord, (), {"name": "b", "seen": {"x"}}),
]
BAD_CALLS: list[tuple[type[Any], tuple[Any, ...], dict[str, Any]]] = [
    (FrozenRecord, (), {}),
    (FrozenRecord, (1,), {}),
    (FrozenRecord, (1, "A"), {"nope": 1}),
    (FrozenRecord, (1, "A"), {"line": 2}),
    (FrozenRecord, (1, "A", "s", [], "k", "extra"), {}),
    (PlainRecord, (), {}),
]


def _twin(cls: type[Any]) -> type[Any]:
    return dict(PAIRS)[cls]


def _fields(obj: Any) -> dict[str, Any]:
    names = [f.name for f in obj.__fields__] if isinstance(obj, Record) else None
    if names is None:
        names = [f.name for f in dataclasses.fields(obj)]
    return {name: getattr(obj, name) for name in names}


@pytest.mark.parametrize(("cls", "args", "kwargs"), CALLS)
def test_construction_repr_and_match_args_agree(
    cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    ours, theirs = cls(*args, **kwargs), _twin(cls)(*args, **kwargs)
    assert _fields(ours) == _fields(theirs)
    assert repr(ours).replace(cls.__name__, "X") == repr(theirs).replace(_twin(cls).__name__, "X")
    assert cls.__match_args__ == _twin(cls).__match_args__


@pytest.mark.parametrize(("cls", "args", "kwargs"), BAD_CALLS)
def test_bad_construction_raises_type_error_like_a_dataclass(
    cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        _twin(cls)(*args, **kwargs)
    with pytest.raises(TypeError):
        cls(*args, **kwargs)


def test_factories_give_each_instance_its_own_value() -> None:
    a, b = PlainRecord("a"), PlainRecord("a")
    assert a.seen == {"a"} and a.seen is not b.seen
    assert FrozenRecord(1, "A").tags == ()


def test_equality_hash_and_order_follow_the_compared_fields() -> None:
    rows = [(2, "B", "s1"), (1, "Z", "s2"), (1, "A", "s3"), (1, "A", "other source")]
    ours = [FrozenRecord(*row) for row in rows]
    theirs = [FrozenData(*row) for row in rows]
    assert [_fields(r) for r in sorted(ours)] == [_fields(r) for r in sorted(theirs)]
    assert ours[2] == ours[3] and hash(ours[2]) == hash(ours[3])  # source not compared
    assert ours[0] != ours[1] and ours[0] > ours[1] >= ours[2] and ours[2] <= ours[3]
    assert len({*ours}) == len({*theirs}) == 3
    assert ours[0] != FrozenData(2, "B")  # another class is never equal
    with pytest.raises(TypeError):
        _ = ours[0] < FrozenData(1, "A")  # type: ignore[operator]
    with pytest.raises(TypeError):
        hash(PlainRecord("a"))  # == without frozen: unhashable, as a dataclass
    assert PlainRecord("a") == PlainRecord("a") and PlainRecord("a") != PlainRecord("b")


def test_frozen_records_refuse_assignment_and_deletion() -> None:
    r = FrozenRecord(1, "A")
    with pytest.raises(FrozenInstanceError):
        r.line = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del r.code  # type: ignore[misc]
    plain = PlainRecord("a")
    plain.name = "b"
    assert plain.name == "b" and plain.seen == {"a"}  # __post_init__ ran


def test_replace_builds_through_init_like_dataclasses() -> None:
    r = FrozenRecord(1, "A", "src", ("t",))
    changed = records.replace(r, source="new")
    assert _fields(changed) == _fields(
        dataclasses.replace(FrozenData(1, "A", "src", ("t",)), source="new")
    )
    assert r.source == "src"
    with pytest.raises(TypeError):
        records.replace(r, nope=1)
    assert records.replace(PlainRecord("a"), name="b").seen == {"a", "b"}  # post-init again


@pytest.mark.parametrize(
    "make", [lambda: FrozenRecord(1, "A", "s", ("t",)), lambda: PlainRecord("a")]
)
def test_pickle_and_copy_keep_every_field(make: Any) -> None:
    r = make()
    for clone in (pickle.loads(pickle.dumps(r)), copy.copy(r), copy.deepcopy(r)):
        assert type(clone) is type(r) and _fields(clone) == _fields(r)


def test_a_subclass_has_its_bases_fields_first() -> None:
    class Base(Record):
        a: int
        b: int = 0

    class Child(Base):
        c: int = 1

    @dataclasses.dataclass
    class DBase:
        a: int
        b: int = 0

    @dataclasses.dataclass
    class DChild(DBase):
        c: int = 1

    assert Child.__match_args__ == DChild.__match_args__ == ("a", "b", "c")
    assert _fields(Child(5, c=3)) == _fields(DChild(5, c=3))


def test_a_dataclasses_field_is_refused() -> None:
    with pytest.raises(TypeError, match=r"records\.field"):

        class Wrong(Record):
            items: list[int] = dataclasses.field(default_factory=list)


def test_defining_a_record_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    calls: list[str] = []
    real_exec = builtins.exec

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append("exec")
        return real_exec(*args, **kwargs)

    monkeypatch.setattr(builtins, "exec", counting)

    class Defined(Record, frozen=True):
        a: int
        b: str = ""

    assert calls == [] and Defined(1) == Defined(1, "")


WITHOUT_FUTURE_IMPORT = """
from typing import ClassVar
from corral.lint_rules.records import Record, field

class Base(Record):
    a: int
    kind: ClassVar[str] = "base"

class Plain(Base):
    pass

class Child(Plain, frozen=True):
    b: "list[int]" = field(default_factory=list)
    c: str = "x"
"""


def test_fields_are_found_without_the_future_import() -> None:
    """A module without ``from __future__ import annotations``: on 3.14 (PEP 649) its class
    annotations are in no ``__dict__`` until asked for, yet every field is still found."""
    space: dict[str, Any] = {}
    exec(compile(WITHOUT_FUTURE_IMPORT, "<records>", "exec", dont_inherit=True), space)
    child = space["Child"](1)
    assert space["Child"].__match_args__ == ("a", "b", "c")
    assert space["Plain"].__match_args__ == ("a",)
    assert (child.a, child.b, child.c) == (1, [], "x") and space["Child"].kind == "base"
    assert child == space["Child"](1) and repr(child) == "Child(a=1, b=[], c='x')"
    with pytest.raises(FrozenInstanceError):
        child.a = 2
