"""Checkpoints: any pytree of arrays saved to, and loaded back from, a safetensors file.

The bytes are written and read by the ``safetensors`` package (``safetensors.numpy``), never
with pickle, so loading a file runs no code from it. A tensor's name is its leaf path
(``tree.paths``, e.g. ``params/0/W``), so other safetensors tools read the file too. Python and
NumPy scalar leaves (a step count) are stored as 0-d arrays.

What funcnet adds to the format:

* restoring into a template tree ``like`` (`load`): a tree of ``like``'s structure, each
  leaf checked against, cast to the dtype of and moved to the backend of the matching leaf;
* the atomic write (`funcnet.io.write_atomic`: temporary file, fsync, rename);
* its own ``__metadata__`` entries, starting with ``funcnet.``: the format tag and version, the
  tree structure (for people; loading matches by path) and a sha256 of the header and data, so
  flipped bytes anywhere are caught;
* float16 (or float64) storage of floating leaves (``save(..., dtype="float16")``), refusing
  values that would overflow, and refusing a load that would narrow a value out of range;
* errors that name the file, the leaf and what is wrong, for files that are broken, foreign,
  hostile or not files at all (a FIFO is refused before it is opened: opening it could block).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import safetensors
import safetensors.numpy

from funcnet import backend, tree
from funcnet.io import fs_path, open_regular, write_atomic

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

# The safetensors dtype codes NumPy holds (BF16 and the F8 kinds have no NumPy dtype).
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
    """A file that is not a valid checkpoint, or one that does not fit the template tree.

    Examples:
        >>> issubclass(CheckpointError, ValueError)
        True
    """


class _Entry(NamedTuple):
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


# ---------------------------------------------------------------------------------- save


def save(
    path: str | bytes | os.PathLike[Any],
    tree_: Any,
    *,
    dtype: Any = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tree_`` to ``path`` as a safetensors file, atomically.

    Args:
        path: the file to write: absent, a regular file (replaced whole) or a link to one
            (its target is replaced, the link stays); str, bytes (as ``os`` takes them) or path-like.
        tree_: a pytree of arrays (any backend) and Python or NumPy scalars.
        dtype: a floating dtype (``"float16"``, ``"float32"``, ``"float64"``) to store the
            floating leaves in; integer and bool leaves keep theirs. None keeps every dtype.
        metadata: text entries for the file's ``__metadata__``; keys may not start with ``funcnet.``.

    Raises:
        TypeError: a leaf that is not an array or scalar of a storable dtype; metadata not str to str;
            ``dtype`` not a dtype at all; ``path`` not str, bytes or path-like.
        ValueError: two leaves with one path; a value beyond ``dtype``'s range; ``dtype`` not a
            floating dtype; ``path`` a FIFO, a device or another non-regular file.
        FileNotFoundError: an empty path, or a missing folder.
        IsADirectoryError: ``path`` names a folder.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "params.safetensors")
        >>> save(path, {"W": np.ones((2, 3), np.float32), "step": 7}, metadata={"note": "demo"})
        >>> read_metadata(path)["note"]
        'demo'
    """
    path = fs_path(path, "checkpoint")
    storage = _storage_dtype(dtype)
    user = _checked_metadata(metadata)
    names = tree.paths(tree_)
    _check_names(names, "the saved tree")
    arrays = {name: _stored(name, leaf, storage) for name, leaf in tree.leaves_with_paths(tree_)}
    meta = {_FORMAT_KEY: FORMAT, _VERSION_KEY: VERSION, _STRUCTURE_KEY: str(tree.structure(tree_)), **user}
    # safetensors lays the tensors out (offsets do not depend on the metadata); the digest of that
    # header and data then goes into the header, which is written again with sorted keys:
    # safetensors writes ``__metadata__`` in hash-map order, which changes from process to process,
    # and the same tree must give the same bytes (seeded runs are compared byte for byte).
    try:
        blob = safetensors.numpy.save(arrays, metadata=meta)
    except safetensors.SafetensorError as err:  # its own type (no ValueError): said in ours, with the cause
        raise ValueError(f"the checkpoint cannot be written: {err} (safetensors reads headers up to "
                         f"{_MAX_HEADER} bytes: keep metadata small)") from None
    length = int.from_bytes(blob[:8], "little")
    header, data = json.loads(blob[8 : 8 + length]), memoryview(blob)[8 + length :]
    header[_METADATA][_DIGEST_KEY] = _digest(header, data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 8)  # safetensors' own padding: the data starts 8-byte aligned
    if len(text) > _MAX_HEADER:
        raise ValueError(f"the checkpoint header would be {len(text)} bytes; safetensors reads {_MAX_HEADER}")
    write_atomic(path, [len(text).to_bytes(8, "little"), text, data], what="checkpoint")


def _storage_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    try:
        storage = np.dtype(dtype)
    except TypeError:  # NumPy's own message ("data type 'x' not understood") names no argument
        raise TypeError(f"dtype= must be a floating dtype (float16, float32, float64) or None, got {dtype!r}, "
                        "which is not a NumPy dtype") from None
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
        host = _narrowed(name, host, storage, "save it without dtype= or rescale it")
    return np.asarray(host, dtype=host.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d


def _narrowed(name: str, host: np.ndarray, dtype: np.dtype, advice: str) -> np.ndarray:
    """``host`` cast to the float ``dtype``; finite values that would become inf are an error, not a surprise."""
    with np.errstate(over="ignore"):
        cast = host.astype(dtype)
    if dtype.itemsize < host.dtype.itemsize and np.any(np.isfinite(host) & ~np.isfinite(cast)):
        raise ValueError(
            f"leaf {name!r} has values beyond the range of {dtype} (max {np.finfo(dtype).max}); {advice}"
        )
    return cast


def _digest(header: dict[str, Any], data: bytes | memoryview) -> str:
    """sha256 of the header (without the digest itself, in a canonical JSON form) and the data."""
    meta = {k: v for k, v in header.get(_METADATA, {}).items() if k != _DIGEST_KEY}
    canonical = json.dumps({**header, _METADATA: meta}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii"))
    digest.update(data)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- load


def load(path: str | bytes | os.PathLike[Any], like: Any) -> Any:
    """The tree saved at ``path``, in ``like``'s structure, dtypes and backends.

    Args:
        path: a checkpoint written by `save` (or any safetensors file whose tensor names
            are ``like``'s leaf paths).
        like: the template: a tree of arrays and scalars of the saved structure (the freshly
            initialised state, say); its values are not used.

    Returns:
        A new tree of ``like``'s structure; each leaf of the matching ``like`` leaf's type, dtype
        and backend (a float16-stored leaf comes back in its template's float32, say).

    Raises:
        FileNotFoundError: no file at ``path``.
        IsADirectoryError: ``path`` is a folder.
        CheckpointError: not a regular file, not a safetensors file (a pickle, an ``.npz``),
            corrupt (checksum, truncation), or not fitting ``like`` (a leaf missing, unexpected,
            of another shape or dtype kind, or with values out of the template dtype's range).

    Examples:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "params.safetensors")
        >>> save(path, {"W": np.arange(3.0)}, dtype="float16")
        >>> load(path, like={"W": np.zeros(3, np.float32)})
        {'W': array([0., 1., 2.], dtype=float32)}
    """
    path = fs_path(path, "checkpoint")
    blob = _read(path, header_only=False)
    header, data = _split(blob, path)
    arrays = _decode(blob, header, path)
    _check_digest(header, data, path)
    leaves, spec = tree.flatten(like)
    names = tree.paths(like)
    _check_names(names, "`like`")
    _check_same_names(names, arrays, path)
    restored = [_restored(name, arrays[name], leaf, path) for name, leaf in zip(names, leaves, strict=True)]
    return tree.unflatten(spec, restored)


def read_metadata(path: str | bytes | os.PathLike[Any]) -> dict[str, str]:
    """The file's ``__metadata__``: the user's entries and funcnet's ``funcnet.*``; reads the header only.

    Args:
        path: a safetensors file.

    Returns:
        The metadata (``{}`` for a file without any).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: not a regular file, or its header is not a safetensors header.

    Examples:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "c.safetensors")
        >>> save(path, np.zeros(2), metadata={"epoch": "3"})
        >>> sorted(read_metadata(path))
        ['epoch', 'funcnet.format', 'funcnet.sha256', 'funcnet.structure', 'funcnet.version']
    """
    path = fs_path(path, "checkpoint")
    header, _ = _split(_read(path, header_only=True), path)
    return dict(header.get(_METADATA, {}))


def _read(path: str, *, header_only: bool) -> bytes:
    """The file's bytes (or its length field and header), from a regular file only."""
    with open_regular(path, what="checkpoint", error=CheckpointError) as f:
        if not header_only:
            return f.read()  # to the end, whatever st_size says (/proc files say 0)
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
        return prefix + f.read(min(length, _MAX_HEADER + 1))


def _split(blob: bytes, path: str) -> tuple[dict[str, Any], memoryview]:
    """The file's parsed, checked header and its data bytes (a view: no copy)."""
    if len(blob) < 8:
        what = "an empty file" if not blob else f"only {len(blob)} bytes long"
        raise CheckpointError(f"{path} is {what}, not a checkpoint (a safetensors file starts with 8 bytes)")
    length, present = int.from_bytes(blob[:8], "little"), len(blob) - 8
    # a header-only read stops after _MAX_HEADER + 1 bytes: a shorter blob is where the file ends
    if length > _MAX_HEADER and present > _MAX_HEADER:
        raise CheckpointError(f"{path}: the header length field says {length} bytes, more than the {_MAX_HEADER} "
                              f"a safetensors header may have; {_guess_format(blob[:8])}")
    if length > present:
        raise CheckpointError(f"{path}: the header length field says {length} bytes but the file has "
                              f"{present} after it; {_guess_format(blob[:8])}")
    header = _parsed(blob[8 : 8 + length], path)
    _check_metadata(header.get(_METADATA, {}), path)
    return header, memoryview(blob)[8 + length :]


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
    except _DuplicateKeyError as err:
        raise CheckpointError(f"{path}: the header names tensor {err.args[0]!r} twice") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, and ints beyond Python's 4300 digits
        raise CheckpointError(f"{path}: the header is not valid JSON ({err}); the file is corrupt") from None
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


def _decode(blob: bytes, header: dict[str, Any], path: str) -> dict[str, np.ndarray]:
    """The tensors, decoded by safetensors; when it refuses the file, the reason in funcnet's words."""
    for name, value in header.items():  # the dtypes NumPy can hold: safetensors.numpy would KeyError
        if name != _METADATA and isinstance(value, dict) and value.get("dtype") not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {value.get('dtype')!r}, which funcnet "
                                  f"cannot read (known: {', '.join(_DTYPES)})")
    try:
        return safetensors.numpy.load(blob)
    except safetensors.SafetensorError as err:
        reason = _explain(header, len(blob) - 8 - int.from_bytes(blob[:8], "little"), path)
        raise CheckpointError(reason or f"{path}: safetensors cannot read it ({err}); the file is corrupt") from None


def _explain(header: dict[str, Any], data_length: int, path: str) -> str | None:
    """What is wrong with a header that safetensors refused: the first bad entry or layout fault."""
    entries = {}
    for name, value in header.items():
        if name == _METADATA:
            continue
        if not isinstance(value, dict):
            return f"{path}: the header entry of tensor {name!r} is not an object"
        code, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            return f"{path}: tensor {name!r} has an invalid shape {shape!r}"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            return f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}"
        begin, end = offsets
        needed = math.prod(shape) * _DTYPES[code].itemsize
        if end - begin != needed:
            return (f"{path}: tensor {name!r} spans bytes {begin}..{end} ({end - begin} bytes) but a {code} "
                    f"tensor of shape {tuple(shape)} needs {needed}")
        if end > data_length:
            return (f"{path} is truncated: tensor {name!r} ends at byte {end} of the data, "
                    f"which holds only {data_length} bytes")
        entries[name] = _Entry(_DTYPES[code], tuple(shape), begin, end)
    position, previous = 0, None
    for name, e in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if e.begin < position:
            return f"{path}: tensors {previous!r} and {name!r} overlap in the data"
        if e.begin > position:
            return f"{path}: data bytes {position}..{e.begin} belong to no tensor"
        position, previous = e.end, name
    if position != data_length:
        return f"{path}: {data_length - position} bytes after the last tensor belong to none"
    return None


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_digest(header: dict[str, Any], data: memoryview, path: str) -> None:
    """Files written by other tools carry no digest and are taken as they are; ours must have one."""
    metadata = header.get(_METADATA, {})
    expected = metadata.get(_DIGEST_KEY)
    if expected is None and _FORMAT_KEY in metadata:  # the digest's own key was damaged
        raise CheckpointError(f"{path}: a funcnet checkpoint lacking its {_DIGEST_KEY!r}; header corrupt")
    if expected is not None and _digest(header, data) != expected:
        raise CheckpointError(f"{path}: checksum mismatch (sha256); the file is corrupt")


def _check_same_names(names: list[str], arrays: Mapping[str, np.ndarray], path: str) -> None:
    wanted = set(names)
    missing = [n for n in names if n not in arrays]
    unexpected = sorted(n for n in arrays if n not in wanted)
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


def _restored(name: str, stored: np.ndarray, leaf: Any, path: str) -> Any:
    """The stored tensor checked against the ``like`` leaf, cast to its dtype, on its backend."""
    dtype, shape = _template(name, leaf)
    if stored.shape != shape:
        raise CheckpointError(f"{path}: leaf {name!r} should have shape {shape}, the file has {stored.shape}")
    if dtype.kind not in "biuf" or _kind(dtype) != _kind(stored.dtype):
        raise CheckpointError(f"{path}: leaf {name!r} should be {dtype}, the file has {stored.dtype.name}")
    if stored.dtype.kind == "b":  # a foreign file's bool bytes may be any value; NumPy expects 0 or 1
        stored = np.asarray(stored.view(np.uint8) != 0)  # asarray: a 0-d comparison gives a scalar
    elif dtype.kind in "iu" and stored.size and not _fits(stored, dtype):
        raise CheckpointError(
            f"{path}: leaf {name!r} has values that do not fit {dtype} (the file has {stored.dtype.name})"
        )
    elif dtype.kind == "f" and dtype.itemsize < stored.dtype.itemsize:
        try:
            return _like(_narrowed(name, stored, dtype, "load it into a wider template"), leaf)
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None
    host = stored.astype(dtype)  # a copy: writable, native byte order, not tied to the file's bytes
    return _like(host, leaf)


def _fits(stored: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every integer of ``stored`` lies in ``dtype``'s range (compared as Python ints: exact)."""
    info = np.iinfo(dtype)
    return info.min <= int(stored.min()) and int(stored.max()) <= info.max


def _like(host: np.ndarray, leaf: Any) -> Any:
    """``host`` in the form of the ``like`` leaf: a Python or NumPy scalar, or an array on its backend."""
    if isinstance(leaf, bool | int | float):
        return type(leaf)(host[()])
    if isinstance(leaf, np.generic):
        return host[()]
    if isinstance(leaf, np.ndarray):
        return host
    return backend.put(host, backend.namespace(leaf))
