"""funcnet.io.write_atomic: whole files or none, through links, never onto special files, and
errors in the caller's terms (their path, never the temporary file's)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from funcnet import io
from funcnet.experiments import sweep


def _names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_writes_chunks_and_bytes(tmp_path):
    io.write_atomic(tmp_path / "a", [b"ab", bytearray(b"cd"), memoryview(b"ef")])
    io.write_atomic(tmp_path / "b", b"whole")
    assert (tmp_path / "a").read_bytes() == b"abcdef" and (tmp_path / "b").read_bytes() == b"whole"
    assert _names(tmp_path) == ["a", "b"]


def test_the_data_is_flushed_before_fsync(tmp_path, monkeypatch):
    sizes = []
    real_fsync = os.fsync

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            sizes.append(os.fstat(fd).st_size)  # what the kernel has when the sync is asked for
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    payload = [b"x" * 1000, b"y" * 5]  # smaller than Python's buffer: nothing reaches the kernel unflushed
    io.write_atomic(tmp_path / "f", payload)
    assert sizes == [1005]


def test_a_symlink_is_written_through_atomically_in_the_targets_folder(tmp_path):
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    (real / "target").write_bytes(b"old")
    (links / "link").symlink_to(real / "target")
    (links / "chain").symlink_to(links / "link")  # a link to a link
    io.write_atomic(links / "chain", b"new")
    assert (links / "link").is_symlink() and (links / "chain").is_symlink()  # the links stay links
    assert (real / "target").read_bytes() == b"new"
    assert _names(real) == ["target"] and _names(links) == ["chain", "link"]  # no temporary file left


def test_a_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "new")
    io.write_atomic(tmp_path / "link", b"data")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "new").read_bytes() == b"data"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_and_left_alone(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "link").symlink_to(fifo)
    for path in (fifo, tmp_path / "link"):
        with pytest.raises(ValueError, match=r"is a FIFO \(named pipe\), not a regular file"):
            io.write_atomic(path, b"data", what="checkpoint")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a regular file
    assert _names(tmp_path) == ["link", "pipe"]


def test_a_250_character_name_saves(tmp_path):
    name = "n" * 250
    io.write_atomic(tmp_path / name, b"data")
    assert _names(tmp_path) == [name]


def test_an_empty_path_is_refused_and_writes_nothing_anywhere(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(FileNotFoundError, match="empty path") as info:
        io.write_atomic("", b"data", what="checkpoint")
    assert info.value.filename == ""
    assert _names(tmp_path) == ["cwd"] and _names(here) == []  # not in the parent folder either


@pytest.mark.parametrize("path", ["nope/", "folder", "folder/"])
def test_a_folder_path_is_refused_naming_it(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="a checkpoint path must name a file, not a folder") as info:
        io.write_atomic(path, b"data", what="checkpoint")
    assert info.value.filename == path
    assert _names(tmp_path) == ["folder"] and _names(tmp_path / "folder") == []


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder to save the table in") as info:
        io.write_atomic(tmp_path / "missing" / "t.csv", b"data", what="table")
    assert info.value.filename == str(tmp_path / "missing")


def test_a_folder_that_refuses_files_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    def refused(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}x1y2{suffix}"))

    monkeypatch.setattr(io.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match="cannot create a file in the checkpoint's folder") as info:
        io.write_atomic(tmp_path / "c.safetensors", b"data", what="checkpoint")
    assert info.value.filename == str(tmp_path / "c.safetensors") and ".tmp" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("write, named, match", [
    (lambda folder: io.write_atomic(folder / "c", b"data"), lambda folder: folder / "c", ""),
    (lambda folder: sweep(lambda config, seed: {"loss": 0.0}, [{}], 1, out_dir=folder, progress=False),
     lambda folder: folder, "out_dir"),
], ids=["write_atomic", "sweep's out_dir"])
def test_a_really_read_only_folder_is_named(tmp_path, write, named, match):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=match) as info:
            write(folder)
        assert info.value.filename == str(named(folder)) and ".tmp" not in str(info.value)
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("target", ["replace", "chmod", "fsync"])
def test_a_failed_step_names_the_users_path_and_leaves_no_temporary_file(tmp_path, monkeypatch, target):
    (tmp_path / "c").write_bytes(b"old")
    real = getattr(os, target)

    def fails(*args, **kwargs):
        name = args[0] if isinstance(args[0], str) else None
        raise OSError(errno.EIO, "Input/output error", name, *args[1:2])

    monkeypatch.setattr(os, target, fails)
    with pytest.raises(OSError, match="Input/output error") as info:
        io.write_atomic(tmp_path / "c", b"new")
    monkeypatch.setattr(os, target, real)
    assert info.value.filename == str(tmp_path / "c") and info.value.filename2 is None
    assert ".tmp" not in str(info.value)
    assert (tmp_path / "c").read_bytes() == b"old" and _names(tmp_path) == ["c"]


def test_file_kind_names_special_files(tmp_path):
    assert io.file_kind(os.stat(tmp_path).st_mode) == "a folder"
    assert io.file_kind(stat.S_IFCHR) == "a character device"
    assert io.file_kind(stat.S_IFBLK) == "a block device"
    assert io.file_kind(stat.S_IFSOCK) == "a socket"
    assert io.file_kind(stat.S_IFREG | 0o600) is None


def test_bytes_paths_are_written_like_os_writes_them(tmp_path):
    io.write_atomic(os.fsencode(tmp_path / "b"), b"data")
    assert (tmp_path / "b").read_bytes() == b"data" and _names(tmp_path) == ["b"]
    with pytest.raises(TypeError, match=r"a table path must be str, bytes or os\.PathLike, got NoneType"):
        io.write_atomic(None, b"data", what="table")


def test_check_destination_refuses_what_write_atomic_would_and_writes_nothing(tmp_path):
    (tmp_path / "folder").mkdir()
    assert io.check_destination(tmp_path / "new.json") == str(tmp_path / "new.json")
    assert io.check_destination(os.fsencode(tmp_path / "new.json")) == str(tmp_path / "new.json")
    with pytest.raises(IsADirectoryError, match="a checkpoint path must name a file, not a folder"):
        io.check_destination(tmp_path / "folder", what="checkpoint")
    with pytest.raises(FileNotFoundError, match="no folder to save the checkpoint in") as info:
        io.check_destination(tmp_path / "missing" / "c", what="checkpoint")
    assert info.value.filename == str(tmp_path / "missing")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(ValueError, match=r"is a FIFO \(named pipe\), not a regular file"):
            io.check_destination(tmp_path / "pipe")
    assert _names(tmp_path) == sorted(["folder", *(["pipe"] if hasattr(os, "mkfifo") else [])])


def test_check_destination_names_a_folder_that_takes_no_files(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere: pretend
    with pytest.raises(PermissionError, match="the summary's folder does not take new files") as info:
        io.check_destination(tmp_path / "s.json", what="summary")
    assert info.value.filename == str(tmp_path)
