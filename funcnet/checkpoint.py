"""Checkpoints: any pytree of arrays saved to, and loaded back from, a safetensors file.

The file is written and read by this module from the safetensors format description, never
with pickle, so loading a file runs no code from it::

    8 bytes   N, the header length (unsigned little-endian)
    N bytes   UTF-8 JSON: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}}
              padded with spaces so that the data starts 8-byte aligned
    the rest  the tensors' raw little-endian C-order bytes, back to back

A tensor's name is its leaf path (``tree.paths``, e.g. ``params/0/W``), so the file can be read
by the ``safetensors`` package and other tools. Python and NumPy scalar leaves (a step count)
are stored as 0-d arrays. funcnet's own ``__metadata__`` entries start with ``funcnet.``: the
format tag and version, the tree structure (for people; loading matches by path) and a
sha256 of the header and data, so flipped bytes anywhere are caught.

:func:`load` takes a template tree ``like`` (the freshly initialised state, say): it gives
back a tree of ``like``'s structure with each leaf cast to the dtype of, and moved to the
backend of, the matching ``like`` leaf.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from funcnet import backend, tree

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load", "read_metadata", "save"]

FORMAT = "funcnet.checkpoint"
VERSION = "1"

_PREFIX = "funcnet."
_FORMAT_KEY = "funcnet.format"
_VERSION_KEY = "funcnet.version"
_STRUCTURE_KEY = "funcnet.structure"
_DIGEST_KEY = "funcnet.sha256"
_METADATA = "__metadata__"
# The safetensors library refuses larger headers; a bigger length means a foreign file.
_MAX_HEADER = 100_000_000

_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


class CheckpointError(ValueError):
    """A file that is not a valid checkpoint, or one that does not fit the template tree."""


class _Entry(NamedTuple):
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


# ---------------------------------------------------------------------------------- save


def save(
    path: str | os.PathLike[str],
    tree_: Any,
    *,
    dtype: Any = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tree_`` to ``path`` atomically; ``dtype`` (e.g. ``"float16"``) stores floating leaves in it."""
    storage = _storage_dtype(dtype)
    user = _checked_metadata(metadata)
    names = tree.paths(tree_)
    _check_names(names, "the saved tree")
    arrays = [_stored(name, leaf, storage) for name, leaf in tree.leaves_with_paths(tree_)]
    meta = {_FORMAT_KEY: FORMAT, _VERSION_KEY: VERSION, _STRUCTURE_KEY: str(tree.structure(tree_)), **user}
    # Widest items first: every tensor then starts aligned to its item size in the file.
    order = sorted(range(len(arrays)), key=lambda i: -arrays[i].dtype.itemsize)
    header: dict[str, Any] = {_METADATA: meta}
    offset = 0
    for i in order:
        header[names[i]] = {
            "dtype": _CODES[arrays[i].dtype],
            "shape": list(arrays[i].shape),
            "data_offsets": [offset, offset + arrays[i].nbytes],
        }
        offset += arrays[i].nbytes
    chunks = [_as_bytes(arrays[i]) for i in order]
    meta[_DIGEST_KEY] = _digest(header, chunks)
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)
    if len(text) > _MAX_HEADER:
        raise ValueError(f"the checkpoint header would be {len(text)} bytes; safetensors reads {_MAX_HEADER}")
    write_atomic(os.fspath(path), [len(text).to_bytes(8, "little"), text, *chunks])


def _storage_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    storage = np.dtype(dtype)
    if storage.kind != "f" or storage.newbyteorder("<") not in _CODES:
        raise ValueError(f"dtype= must be a floating dtype (float16, float32, float64), got {dtype!r}")
    return storage


def _checked_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str (safetensors stores text), got {key!r}: {value!r}")
        if key.startswith(_PREFIX):
            raise ValueError(f"metadata key {key!r} is reserved: keys starting {_PREFIX!r} are funcnet's own")
    return dict(metadata)


def _check_names(names: list[str], what: str) -> None:
    """Tensors are named by leaf path, so two leaves with one path would overwrite each other."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(
                f"two leaves of {what} have the path {name!r} (a dict key containing '/', or keys such as "
                "1 and '1'); rename them so every leaf path is unique"
            )
        if name == _METADATA:
            raise ValueError(f"a leaf of {what} has the path {_METADATA!r}, which safetensors reserves")
        seen.add(name)


def _stored(name: str, leaf: Any, storage: np.dtype | None) -> np.ndarray:
    """The leaf as a contiguous little-endian host array in its storage dtype."""
    host = backend.to_numpy(leaf)
    if not isinstance(host, np.ndarray) or host.dtype.newbyteorder("<") not in _CODES:
        kind = host.dtype if isinstance(host, np.ndarray) else type(leaf).__name__
        raise TypeError(
            f"leaf {name!r} of type {type(leaf).__name__} ({kind}) cannot be stored: a checkpoint holds "
            "arrays and scalars of bool, integer and float16/32/64 dtypes"
        )
    if storage is not None and host.dtype.kind == "f" and host.dtype != storage:
        host = _narrowed(name, host, storage)
    return np.asarray(host, dtype=host.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d


def _narrowed(name: str, host: np.ndarray, storage: np.dtype) -> np.ndarray:
    """``host`` cast to ``storage``; finite values that would become inf are an error, not a surprise."""
    with np.errstate(over="ignore"):
        cast = host.astype(storage)
    if np.any(np.isfinite(host) & ~np.isfinite(cast)):
        raise ValueError(
            f"leaf {name!r} has values beyond the range of {storage} (max {np.finfo(storage).max}); "
            "save it without dtype= or rescale it"
        )
    return cast


def _as_bytes(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a contiguous array: writable to a file and hashable without a copy."""
    return array.reshape(-1).view(np.uint8)


def _digest(header: dict[str, Any], chunks: list[Any]) -> str:
    """sha256 of the header (without the digest itself, in a canonical JSON form) and the data."""
    meta = {k: v for k, v in header[_METADATA].items() if k != _DIGEST_KEY}
    canonical = json.dumps({**header, _METADATA: meta}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii"))
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: str, chunks: list[Any]) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    # said up front: the errors of mkstemp and os.replace would name the temporary file instead
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a checkpoint path must name a file, not a folder", path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "no folder to save the checkpoint in (create it first)", folder)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except BaseException:  # Ctrl-C mid-write too: leave no temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _file_mode(path: str) -> int:
    """The mode the file would have had without mkstemp's private 0600: the old file's, or the umask's."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    return 0o666 & ~_umask()


def _umask() -> int:
    # os.umask can only be read by setting it, which races with other threads; Linux reports it.
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX only; Windows cannot open a folder)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # some file systems refuse; the file's data is already synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------- load


def load(path: str | os.PathLike[str], like: Any) -> Any:
    """The tree saved at ``path``, in ``like``'s structure, dtypes and backends."""
    path = os.fspath(path)
    with _open(path) as f:
        header, entries, data_length = _read_header(f, path)
        data = f.read()
    if len(data) != data_length:
        raise CheckpointError(f"{path} changed while being read ({len(data)} data bytes, not {data_length})")
    _check_digest(header, data, path)
    leaves, spec = tree.flatten(like)
    names = tree.paths(like)
    _check_names(names, "`like`")
    _check_same_names(names, entries, path)
    restored = [
        _restored(name, entries[name], data, leaf, path) for name, leaf in zip(names, leaves, strict=True)
    ]
    return tree.unflatten(spec, restored)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The file's ``__metadata__`` (the user's entries and funcnet's ``funcnet.*``); reads the header only."""
    path = os.fspath(path)
    with _open(path) as f:
        header, _, _ = _read_header(f, path)
    return dict(header.get(_METADATA, {}))


def _open(path: str) -> Any:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no checkpoint file at this path", path) from None


def _read_header(f: Any, path: str) -> tuple[dict[str, Any], dict[str, _Entry], int]:
    """The parsed header, its tensor entries (checked against the file size) and the data length."""
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(8)
    if len(prefix) < 8:
        what = "an empty file" if not prefix else f"only {len(prefix)} bytes long"
        raise CheckpointError(f"{path} is {what}, not a checkpoint (a safetensors file starts with 8 bytes)")
    length = int.from_bytes(prefix, "little")
    if length > min(size - 8, _MAX_HEADER):
        raise CheckpointError(
            f"{path}: the header length field says {length} bytes but the file has {size - 8} after it; "
            f"{_guess_format(prefix)}"
        )
    header = _parsed(f.read(length), path)
    entries = {name: _entry(name, value, path) for name, value in header.items() if name != _METADATA}
    _check_metadata(header.get(_METADATA, {}), path)
    data_length = size - 8 - length
    _check_layout(entries, data_length, path)
    return header, entries, data_length


def _guess_format(prefix: bytes) -> str:
    """Why the header length is impossible, with a hint when the file starts like a known format."""
    if prefix.startswith(b"PK\x03\x04"):
        return "it is a zip archive (a NumPy .npz file?), not a safetensors checkpoint"
    if prefix.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy file, not a safetensors checkpoint"
    hint = ""
    if prefix[0] == 0x80 and 2 <= prefix[1] <= 5:  # a pickle's PROTO opcode, yet a length could start so too
        hint = " (it starts like a pickle file, which funcnet never loads: unpickling can run code)"
    return f"the file is truncated or is not a safetensors checkpoint{hint}"


def _parsed(raw: bytes, path: str) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: the header is not UTF-8 text ({err}); the file is corrupt") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: the header is not valid JSON ({err}); the file is corrupt") from None
    except _DuplicateKeyError as err:
        raise CheckpointError(f"{path}: the header names tensor {err.args[0]!r} twice") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is JSON but not an object; the file is corrupt")
    return header


class _DuplicateKeyError(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a repeated key would silently shadow a tensor, so it is an error."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _entry(name: str, value: Any, path: str) -> _Entry:
    """One tensor's header entry, checked on its own."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the header entry of tensor {name!r} is not an object")
    code, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if code not in _DTYPES:
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {code!r}, which funcnet cannot read "
            f"(known: {', '.join(_DTYPES)})"
        )
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise CheckpointError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    dtype = _DTYPES[code]
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise CheckpointError(
            f"{path}: tensor {name!r} spans bytes {begin}..{end} ({end - begin} bytes) but a {code} "
            f"tensor of shape {tuple(shape)} needs {math.prod(shape) * dtype.itemsize}"
        )
    return _Entry(dtype, tuple(shape), begin, end)


def _check_metadata(metadata: Any, path: str) -> None:
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: __metadata__ must map str to str, got {metadata!r:.200}")
    tag, version = metadata.get(_FORMAT_KEY), metadata.get(_VERSION_KEY)
    if tag is not None and tag != FORMAT:
        raise CheckpointError(f"{path}: unknown format tag {tag!r} (expected {FORMAT!r})")
    if tag is not None and version != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this funcnet reads version {VERSION!r}"
        )


def _check_layout(entries: dict[str, _Entry], data_length: int, path: str) -> None:
    """Every tensor inside the data, no two overlapping, no bytes unaccounted for."""
    for name, e in entries.items():
        if e.end > data_length:
            raise CheckpointError(
                f"{path} is truncated: tensor {name!r} ends at byte {e.end} of the data, "
                f"which holds only {data_length} bytes"
            )
    position, previous = 0, None
    for name, e in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if e.begin < position:
            raise CheckpointError(f"{path}: tensors {previous!r} and {name!r} overlap in the data")
        if e.begin > position:
            raise CheckpointError(f"{path}: data bytes {position}..{e.begin} belong to no tensor")
        position, previous = e.end, name
    if position != data_length:
        raise CheckpointError(f"{path}: {data_length - position} bytes after the last tensor belong to none")


def _check_digest(header: dict[str, Any], data: bytes, path: str) -> None:
    """Files written by other tools carry no digest and are taken as they are; ours must have one."""
    metadata = header.get(_METADATA, {})
    expected = metadata.get(_DIGEST_KEY)
    if expected is None and _FORMAT_KEY in metadata:  # the digest's own key was damaged
        raise CheckpointError(f"{path}: a funcnet checkpoint lacking its {_DIGEST_KEY!r}; header corrupt")
    if expected is not None and _digest(header, [data]) != expected:
        raise CheckpointError(f"{path}: checksum mismatch (sha256); the file is corrupt")


def _check_same_names(names: list[str], entries: dict[str, _Entry], path: str) -> None:
    wanted = set(names)
    missing = [n for n in names if n not in entries]
    unexpected = sorted(n for n in entries if n not in wanted)
    if not missing and not unexpected:
        return
    detail = []
    if missing:
        detail.append(f"leaf {missing[0]!r} of `like` is missing from the file ({len(missing)} missing)")
    if unexpected:
        detail.append(f"the file has unexpected leaf {unexpected[0]!r} ({len(unexpected)} unexpected)")
    raise CheckpointError(f"{path} does not fit `like` (another architecture?): {'; '.join(detail)}")


def _kind(dtype: np.dtype) -> str:
    return {"b": "bool", "i": "integer", "u": "integer", "f": "floating"}[dtype.kind]


def _template(name: str, leaf: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """The host dtype and shape of a ``like`` leaf without copying it off its device."""
    if isinstance(leaf, bool | int | float | np.generic):
        host = np.asarray(leaf)
        return host.dtype, host.shape
    if not hasattr(leaf, "dtype") or not hasattr(leaf, "shape"):
        raise TypeError(f"leaf {name!r} of `like` is a {type(leaf).__name__}, not an array or a number: "
                        "`like` must be a tree of arrays and scalars (the freshly initialised state, say)")
    return backend.numpy_dtype(leaf.dtype), tuple(leaf.shape)


def _restored(name: str, entry: _Entry, data: bytes, leaf: Any, path: str) -> Any:
    """The stored tensor checked against the ``like`` leaf, cast to its dtype, on its backend."""
    dtype, shape = _template(name, leaf)
    if entry.shape != shape:
        raise CheckpointError(f"{path}: leaf {name!r} should have shape {shape}, the file has {entry.shape}")
    if dtype.kind not in "biuf" or _kind(dtype) != _kind(entry.dtype):
        raise CheckpointError(f"{path}: leaf {name!r} should be {dtype}, the file has {entry.dtype.name}")
    count = math.prod(entry.shape)
    stored = np.frombuffer(data, dtype=entry.dtype, count=count, offset=entry.begin).reshape(entry.shape)
    if entry.dtype.kind == "b":  # a foreign file's bool bytes may be any value; NumPy expects 0 or 1
        stored = np.asarray(stored.view(np.uint8) != 0)  # asarray: a 0-d comparison gives a scalar
    host = stored.astype(dtype)  # a copy: writable, native byte order, not tied to the file's bytes
    if dtype.kind in "iu" and not np.array_equal(host, stored):
        raise CheckpointError(
            f"{path}: leaf {name!r} has values that do not fit {dtype} (the file has {entry.dtype.name})"
        )
    return _like(host, leaf)


def _like(host: np.ndarray, leaf: Any) -> Any:
    """``host`` in the form of the ``like`` leaf: a Python or NumPy scalar, or an array on its backend."""
    if isinstance(leaf, bool | int | float):
        return type(leaf)(host[()])
    if isinstance(leaf, np.generic):
        return host[()]
    if isinstance(leaf, np.ndarray):
        return host
    return backend.put(host, backend.namespace(leaf))
