"""Restricted unpickling: examples from an untrusted party must not be able to run code.

A pickle can call any importable function. ``SafeUnpickler`` resolves only the globals
of ``atlas_format.allowlist.ALLOWED`` (plus the caller's extra pairs) and applies each
entry's required substitute, so ``torch.storage._load_from_bytes`` goes through
``torch.load(weights_only=True)`` and ``bytearray`` cannot allocate from an integer.
Persistent ids are refused: the format never writes them.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from atlas_format.allowlist import ALLOWED, AllowedGlobal

from .errors import UnsafePickleError

Loads = Callable[[Any], Any]


def _torch_load_weights_only(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _bytearray_bytes_only(*args: Any) -> bytearray:
    if not args:
        return bytearray()
    source = args[0]
    if isinstance(source, str) and len(args) <= 3:
        return bytearray(*args)
    if len(args) == 1 and isinstance(source, (bytes, bytearray, memoryview)):
        return bytearray(source)
    raise UnsafePickleError("builtins.bytearray may only copy bytes or encode a str in safe mode "
                            f"(got {type(source).__name__})", module="builtins", name="bytearray")


_SUBSTITUTES: dict[str, Callable[..., Any]] = {
    "torch_load_weights_only": _torch_load_weights_only,
    "bytes_only": _bytearray_bytes_only,
}


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class admits only allow-listed globals."""

    def __init__(self, file: Any, extra: frozenset[tuple[str, str]]) -> None:
        super().__init__(file)
        self._extra = extra

    def find_class(self, module: str, name: str) -> Any:
        entry: AllowedGlobal | None = ALLOWED.get((module, name))
        if entry is not None and entry.substitute is not None:
            substitute = _SUBSTITUTES.get(entry.substitute)
            if substitute is None:
                raise UnsafePickleError(f"allow-list entry {module}.{name} requires substitute "
                                        f"{entry.substitute!r}, which this reader does not implement",
                                        module=module, name=name)
            return substitute
        if entry is None and (module, name) not in self._extra:
            raise UnsafePickleError(f"refused global {module}.{name}: not on the safe-loading allow-list "
                                    "(pass allowed_globals=[(module, name)] to trust it)",
                                    module=module, name=name)
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: Atlas pickles never contain them")


def make_loads(safe: bool, allowed_globals: Iterable[tuple[str, str]] = ()) -> Loads:
    """The deserializer for examples: pickle.loads, or the restricted one when ``safe``."""
    if not safe:
        return pickle.loads
    extra = frozenset((str(m), str(n)) for m, n in allowed_globals)

    def safe_loads(data: Any) -> Any:
        return SafeUnpickler(io.BytesIO(data), extra).load()

    return safe_loads
