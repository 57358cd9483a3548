"""Value classes that mean what ``@dataclass`` means, without its start-up cost.

``@dataclass`` writes each class's ``__init__``, ``__eq__``, ``__repr__``, ``__hash__`` and
``__setattr__`` as source text and compiles them when the module is imported: about 1 ms a
class on CPython 3.11, and a one-file check (the pre-commit case) imports seventeen such
classes, a fifth of its start-up. A ``Record`` subclass gets methods that read its field
table instead, so defining one compiles nothing; type checkers see a dataclass (PEP 681).

What the linter uses of dataclasses is here, with the same behaviour: fields in definition
order (a subclass's after its bases'), defaults and ``field(default_factory=...)``,
``repr``/``compare`` per field, ``frozen=True`` (assignment raises ``FrozenInstanceError``,
instances hash by their compared fields), ``order=True``, ``__post_init__``, keyword or
positional construction, ``replace``, pickling and copying. A non-frozen record is
unhashable, as a dataclass with ``eq=True`` is. Classes built by the thousand on hot paths
stay dataclasses: generated methods are faster per call than generic ones.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: it costs a one-file check ~4 ms
    from typing import Any, ClassVar, TypeVar, dataclass_transform

    _R = TypeVar("_R", bound="Record")
else:

    def dataclass_transform(**kwargs: object) -> Callable[[type], type]:
        """``typing.dataclass_transform`` for type checkers; at run time it marks the
        class as that decorator does, without importing typing."""

        def mark(cls: type) -> type:
            cls.__dataclass_transform__ = {
                "eq_default": True,
                "order_default": False,
                "kw_only_default": False,
                "frozen_default": False,
                "field_specifiers": (),
                "kwargs": {},
                **kwargs,
            }
            return cls

        return mark


__all__ = ["FrozenInstanceError", "Record", "field", "replace"]


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record (``dataclasses.FrozenInstanceError``'s role;
    importing dataclasses, with inspect, is what records avoid)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field: its name, default or factory, and whether repr and == see it."""

    __slots__ = ("compare", "default", "factory", "name", "repr")

    def __init__(self, name: str, default: Any, factory: Any, repr: bool, compare: bool) -> None:
        self.name, self.default, self.factory = name, default, factory
        self.repr, self.compare = repr, compare


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] = MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """As ``dataclasses.field``, for the options the linter uses."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field("", default, default_factory, repr, compare)


def _own_annotations(cls: type) -> dict[str, Any]:
    """The class's own annotations, unevaluated where possible: under ``from __future__
    import annotations`` the strings in its ``__dict__``; without it, before 3.14 the values
    there, and from 3.14 (PEP 649) what its annotate function gives as strings (they are in
    no ``__dict__`` until asked for)."""
    own = cls.__dict__.get("__annotations__")  # noqa: RUF063 (the strings, unevaluated)
    if own is not None:
        return dict(own)
    made = "__annotate_func__" in cls.__dict__ or "__annotate__" in cls.__dict__
    if sys.version_info >= (3, 14) and made:
        import annotationlib

        return annotationlib.get_annotations(cls, format=annotationlib.Format.STRING)
    return {}


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


@dataclass_transform(field_specifiers=(field,))
class Record:
    """Base of the linter's value classes; see the module docstring."""

    __fields__: ClassVar[tuple[Field, ...]] = ()
    __compared__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, *, frozen: bool = False, order: bool = False, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        fields = {spec.name: spec for spec in cls.__fields__}
        for name, annotation in _own_annotations(cls).items():
            if _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, MISSING)
            if type(value).__module__ == "dataclasses" and type(value).__name__ == "Field":
                raise TypeError(f"{cls.__name__}.{name}: use records.field, not dataclasses.field")
            if isinstance(value, Field):
                spec = Field(name, value.default, value.factory, value.repr, value.compare)
                if spec.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, spec.default)
            else:
                spec = Field(name, value, MISSING, True, True)
            fields[name] = spec
        cls.__fields__ = tuple(fields.values())
        cls.__compared__ = tuple(spec.name for spec in cls.__fields__ if spec.compare)
        cls.__match_args__ = tuple(fields)  # type: ignore[attr-defined,misc]
        if frozen:
            cls.__setattr__ = _frozen_setattr  # type: ignore[method-assign,assignment]
            cls.__delattr__ = _frozen_delattr  # type: ignore[method-assign,assignment]
            cls.__hash__ = _hash  # type: ignore[method-assign,assignment]
        elif "__hash__" not in cls.__dict__:
            cls.__hash__ = None  # type: ignore[assignment]  # == without frozen, as dataclasses
        if order:
            cls.__lt__ = _ordering(tuple.__lt__)  # type: ignore[operator]
            cls.__le__ = _ordering(tuple.__le__)  # type: ignore[operator]
            cls.__gt__ = _ordering(tuple.__gt__)  # type: ignore[operator]
            cls.__ge__ = _ordering(tuple.__ge__)  # type: ignore[operator]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.__fields__
        if len(args) > len(fields):
            raise TypeError(
                f"{type(self).__name__}() takes {len(fields)} positional arguments"
                f" but {len(args)} were given"
            )
        values = self.__dict__
        for spec, value in zip(fields, args, strict=False):
            if spec.name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for {spec.name!r}")
            values[spec.name] = value
        for spec in fields[len(args) :]:
            name = spec.name
            if name in kwargs:
                values[name] = kwargs.pop(name)
            elif spec.default is not MISSING:
                values[name] = spec.default
            elif spec.factory is not MISSING:
                values[name] = spec.factory()
            else:
                raise TypeError(f"{type(self).__name__}() missing required argument: {name!r}")
        if kwargs:  # what is left names no field
            unknown = next(iter(kwargs))
            raise TypeError(
                f"{type(self).__name__}() got an unexpected keyword argument {unknown!r}"
            )
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def _key(self) -> tuple[Any, ...]:
        values = self.__dict__
        return tuple([values[name] for name in self.__compared__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key() == other._key()
        return NotImplemented

    def __repr__(self) -> str:
        values = self.__dict__
        shown = ", ".join(f"{s.name}={values[s.name]!r}" for s in self.__fields__ if s.repr)
        return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(self: Record, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Record, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _hash(self: Record) -> int:
    return hash(self._key())


def _ordering(compare: Callable[[tuple[Any, ...], tuple[Any, ...]], bool]) -> Any:
    def method(self: Record, other: object) -> Any:
        if other.__class__ is self.__class__:
            return compare(self._key(), other._key())
        return NotImplemented

    return method


def replace(obj: _R, /, **changes: Any) -> _R:
    """A copy of ``obj`` with ``changes``, built through ``__init__`` as dataclasses does."""
    values = {spec.name: obj.__dict__[spec.name] for spec in obj.__fields__}
    for name in changes:
        if name not in values:
            raise TypeError(f"{type(obj).__name__}() got an unexpected keyword argument {name!r}")
    values.update(changes)
    return type(obj)(**values)
