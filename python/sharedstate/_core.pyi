# Type stubs for sharedstate._core, the compiled module (hand-kept: tests/test_typing.py
# checks that every name here exists in the module and every module name is here).
# The module is private: use the sharedstate package, whose classes derive from these.
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

from typing_extensions import Buffer

__version__: str
PLATFORM: Final[Literal["posix", "win32"]]

# ---------------------------------------------------------------- exceptions
class LayoutMismatchError(ValueError):
    """The segment's layout is not the one asked for."""

class CorruptSegmentError(ValueError):
    """The segment's header fails validation; nothing in it was used."""

class WrongKindError(CorruptSegmentError):
    """The name belongs to another kind of sharedstate object."""

# A field as the bindings exchange it: (name, kind, itemsize, offset, count),
# kind one of 'i' 'u' 'f' 'b' 'S' 'V'.
_FieldTuple = tuple[str, str, int, int, int]

# ---------------------------------------------------------------- SharedState's compiled half
class StateCore:
    """The compiled half of sharedstate.SharedState (hot calls through CPython's own
    calling conventions)."""

    @property
    def version(self) -> int:
        """Number of committed writes."""

    def read(self) -> Any:
        """One consistent snapshot: a named tuple of the layout's fields (its type is made per
        layout at run time, so it is typed Any; attribute and index access both work)."""

    def read_into(self, buf: Buffer, /) -> int:
        """A consistent copy into a writable buffer of layout.size bytes; returns the version."""

    def write(self, *values: Any, **fields: Any) -> None:
        """write(**fields) or write(values): one atomic update; fields not named keep their value."""

    # Each payload field is an attribute (a Field descriptor on the per-layout subclass),
    # read and written atomically: st.x; st.x = 5.
    def __getattr__(self, name: str) -> Any: ...
    def __setattr__(self, name: str, value: Any) -> None: ...

class Field:
    """Field(position, name): a SharedState payload field, read and written atomically."""

    def __init__(self, position: int, name: str, /) -> None: ...
    def __get__(self, obj: StateCore | None, owner: type | None = None, /) -> Any: ...
    def __set__(self, obj: StateCore, value: Any, /) -> None: ...

class MappedBuffer:
    """A buffer over a live mapping; it keeps the mapping alive after close()."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

# ---------------------------------------------------------------- state (private helpers)
def _state_create(self: StateCore, name: str, fields: Sequence[_FieldTuple], size: int, align: int,
                  exist_ok: bool, persistent: bool, /) -> None: ...
def _state_open(self: StateCore, name: str, fields: Sequence[_FieldTuple] | None, size: int, align: int, /) -> None: ...
def _state_attach_raw(self: StateCore, name: str, fields: Sequence[_FieldTuple], size: int, align: int,
                      create: bool, /) -> None: ...
def _state_set_snapshot_type(self: StateCore, type: type[tuple[Any, ...]] | None, /) -> None: ...
def _state_layout(self: StateCore, /) -> tuple[list[_FieldTuple], int, int]: ...
def _state_wait(self: StateCore, since: int | None, timeout: float | None, spin: float | None, /) -> int: ...
def _state_close(self: StateCore, /) -> None: ...
def _state_closed(self: StateCore, /) -> bool: ...
def _state_buffer(self: StateCore, writable: bool, /) -> MappedBuffer: ...
def _state_info(self: StateCore, /) -> dict[str, Any]: ...
def _state_set_lock_timeout(self: StateCore, seconds: float, /) -> None: ...
def _state_lock_timeout(self: StateCore, /) -> float: ...
def _state_name(self: StateCore, /) -> str: ...

# ---------------------------------------------------------------- segments by name
def state_unlink(name: str) -> None:
    """Remove the name now (FileNotFoundError if missing); holders keep their mapping."""

def state_remove_if_stale(name: str) -> bool:
    """Remove a state/queue segment whose holders have all exited (not persistent). True if removed."""

def segment_exists(name: str, /) -> bool: ...
def segment_held(name: str, /) -> bool:
    """Is any process holding it? (a brief non-blocking lock probe on Linux) False if missing."""
