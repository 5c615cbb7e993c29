"""The shape every runtime module shares: storage items, errors, events, calls, hooks.

A module is a class with a `name`, its storage items, its error classes, the events it emits,
dispatchable calls marked with `@call(weight=...)`, and optional `on_initialize` /
`on_finalize` hooks. The executive dispatches to any module without special cases.
"""
from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, ClassVar

from runtime.codec import decode, encode
from runtime.state import Overlay
from runtime.types import Event


class DispatchError(Exception):
    """A call failed: its writes are rolled back, its fee stays paid, an event names the error."""

    module: ClassVar[str] = "system"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())
        self.message = str(self.args[0])

    @property
    def name(self) -> str:
        return type(self).__name__


def ensure(condition: bool, error: type[DispatchError], message: str = "") -> None:
    """Raise `error(message)` unless `condition` holds."""
    if not condition:
        raise error(message)


# ---------------------------------------------------------------- typed storage


class StorageValue:
    """One value under a fixed key `module:Name`."""

    def __init__(self, module: str, name: str, default: Any = None) -> None:
        self.key = f"{module}:{name}".encode()
        self._default = encode(default)

    def get(self, state: Overlay) -> Any:
        raw = state.get(self.key)
        return decode(raw if raw is not None else self._default)

    def put(self, state: Overlay, value: Any) -> None:
        state.set(self.key, encode(value))

    def kill(self, state: Overlay) -> None:
        state.delete(self.key)


class StorageMap:
    """Values under `module:Name:` + encode(key); absent keys read as the default."""

    def __init__(self, module: str, name: str, default: Any = None) -> None:
        self.prefix = f"{module}:{name}:".encode()
        self._default = encode(default)

    def key(self, item: Any) -> bytes:
        return self.prefix + encode(item)

    def get(self, state: Overlay, item: Any) -> Any:
        raw = state.get(self.prefix + encode(item))  # self.key(item), inlined: read per account per extrinsic
        return decode(raw if raw is not None else self._default)

    def contains(self, state: Overlay, item: Any) -> bool:
        return state.get(self.key(item)) is not None

    def put(self, state: Overlay, item: Any, value: Any) -> None:
        state.set(self.prefix + encode(item), encode(value))

    def remove(self, state: Overlay, item: Any) -> None:
        state.delete(self.key(item))


class Record:
    """A storage record: subclasses are frozen dataclasses, encoded as the fixed-order list of their
    fields (consensus structures are lists, never maps), so `record.model_cid` replaces `value[4]`."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # set by @dataclass on each subclass

    def to_list(self) -> list:
        return [getattr(self, name) for name in _field_names(type(self))]

    @classmethod
    def from_list(cls, values: Any) -> typing.Self:
        names = _field_names(cls)
        if not isinstance(values, list) or len(values) != len(names):
            raise ValueError(f"a {cls.__name__} is a list of {len(names)} fields ({', '.join(names)})")
        return cls(*values)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(record: type) -> tuple[str, ...]:
    """A record class's field names in order (`dataclasses.fields` rebuilds them on every call)."""
    names = _FIELD_NAMES.get(record)
    if names is None:
        names = _FIELD_NAMES[record] = tuple(f.name for f in fields(record))
    return names


R = typing.TypeVar("R", bound=Record)
_IMMUTABLE = frozenset({int, bytes, str, bool, type(None)})


class RecordMap(typing.Generic[R]):
    """A StorageMap whose values are `Record`s: `get` returns the record or None, `put` takes one."""

    def __init__(self, module: str, name: str, record: type[R]) -> None:
        self.prefix = f"{module}:{name}:".encode()
        self.record = record

    def key(self, item: Any) -> bytes:
        return self.prefix + encode(item)

    def get(self, state: Overlay, item: Any) -> R | None:
        raw = state.get(self.key(item))
        return None if raw is None else self.record.from_list(decode(raw))

    def contains(self, state: Overlay, item: Any) -> bool:
        return state.get(self.key(item)) is not None

    def put(self, state: Overlay, item: Any, value: R) -> None:
        state.set(self.key(item), encode(value.to_list()))

    def remove(self, state: Overlay, item: Any) -> None:
        state.delete(self.key(item))


class RecordValue(typing.Generic[R]):
    """A StorageValue whose value is a `Record` (stored as its field list): `get` returns the record."""

    def __init__(self, module: str, name: str, default: R) -> None:
        self.key = f"{module}:{name}".encode()
        self.record = type(default)
        self.default = default
        self._default = encode(default.to_list())  # the encoded default, as StorageValue keeps it
        # the last value read, by its bytes: parameters (fees, limits) are read for every
        # extrinsic and change rarely; kept only when every field is immutable, so sharing is safe
        self._last: tuple[bytes, R] | None = None

    def get(self, state: Overlay) -> R:
        raw = state.get(self.key)
        if raw is None:
            return self.default
        last = self._last
        if last is not None and last[0] == raw:
            return last[1]
        record = self.record.from_list(decode(raw))
        if all(type(value) in _IMMUTABLE for value in record.to_list()):
            self._last = (bytes(raw), record)
        return record

    def put(self, state: Overlay, value: R) -> None:
        state.set(self.key, encode(value.to_list()))

    def kill(self, state: Overlay) -> None:
        state.delete(self.key)


# ---------------------------------------------------------------- call arguments


@dataclass(frozen=True)
class ArgCheck:
    """Validation of one call argument as decoded from an extrinsic."""

    type_name: str
    check: Callable[[Any], bool]


def _is_int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_bytes(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, bytes) and lo <= len(v) <= hi


def _is_str(hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v.encode()) <= hi


AccountId = Annotated[bytes, ArgCheck("AccountId (32 bytes)", _is_bytes(32, 32))]
Hash = Annotated[bytes, ArgCheck("Hash (32 bytes)", _is_bytes(32, 32))]
Balance = Annotated[int, ArgCheck("Balance (u64)", _is_int(0, 2**64 - 1))]
U32 = Annotated[int, ArgCheck("u32", _is_int(0, 2**32 - 1))]
U64 = Annotated[int, ArgCheck("u64", _is_int(0, 2**64 - 1))]
Text = Annotated[str, ArgCheck("text (≤ 256 bytes)", _is_str(256))]
Bytes = Annotated[bytes, ArgCheck("bytes (≤ 16 KiB)", _is_bytes(0, 16384))]


def arg_checks(fn: Callable) -> list[tuple[str, ArgCheck]]:
    """The (name, check) list of a call's arguments after `ctx`, from its annotations."""
    hints = typing.get_type_hints(fn, include_extras=True)
    checks = []
    for name in list(fn.__code__.co_varnames[: fn.__code__.co_argcount])[1:]:
        hint = hints.get(name)
        meta = getattr(hint, "__metadata__", ())
        found = [m for m in meta if isinstance(m, ArgCheck)]
        if not found:
            raise TypeError(f"call {fn.__qualname__} argument {name!r} lacks an ArgCheck annotation")
        checks.append((name, found[0]))
    return checks


@dataclass(frozen=True)
class CallInfo:
    """A dispatchable call's function, weight and argument checks."""

    function: Callable
    weight: int
    args: list[tuple[str, ArgCheck]]


def call(weight: int) -> Callable[[Callable], Callable]:
    """Mark a static function `(ctx, *args)` of a module as dispatchable with the given weight."""

    def mark(fn: Callable) -> Callable:
        target = fn.__func__ if isinstance(fn, staticmethod) else fn
        target.__arena_call_weight__ = weight  # type: ignore[attr-defined]
        return fn

    return mark


# ---------------------------------------------------------------- context and modules


@dataclass
class Context:
    """What a call or hook sees: the state, the block, the caller, and the event sink."""

    state: Overlay
    block_number: int
    timestamp_ms: int
    author: bytes
    origin: bytes | None = None
    phase: int = -1
    events: list[Event] = field(default_factory=list)

    def deposit_event(self, module: str, name: str, *data: Any) -> None:
        self.events.append(Event(self.phase, module, name, list(data)))


class Module:
    """Base of every runtime module; subclasses fill in the form."""

    name: ClassVar[str]
    storage: ClassVar[tuple] = ()
    errors: ClassVar[tuple[type[DispatchError], ...]] = ()
    events: ClassVar[dict[str, list[str]]] = {}

    @classmethod
    def calls(cls) -> dict[str, CallInfo]:
        found: dict[str, CallInfo] = {}
        for attr in dir(cls):
            fn = getattr(cls, attr)
            weight = getattr(fn, "__arena_call_weight__", None)
            if weight is not None:
                found[attr] = CallInfo(fn, weight, arg_checks(fn))
        return found

    @staticmethod
    def on_initialize(ctx: Context) -> None:
        """Runs at the start of every block."""

    @staticmethod
    def on_finalize(ctx: Context) -> None:
        """Runs at the end of every block."""

    @staticmethod
    def genesis(ctx: Context, config: dict) -> None:
        """Writes this module's genesis state from its genesis.json section."""
