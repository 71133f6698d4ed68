"""Files written whole or not at all, and files read only when they are regular files.

`write_atomic` writes to a short-named temporary file beside the destination, flushes
and fsyncs it, renames it over the destination and fsyncs the folder: a reader (or a process
restarted after a crash) sees the old file or the new one, never a torn one. A symbolic link is
written through: its target gets the new content, the link stays. Anything that is not a
regular file (a FIFO, a device, a socket) is refused, so that a save can never replace
``/dev/null`` or block on a pipe.

Every error names the caller's path, never the temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO

__all__ = ["check_destination", "file_kind", "fs_path", "open_regular", "write_atomic"]

# The temporary name keeps this many characters of the destination's name: enough to tell
# whose it is, short enough that a 255-byte destination name still leaves room.
_NAME_KEPT = 32

_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a FIFO (named pipe)",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def file_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is, in words; None for a regular file.

    Args:
        mode: an ``os.stat_result.st_mode``.

    Returns:
        ``"a folder"``, ``"a FIFO (named pipe)"``, ``"a character device"``, ... or None when
        ``mode`` is a regular file's.

    Examples:
        >>> import os, stat, tempfile
        >>> file_kind(os.stat(tempfile.gettempdir()).st_mode)
        'a folder'
        >>> file_kind(stat.S_IFREG | 0o644) is None
        True
    """
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS.items():
        if test(mode):
            return kind
    return "not a regular file"


def fs_path(path: str | bytes | os.PathLike[Any], what: str = "file") -> str:
    """``path`` as a str, the way ``os`` takes paths: str, bytes (decoded as ``os.fsdecode`` does) or path-like.

    Args:
        path: the path.
        what: what the file is, in the caller's words, for the error message.

    Returns:
        The path as text.

    Raises:
        TypeError: ``path`` is none of these (the message names ``what``).

    Examples:
        >>> import pathlib
        >>> fs_path(b"out/c.safetensors"), fs_path(pathlib.Path("out") / "c.safetensors")
        ('out/c.safetensors', 'out/c.safetensors')
    """
    try:
        return os.fsdecode(path)
    except TypeError:
        raise TypeError(f"a {what} path must be str, bytes or os.PathLike, got {type(path).__name__}") from None


def open_regular(path: str | bytes | os.PathLike[Any], *, what: str = "file",
                 error: type[Exception] = ValueError) -> BinaryIO:
    """``path`` opened for binary reading, when it is a regular file (or a link to one).

    A FIFO, a device or a socket is refused before it is opened (opening a FIFO without a writer
    blocks forever, ``/dev/zero`` never ends); the open itself does not block either, and the
    opened file is checked again, should the path have been replaced in between.

    Args:
        path: the file to read; str, bytes or path-like.
        what: what the file is, in the caller's words, for error messages (``"checkpoint"``).
        error: the exception class raised for a file that is not a regular file.

    Returns:
        The open file (a context manager).

    Raises:
        FileNotFoundError: no file at ``path``.
        IsADirectoryError: ``path`` is a folder.
        error: ``path`` is a FIFO, a device, a socket or another non-regular file.
        OSError: a loop of links, no permission.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> write_atomic(path, b"hello")
        >>> with open_regular(path) as f:
        ...     f.read()
        b'hello'
        >>> open_regular(os.devnull, what="record")
        Traceback (most recent call last):
        ...
        ValueError: /dev/null is a character device, not a regular file: not a record
    """
    path = fs_path(path, what)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no {what} file at this path", path) from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    _refuse_irregular(mode, path, what, error)
    # O_NONBLOCK: should the path have become a FIFO since, the open returns at once (and fstat refuses)
    f = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)), "rb")
    try:
        _refuse_irregular(os.fstat(f.fileno()).st_mode, path, what, error)
    except BaseException:
        f.close()
        raise
    return f


def _refuse_irregular(mode: int, path: str, what: str, error: type[Exception]) -> None:
    kind = file_kind(mode)
    if kind is not None:
        raise error(f"{path} is {kind}, not a regular file: not a {what}")


def check_destination(path: str | bytes | os.PathLike[Any], *, what: str = "file") -> str:
    """Check, without writing anything, that `write_atomic` could write ``path``; the file it would replace.

    For a program that should refuse a bad output path before hours of work, not after: the same
    errors as `write_atomic` (an empty path, a folder, a FIFO or device, a missing folder), and a
    folder that this process may not write into.

    Args:
        path: the file to be written later.
        what: what the file is, in the caller's words, for error messages (``"checkpoint"``).

    Returns:
        The absolute path of the regular file that will be replaced (links followed).

    Raises:
        FileNotFoundError: ``path`` is empty, or its folder does not exist.
        IsADirectoryError: ``path`` names a folder.
        PermissionError: the folder does not take new files from this process.
        ValueError: ``path`` is a FIFO, a device, a socket or another non-regular file.

    Examples:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> check_destination(os.path.join(folder, "c.safetensors")) == os.path.join(
        ...     os.path.realpath(folder), "c.safetensors")
        True
        >>> check_destination(folder)
        Traceback (most recent call last):
        ...
        IsADirectoryError: [Errno 21] a file path must name a file, not a folder: '...'
    """
    user_path = fs_path(path, what)
    target = _target(user_path, what)
    folder = os.path.dirname(target)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"the {what}'s folder does not take new files "
                              f"({os.strerror(errno.EACCES)})", os.path.dirname(os.path.abspath(user_path)))
    return target


def write_atomic(path: str | bytes | os.PathLike[Any], chunks: bytes | Iterable[Any], *, what: str = "file") -> None:
    """Write ``chunks`` to ``path`` atomically: temporary file, flush, fsync, rename, folder fsync.

    A symbolic link at ``path`` is written through (its target is replaced, in the target's
    folder). A new file gets the permissions the umask allows; a replaced one keeps its mode.

    Args:
        path: the file to write (absent, a regular file, or a link to either); str, bytes or path-like.
        chunks: the content, as ``bytes`` or an iterable of bytes-like objects written in order.
        what: what the file is, in the caller's words, for error messages (``"checkpoint"``).

    Raises:
        FileNotFoundError: ``path`` is empty, or its folder does not exist.
        IsADirectoryError: ``path`` names a folder (or ends with a separator).
        ValueError: ``path`` is a FIFO, a device, a socket or another non-regular file.
        TypeError: ``path`` is not str, bytes or path-like.
        OSError: writing failed; the old file, if any, is untouched and no temporary file is left.

    Examples:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> write_atomic(os.path.join(folder, "notes.txt"), [b"hello, ", b"world\\n"])
        >>> open(os.path.join(folder, "notes.txt"), "rb").read()
        b'hello, world\\n'
        >>> os.listdir(folder)
        ['notes.txt']
    """
    user_path = fs_path(path, what)
    target = _target(user_path, what)
    folder, name = os.path.split(target)
    data = [chunks] if isinstance(chunks, bytes | bytearray | memoryview) else chunks
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name[:_NAME_KEPT]}.", suffix=".tmp")
    except OSError as err:  # mkstemp's error names a temporary file the caller never heard of
        raise _in_user_terms(err, user_path, err.filename, f"cannot create a file in the {what}'s folder") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in data:
                f.write(chunk)
            f.flush()  # Python's buffer to the kernel first: fsync syncs only what the kernel has
            os.fsync(f.fileno())
        os.chmod(temporary, _file_mode(target))
        os.replace(temporary, target)
    except BaseException as err:  # Ctrl-C mid-write too: leave no temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(err, OSError):
            raise _in_user_terms(err, user_path, temporary) from None
        raise
    _fsync_folder(folder)


def _target(path: str, what: str) -> str:
    """The absolute path of the regular file to replace: ``path``, or the file its links lead to."""
    if not path:
        raise FileNotFoundError(errno.ENOENT, f"an empty path names no file; give the {what} a file name", path)
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)) or os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"a {what} path must name a file, not a folder", path)
    target = os.path.realpath(path)  # through every link, to the file whose content changes
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:  # a loop of links, a folder without search permission
        raise _in_user_terms(err, path, err.filename) from None
    kind = None if mode is None else file_kind(mode)
    if kind is not None:
        raise ValueError(f"{path!r} is {kind}, not a regular file: a {what} is written only to a regular "
                         "file or a new path")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        shown = os.path.dirname(os.path.abspath(path)) if target == os.path.abspath(path) else folder
        raise FileNotFoundError(errno.ENOENT, f"no folder to save the {what} in (create it first)", shown)
    return target


def _in_user_terms(err: OSError, path: str, temporary: str | None, doing: str | None = None) -> OSError:
    """``err`` naming ``path`` instead of a temporary file (errors without an errno pass as they are)."""
    if err.errno is None or (err.filename not in (None, temporary) and err.filename2 != temporary):
        return err
    message = err.strerror or str(err)
    if doing:
        message = f"{doing}: {message}"
    return type(err)(err.errno, message, path)


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
