"""The one exception hierarchy of the Atlas format.

Every error names where it happened (file, shard, block, example, byte offset) so
that a user can find the bad bytes; an example is named one way everywhere
(``format_example``). The reference implementation raises these types; the
validator turns them into findings.
"""

from __future__ import annotations

from os import PathLike
from typing import Any


def _known(**named: int | str | None) -> list[str]:
    """'shard 3', 'block 5', ... for the parts that are known, in the order given."""
    return [f"{name} {value}" for name, value in named.items() if value is not None]


def format_example(index: int | None, shard: int | str | None = None, block: int | None = None,
                   position: int | None = None) -> str:
    """The one way errors and findings name an example: 'example 1234 (shard 000003, block 5, position 2)'.

    ``index`` is the example's index in the whole dataset (what ``ds[i]`` takes), ``position`` its place in
    its block; a reader and the validator use this text so that both name a bad example alike.
    """
    inner = _known(shard=shard, block=block, position=position)
    head = "example" if index is None else f"example {index}"
    return f"{head} ({', '.join(inner)})" if inner else head


def format_location(path: str | None, shard: int | str | None, block: int | None, example: int | None,
                    offset: int | None, *, index: int | None = None, position: int | None = None) -> str:
    """'file, example i (shard s, block b, position p), byte offset o' with the parts that are known (errors and
    findings); without an example, 'file, shard s, block b, byte offset o'.

    ``example`` is the example's number within its shard; it is named only when neither ``index`` nor
    ``position`` is known (the text then says so).
    """
    parts: list[str] = []
    if path is not None:
        parts.append(path)
    if index is not None or position is not None:
        parts.append(format_example(index, shard, block, position))
    else:
        parts += _known(shard=shard, block=block)
        if example is not None:
            parts.append(f"example {example} of the shard")
    if offset is not None:
        parts.append(f"byte offset {offset}")
    return ", ".join(parts)


class AtlasError(Exception):
    """Base of every error raised for Atlas data (never raised bare for input errors)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        offset: int | None = None,
        shard: int | str | None = None,
        block: int | None = None,
        example: int | None = None,
        position: int | None = None,
        index: int | None = None,
        rule: str | None = None,
        pickle_offset: int | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.offset = offset
        self.shard = shard
        self.block = block
        self.example = example    # number within the shard
        self.position = position  # position within the block
        self.index = index        # index in the whole dataset (ds[i]), known to the dataset reader
        self.rule = rule
        self.pickle_offset = pickle_offset
        super().__init__(self._render())

    def location(self) -> str:
        """Where the error is, as 'file, example i (shard s, block b, position p), byte offset o'."""
        return format_location(self.path, self.shard, self.block, self.example, self.offset, index=self.index,
                               position=self.position)

    def _render(self) -> str:
        where = self.location()
        text = self.message
        if self.pickle_offset is not None:
            text += f" (byte {self.pickle_offset} of the pickle)"
        if self.rule is not None:
            text += f" [pickle policy rule: {self.rule}]"
        return f"{where}: {text}" if where else text

    def relocated(self, **where: Any) -> AtlasError:
        """The same error (same type, rule, pickle offset) located at ``where`` (file, shard, block, example,
        offset); the fields already known are kept. Engines raise errors knowing the pickle, readers add
        where that pickle is."""
        err = type(self).__new__(type(self))
        state = self.__dict__.copy()
        for key, value in where.items():
            if state.get(key) is None:
                state[key] = str(value) if key == "path" and value is not None else value
        Exception.__init__(err, self.message)
        err.__dict__.update(state)
        err.args = (err._render(),)
        return err

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword-only location when errors cross DataLoader worker processes.
        return (_rebuild_error, (type(self), self.message, self.__dict__.copy()))


def _rebuild_error(cls: type[AtlasError], message: str, state: dict[str, Any]) -> AtlasError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    err.args = (err._render(),)
    return err


class FormatError(AtlasError):
    """Bytes or metadata that do not follow spec/FORMAT.md (bad magic, bad header, bad JSON...)."""


class MetadataError(FormatError):
    """A metadata file is not valid JSON or does not match its JSON Schema."""


class ChecksumError(FormatError):
    """Stored bytes do not match their recorded checksum: the data is corrupt."""


class VersionError(FormatError):
    """A format version this implementation does not read."""


class CodecError(FormatError):
    """An unknown codec, or a block that its codec cannot decode."""


class LimitError(FormatError):
    """A declared size or count above the format's limits (zip bomb, absurd header)."""


class MissingShardError(AtlasError):
    """A shard, or a file of a shard, that the metadata requires is absent."""


class IncompleteDatasetError(AtlasError):
    """A folder without root metadata: a write that never finished, or not a dataset."""


class DatasetLockedError(AtlasError):
    """Another writer holds the dataset's lock (V2-WRITE-0, V2-APPEND-0): refused before anything is written.

    ``path`` is the lock file; ``holder_pid`` and ``holder_host`` name the writer holding it, when known."""

    def __init__(self, message: str, *, holder_pid: int | None = None, holder_host: str | None = None,
                 **where: Any) -> None:
        self.holder_pid = holder_pid
        self.holder_host = holder_host
        super().__init__(message, **where)


class UnsafePickleError(AtlasError):
    """Safe loading refused a pickle: a global outside the pickle policy, or a call, BUILD, key or
    nested stream the policy does not admit (``rule`` names which, spec/FORMAT.md section 5)."""

    def __init__(self, message: str, *, module: str | None = None, name: str | None = None, **where: Any) -> None:
        self.module = module
        self.name = name
        super().__init__(message, **where)
