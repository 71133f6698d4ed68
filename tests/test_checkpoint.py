"""funcnet.checkpoint: exact round trips, the safetensors format both ways, atomic writes,
and a clear CheckpointError (never a crash, never code execution) for every broken file."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import stat
import tempfile
import threading
from typing import Any, NamedTuple

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from funcnet import backend, checkpoint, optim, tree
from funcnet.checkpoint import CheckpointError
from funcnet.models import TwoLayerNet
from funcnet.trainer import Trainer


class AdamState(NamedTuple):
    mu: Any
    nu: Any
    count: Any


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    key: Any
    step: Any


def _params(rng: np.random.Generator) -> tuple:
    return (
        {"W": rng.standard_normal((2, 3)).astype(np.float32), "b": np.zeros(3, np.float32)},
        (),
        {"W": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)},
    )


def _state(rng: np.random.Generator) -> TrainState:
    params = _params(rng)
    zeros = tree.map(np.zeros_like, params)
    return TrainState(
        params=params,
        opt_state=AdamState(mu=zeros, nu=tree.map(np.ones_like, params), count=np.int32(7)),
        key=np.array([0, 42], dtype=np.uint32),
        step=12,
    )


def _assert_identical(expected: Any, got: Any) -> None:
    """Same structure, and every leaf of the same type, dtype, shape and bytes."""
    assert tree.structure(expected) == tree.structure(got)
    for (path, a), b in zip(tree.leaves_with_paths(expected), tree.leaves(got), strict=True):
        assert type(a) is type(b), path
        if isinstance(a, bool | int | float):
            assert a == b or (a != a and b != b), path  # NaN == NaN here
            continue
        a_host, b_host = backend.to_numpy(a), backend.to_numpy(b)
        assert a_host.dtype == b_host.dtype, path
        assert a_host.shape == b_host.shape, path
        assert a_host.tobytes() == b_host.tobytes(), path


def _blank(t: Any) -> Any:
    """A template of ``t``: zero arrays, and zero scalars of the same scalar types."""
    return tree.map(lambda x: np.zeros_like(x) if isinstance(x, np.ndarray) else type(x)(0), t)


def _header(path: pathlib.Path) -> tuple[int, dict]:
    blob = path.read_bytes()
    length = int.from_bytes(blob[:8], "little")
    return length, json.loads(blob[8 : 8 + length])


def _raw_file(path: pathlib.Path, header: dict, data: bytes = b"", *, length: int | None = None) -> None:
    """A hand-made safetensors file, for the corrupt cases our writer never produces."""
    text = json.dumps(header).encode()
    path.write_bytes((len(text) if length is None else length).to_bytes(8, "little") + text + data)


# ------------------------------------------------------------------------- round trips


def test_training_state_round_trips_exactly(tmp_path, np_rng):
    state = _state(np_rng)
    checkpoint.save(tmp_path / "state.safetensors", state)
    loaded = checkpoint.load(tmp_path / "state.safetensors", like=_blank(state))
    _assert_identical(state, loaded)
    assert isinstance(loaded, TrainState) and isinstance(loaded.opt_state, AdamState)
    assert type(loaded.step) is int and type(loaded.opt_state.count) is np.int32


def test_every_dtype_and_node_kind_round_trips(tmp_path):
    t = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64": np.array([np.pi, -0.0, np.inf, np.nan]),
        "f16": np.array([1.5, 65504.0], dtype=np.float16),
        "ints": [np.array([-(2**31), 2**31 - 1], np.int32), np.array([-(2**63)], np.int64)],
        "uints": (np.array([0, 2**32 - 1], np.uint32), np.arange(3, dtype=np.uint8), np.uint64(2**64 - 1)),
        "mask": (np.array([[True, False]]), np.array(True)),
        "scalars": (3, -2.5, True, np.float32(0.1), np.int64(-5), np.bool_(False)),
        "zero_size": np.zeros((0, 3), np.float32),
        "empty": ((), None, {}, []),
        "nested": {"deeper": {"deepest": (np.float64(1e-300),)}},
    }
    checkpoint.save(tmp_path / "t.safetensors", t)
    _assert_identical(t, checkpoint.load(tmp_path / "t.safetensors", t))


def test_empty_tree_and_single_array_round_trip(tmp_path):
    checkpoint.save(tmp_path / "empty", ())
    assert checkpoint.load(tmp_path / "empty", ()) == ()
    x = np.arange(4.0)
    checkpoint.save(tmp_path / "one", x)
    _assert_identical(x, checkpoint.load(tmp_path / "one", np.zeros(4)))


def test_loaded_arrays_are_writeable_copies(tmp_path):
    checkpoint.save(tmp_path / "a", {"x": np.ones(3, np.float32)})
    x = checkpoint.load(tmp_path / "a", {"x": np.zeros(3, np.float32)})["x"]
    assert x.flags.writeable and x.flags.owndata and x.flags.c_contiguous


def test_load_casts_to_like_dtype_within_a_kind(tmp_path):
    checkpoint.save(tmp_path / "a", {"w": np.array([0.1, 0.2]), "n": np.array([3, 4], np.int64)})
    like = {"w": np.zeros(2, np.float32), "n": np.zeros(2, np.int32)}
    loaded = checkpoint.load(tmp_path / "a", like)
    np.testing.assert_array_equal(loaded["w"], np.array([0.1, 0.2], np.float32))
    assert loaded["w"].dtype == np.float32 and loaded["n"].dtype == np.int32


def test_round_trip_on_every_backend(tmp_path, xp, np_rng):
    name = backend.name_of(xp)
    state = backend.put(_state(np_rng), xp)
    wide = tree.map(lambda a: xp.astype(a, xp.float64), state.params[2])
    state = state._replace(params=(state.params[0], (), wide))
    checkpoint.save(tmp_path / "s", state)
    like = tree.map(xp.zeros_like, state)
    loaded = checkpoint.load(tmp_path / "s", like)
    _assert_identical(state, loaded)
    for leaf in tree.leaves(loaded):
        assert backend.name_of(backend.namespace(leaf)) == name
    assert backend.to_numpy(loaded.params[2]["W"]).dtype == np.float64
    assert backend.to_numpy(loaded.key).dtype == np.uint32


def test_host_checkpoint_loads_onto_like_backend(tmp_path, xp, np_rng):
    state = _state(np_rng)
    checkpoint.save(tmp_path / "s", state)
    loaded = checkpoint.load(tmp_path / "s", backend.put(state, xp))
    _assert_identical(backend.put(state, xp), loaded)


def test_file_layout_is_aligned(tmp_path, np_rng):
    checkpoint.save(tmp_path / "s", _state(np_rng))
    length, header = _header(tmp_path / "s")
    assert (8 + length) % 8 == 0
    itemsize = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "U32": 4}
    for name, entry in header.items():
        if name != "__metadata__":
            assert entry["data_offsets"][0] % itemsize[entry["dtype"]] == 0, name


# ---------------------------------------------------------------------------- float16


def test_float16_storage_rounds_floats_and_keeps_integers(tmp_path, np_rng):
    state = _state(np_rng)
    checkpoint.save(tmp_path / "h", state, dtype="float16")
    raw = safetensors.numpy.load_file(str(tmp_path / "h"))
    assert raw["params/0/W"].dtype == np.float16
    assert raw["key"].dtype == np.uint32 and raw["step"].dtype == np.int64 and raw["opt_state/count"].dtype == np.int32
    loaded = checkpoint.load(tmp_path / "h", state)
    expected = state.params[0]["W"].astype(np.float16).astype(np.float32)
    assert loaded.params[0]["W"].dtype == np.float32
    np.testing.assert_array_equal(loaded.params[0]["W"], expected)
    assert not np.array_equal(loaded.params[0]["W"], state.params[0]["W"])  # it did round
    np.testing.assert_array_equal(loaded.key, state.key)
    assert loaded.step == state.step


def test_float16_rounding_of_known_values(tmp_path):
    x = np.array([1 / 3, 1.0 + 2**-11, 1.0 + 2**-10, 1e-8], np.float32)
    checkpoint.save(tmp_path / "h", {"x": x, "y": x.astype(np.float64)}, dtype=np.float16)
    loaded = checkpoint.load(tmp_path / "h", {"x": x, "y": x.astype(np.float64)})
    halves = [0.333251953125, 1.0, 1.0009765625, 0.0]  # nearest float16, ties to even, underflow
    np.testing.assert_array_equal(loaded["x"], np.array(halves, np.float32))
    np.testing.assert_array_equal(loaded["y"], np.array(halves, np.float64))


def test_float16_overflow_names_the_leaf(tmp_path):
    with pytest.raises(ValueError, match=r"'big'.*float16"):
        checkpoint.save(tmp_path / "h", {"big": np.array([1e5], np.float32)}, dtype="float16")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("bad", ["int32", "bool", "complex64", "float128"])
def test_storage_dtype_must_be_a_float(tmp_path, bad):
    with pytest.raises((ValueError, TypeError)):
        checkpoint.save(tmp_path / "h", {"x": np.ones(2)}, dtype=bad)


# ------------------------------------------------------------------------ safetensors


def test_safetensors_package_reads_our_file(tmp_path, np_rng):
    state = _state(np_rng)
    checkpoint.save(tmp_path / "s", state, metadata={"epoch": "3"})
    theirs = safetensors.numpy.load_file(str(tmp_path / "s"))
    ours = dict(tree.leaves_with_paths(backend.to_numpy(state)))
    assert set(theirs) == set(ours)
    for name, value in ours.items():
        assert theirs[name].dtype == value.dtype and theirs[name].shape == value.shape
        np.testing.assert_array_equal(theirs[name], value)
    with safetensors.safe_open(str(tmp_path / "s"), framework="numpy") as f:
        assert f.metadata()["epoch"] == "3"


def test_we_read_a_safetensors_package_file(tmp_path, np_rng):
    params = _params(np_rng)
    arrays = {"0/W": params[0]["W"], "0/b": params[0]["b"], "2/W": params[2]["W"], "2/b": params[2]["b"]}
    safetensors.numpy.save_file(arrays, str(tmp_path / "theirs"), metadata={"note": "hi"})
    _assert_identical(params, checkpoint.load(tmp_path / "theirs", params))
    assert checkpoint.read_metadata(tmp_path / "theirs") == {"note": "hi"}


# -------------------------------------------------------------------------- metadata


def test_metadata_is_read_back_with_format_entries(tmp_path, np_rng):
    state = _state(np_rng)
    checkpoint.save(tmp_path / "s", state, metadata={"epoch": "3", "note": "ünïcode"})
    meta = checkpoint.read_metadata(tmp_path / "s")
    assert meta["epoch"] == "3" and meta["note"] == "ünïcode"
    assert meta["funcnet.format"] == checkpoint.FORMAT and meta["funcnet.version"] == checkpoint.VERSION
    assert "TrainState" in meta["funcnet.structure"]
    assert len(meta["funcnet.sha256"]) == 64


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({"epoch": 3}, TypeError),
        ({1: "x"}, TypeError),
        (["a"], TypeError),
        ({"funcnet.format": "x"}, ValueError),
    ],
)
def test_metadata_is_validated(tmp_path, metadata, error):
    with pytest.raises(error, match="metadata"):
        checkpoint.save(tmp_path / "s", {"x": np.ones(1)}, metadata=metadata)


# -------------------------------------------------------------------------- atomicity


def _save_then_fail(tmp_path, monkeypatch, target: str, np_rng) -> pathlib.Path:
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save(path, {"x": np.ones(3, np.float32)})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, target, boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"x": np.full(3, 2.0, np.float32), "y": np_rng.standard_normal(1000)})
    monkeypatch.undo()
    return path


@pytest.mark.parametrize("target", ["replace", "fsync", "chmod"])
def test_failed_save_keeps_old_checkpoint_and_no_temp_file(tmp_path, monkeypatch, target, np_rng):
    path = _save_then_fail(tmp_path, monkeypatch, target, np_rng)
    loaded = checkpoint.load(path, {"x": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(loaded["x"], np.ones(3, np.float32))
    assert os.listdir(tmp_path) == [path.name]


def test_unstorable_leaf_fails_before_touching_the_file(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"x": np.ones(1)})
    with pytest.raises(TypeError, match=r"'x'"):
        checkpoint.save(path, {"x": np.ones(1, np.complex64)})
    with pytest.raises(TypeError, match=r"'1'"):
        checkpoint.save(path, (np.ones(1), "text"))
    assert os.listdir(tmp_path) == ["c"]
    np.testing.assert_array_equal(checkpoint.load(path, {"x": np.zeros(1)})["x"], [1.0])


def test_overwrite_keeps_file_mode_and_new_files_follow_umask(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"x": np.ones(1)})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    checkpoint.save(path, {"x": np.zeros(1)})
    assert path.stat().st_mode & 0o777 == 0o640


def test_paths_must_be_unique(tmp_path):
    with pytest.raises(ValueError, match=r"'a/b'"):
        checkpoint.save(tmp_path / "c", {"a/b": np.ones(1), "a": {"b": np.ones(1)}})
    with pytest.raises(ValueError, match="__metadata__"):
        checkpoint.save(tmp_path / "c", {"__metadata__": np.ones(1)})
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------- broken files


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        checkpoint.load(tmp_path / "nope.safetensors", {})
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        checkpoint.read_metadata(tmp_path / "nope.safetensors")


def test_empty_file(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        checkpoint.load(tmp_path / "e", {})


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.fixture
def saved(tmp_path, np_rng):
    state = _state(np_rng)
    path = tmp_path / "s"
    checkpoint.save(path, state)
    return path, state


@pytest.mark.parametrize("keep", [3, 8, 20, -1, -8, -100])
def test_truncated_file(saved, keep):
    path, state = saved
    blob = path.read_bytes()
    path.write_bytes(blob[:keep])
    with pytest.raises(CheckpointError, match=r"truncated|only 3 bytes"):
        checkpoint.load(path, state)


def test_every_single_bit_flip_in_the_header_is_caught(saved):
    path, state = saved
    blob = path.read_bytes()
    end = 8 + int.from_bytes(blob[:8], "little")
    for position in range(end):
        for bit in (0x01, 0x20, 0x80):
            flipped = bytearray(blob)
            flipped[position] ^= bit
            path.write_bytes(bytes(flipped))
            with pytest.raises(CheckpointError):
                checkpoint.load(path, state)


def test_flipped_data_bytes_fail_the_checksum(saved):
    path, state = saved
    blob = bytearray(path.read_bytes())
    for position in (len(blob) - 1, len(blob) - 50, 8 + int.from_bytes(blob[:8], "little")):
        flipped = bytearray(blob)
        flipped[position] ^= 0x04
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match="checksum"):
            checkpoint.load(path, state)


def test_npz_and_npy_files_are_recognised(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones(3))
    with pytest.raises(CheckpointError, match=r"\.npz"):
        checkpoint.load(tmp_path / "a.npz", {"x": np.ones(3)})
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(CheckpointError, match=r"\.npy"):
        checkpoint.load(tmp_path / "a.npy", np.ones(3))


class _Exploit:
    """Unpickling this would create a file: the test shows it never happens."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_file_is_refused_and_never_run(tmp_path, protocol):
    pwned = tmp_path / "pwned"
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"x": _Exploit(pwned)}, protocol=protocol))
    with pytest.raises(CheckpointError, match="pickle" if protocol else "not a safetensors checkpoint"):
        checkpoint.load(tmp_path / "p.pkl", {"x": np.ones(1)})
    with pytest.raises(CheckpointError):
        checkpoint.read_metadata(tmp_path / "p.pkl")
    assert not pwned.exists()


def test_text_file_is_refused(tmp_path):
    (tmp_path / "t.json").write_text('{"x": [1, 2, 3]}')
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        checkpoint.load(tmp_path / "t.json", {"x": np.ones(3)})


_F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        ({"x": {**_F32_2, "dtype": "X9"}}, bytes(8), "dtype 'X9'"),
        ({"x": {**_F32_2, "dtype": "BF16", "data_offsets": [0, 4]}}, bytes(4), "dtype 'BF16'"),
        ({"x": {**_F32_2, "shape": [-2]}}, bytes(8), "invalid shape"),
        ({"x": {**_F32_2, "shape": [2.0]}}, bytes(8), "invalid shape"),
        ({"x": {**_F32_2, "shape": "2"}}, bytes(8), "invalid shape"),
        ({"x": {**_F32_2, "data_offsets": [0]}}, bytes(8), "invalid data_offsets"),
        ({"x": {**_F32_2, "data_offsets": [8, 0]}}, bytes(8), "invalid data_offsets|needs"),
        ({"x": {**_F32_2, "data_offsets": [0, 12]}}, bytes(12), "needs 8"),
        ({"x": {**_F32_2, "data_offsets": [0, 8]}}, bytes(4), "truncated"),
        ({"x": _F32_2, "y": _F32_2}, bytes(8), "overlap"),
        ({"x": {**_F32_2, "data_offsets": [4, 12]}}, bytes(12), "belong to no tensor"),
        ({"x": _F32_2}, bytes(12), "after the last tensor"),
        ({"x": "F32"}, bytes(8), "not an object"),
        ({"x": _F32_2, "__metadata__": {"a": 1}}, bytes(8), "__metadata__"),
        ({"x": _F32_2, "__metadata__": {"funcnet.format": "funcnet.checkpoint", "funcnet.version": "2"}},
         bytes(8), "version '2'"),
        ({"x": _F32_2, "__metadata__": {"funcnet.format": "other"}}, bytes(8), "format tag"),
    ],
)
def test_malformed_headers(tmp_path, header, data, match):
    _raw_file(tmp_path / "m", header, data)
    with pytest.raises(CheckpointError, match=match):
        checkpoint.load(tmp_path / "m", {"x": np.ones(2, np.float32)})


def test_header_that_is_not_a_json_object_or_not_utf8(tmp_path):
    _raw_file(tmp_path / "m", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="not an object"):
        checkpoint.load(tmp_path / "m", {})
    (tmp_path / "m").write_bytes((4).to_bytes(8, "little") + b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="UTF-8"):
        checkpoint.load(tmp_path / "m", {})
    deep = b"[" * 100_000
    (tmp_path / "m").write_bytes(len(deep).to_bytes(8, "little") + deep)
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.load(tmp_path / "m", {})


def test_duplicate_tensor_name(tmp_path):
    entry = b'{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}'
    text = b'{"x":' + entry % (0, 1) + b',"x":' + entry % (1, 2) + b"}"
    (tmp_path / "m").write_bytes(len(text).to_bytes(8, "little") + text + bytes(2))
    with pytest.raises(CheckpointError, match="'x' twice"):
        checkpoint.load(tmp_path / "m", {"x": np.ones(1, np.uint8)})


def test_foreign_bool_bytes_become_proper_bools(tmp_path):
    _raw_file(tmp_path / "b", {"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}}, b"\x00\x02\xff")
    mask = checkpoint.load(tmp_path / "b", {"m": np.zeros(3, bool)})["m"]
    np.testing.assert_array_equal(mask.view(np.uint8), [0, 1, 1])


def test_huge_header_length(tmp_path):
    (tmp_path / "m").write_bytes((2**63).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="header length"):
        checkpoint.load(tmp_path / "m", {})


# ---------------------------------------------------------------- another architecture


def test_missing_leaf_is_named(saved, np_rng):
    path, state = saved
    bigger = state._replace(params=(*state.params, {"W": np.zeros((4, 2), np.float32)}))
    with pytest.raises(CheckpointError, match=r"leaf 'params/3/W' of `like` is missing"):
        checkpoint.load(path, bigger)


def test_unexpected_leaf_is_named(saved):
    path, state = saved
    smaller = state._replace(params=state.params[:2])
    with pytest.raises(CheckpointError, match=r"unexpected leaf 'params/2/W'"):
        checkpoint.load(path, smaller)


def test_shape_mismatch_names_leaf_and_both_shapes(saved):
    path, state = saved
    wider = state._replace(params=({**state.params[0], "W": np.zeros((2, 5), np.float32)}, *state.params[1:]))
    with pytest.raises(CheckpointError, match=r"'params/0/W' should have shape \(2, 5\), the file has \(2, 3\)"):
        checkpoint.load(path, wider)


def test_dtype_kind_mismatch_names_leaf(saved):
    path, state = saved
    with pytest.raises(CheckpointError, match=r"'key' should be float32, the file has uint32"):
        checkpoint.load(path, state._replace(key=np.zeros(2, np.float32)))
    with pytest.raises(CheckpointError, match=r"'step' should be float64, the file has int64"):
        checkpoint.load(path, state._replace(step=0.0))


def test_integer_that_does_not_fit_like_dtype(tmp_path):
    checkpoint.save(tmp_path / "i", {"n": np.array([2**40])})
    with pytest.raises(CheckpointError, match=r"'n'.*do not fit int32"):
        checkpoint.load(tmp_path / "i", {"n": np.zeros(1, np.int32)})


def test_like_with_colliding_paths_is_refused(saved):
    path, _ = saved
    with pytest.raises(ValueError, match=r"'a/b'"):
        checkpoint.load(path, {"a/b": np.ones(1), "a": {"b": np.ones(1)}})


# --------------------------------------------------------------------------- property


_DTYPES = [
    *(np.float16, np.float32, np.float64),
    *(np.int8, np.int32, np.int64, np.uint8, np.uint32, np.uint64, np.bool_),
]

_arrays = st.sampled_from(_DTYPES).flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
)
_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    _arrays.filter(lambda a: a.ndim == 0).map(lambda a: a[()]),
)
_leaves = st.one_of(_arrays, _scalars)
_keys = st.text(alphabet="abcxyz_0", min_size=1, max_size=4)
_trees = st.recursive(
    _leaves | st.just(()) | st.none(),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3),
        st.dictionaries(_keys, children, max_size=3),
        st.tuples(children, children, children).map(lambda c: AdamState(*c)),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(_trees)
def test_random_trees_round_trip_exactly(t):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.safetensors")
        checkpoint.save(path, t)
        _assert_identical(t, checkpoint.load(path, t))
        assert os.listdir(folder) == ["t.safetensors"]


@settings(max_examples=30, deadline=None)
@given(_trees)
def test_random_trees_stored_as_float64_come_back_equal(t):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.safetensors")
        checkpoint.save(path, t, dtype="float64")  # widening and narrowing back is exact
        loaded = checkpoint.load(path, t)
        assert tree.structure(loaded) == tree.structure(t)
        for a, b in zip(tree.leaves(t), tree.leaves(loaded), strict=True):
            assert type(a) is type(b)
            assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f")


# ------------------------------------------------------------- not files, hostile headers


def _opens_for_writing(path: pathlib.Path) -> None:
    """Give a reader blocked on a FIFO its writer, so a failing test does not hang the suite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader blocked on it: nothing to release
        return
    os.close(fd)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("read", [
    lambda p: checkpoint.load(p, {"x": np.ones(1)}),
    checkpoint.read_metadata,
    lambda p: Trainer(TwoLayerNet(2, 10, 3), optim.SGD(1.0)).load(p),
], ids=["load", "read_metadata", "Trainer.load"])
def test_a_fifo_is_refused_before_it_is_opened(tmp_path, read):
    fifo = tmp_path / "state.safetensors"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def attempt():
        try:
            read(fifo)
            outcome.append(None)
        except BaseException as err:  # handed to the test's thread
            outcome.append(err)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    hung = worker.is_alive()
    if hung:
        _opens_for_writing(fifo)
        worker.join(timeout=5)
    assert not hung, "reading a FIFO without a writer blocked"
    assert isinstance(outcome[0], CheckpointError), outcome
    assert str(fifo) in str(outcome[0]) and "is a FIFO (named pipe), not a regular file" in str(outcome[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_not_a_checkpoint():
    with pytest.raises(CheckpointError, match=r"/dev/zero is a character device, not a regular file"):
        checkpoint.load("/dev/zero", {})


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="no /proc here")
def test_a_proc_file_that_says_it_is_empty_is_not_a_checkpoint():
    with pytest.raises(CheckpointError, match=r"/proc/self/status: the header length field says \d+ bytes but "
                                              r"the file has \d+ after it; .*not a safetensors checkpoint"):
        checkpoint.load("/proc/self/status", {})


def test_a_header_with_a_5000_digit_integer_is_the_checkpoint_error(tmp_path):
    text = b'{"x":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,8]}}'
    path = tmp_path / "huge.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(8))
    for read in (lambda: checkpoint.load(path, {"x": np.ones(2, np.float32)}), lambda: checkpoint.read_metadata(path)):
        with pytest.raises(CheckpointError, match=rf"{path}: the header is not valid JSON .*digits"):
            read()


# ------------------------------------------------------------------- narrowing on load


@pytest.mark.parametrize(("stored", "template"), [
    (np.array([1.0, 1e300]), np.zeros(2, np.float32)),
    (np.array([-1e39, 0.0], np.float64), np.zeros(2, np.float32)),
    (np.array([7e4], np.float32), np.zeros(1, np.float16)),
], ids=["f64-f32", "f64-f32-negative", "f32-f16"])
def test_a_narrower_float_template_that_would_make_inf_is_refused(tmp_path, stored, template):
    checkpoint.save(tmp_path / "c", {"layer": {"W": stored}})
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'c'}: leaf 'layer/W' has values beyond the range "
                                              rf"of {template.dtype}"):
        checkpoint.load(tmp_path / "c", {"layer": {"W": template}})


def test_narrowing_floats_that_fit_and_non_finite_values_load(tmp_path):
    values = np.array([1 / 3, np.inf, -np.inf, np.nan, 3e38])
    checkpoint.save(tmp_path / "c", {"w": values})
    loaded = checkpoint.load(tmp_path / "c", {"w": np.zeros(5, np.float32)})["w"]
    np.testing.assert_array_equal(loaded, values.astype(np.float32))  # inf and NaN were never finite
    assert loaded.dtype == np.float32


@pytest.mark.parametrize(("stored", "template"), [
    (np.array([0, 2**32 - 1], np.uint32), np.zeros(2, np.uint8)),
    (np.array([256], np.uint16), np.zeros(1, np.uint8)),
    (np.array([2**64 - 1], np.uint64), np.zeros(1, np.int64)),
    (np.array([-1], np.int64), np.zeros(1, np.uint64)),
    (np.array([-1], np.int8), np.zeros(1, np.uint32)),
    (np.array([2**63 - 1], np.int64), np.zeros(1, np.uint32)),
], ids=["u32-u8", "u16-u8", "u64-i64", "i64-u64", "i8-u32", "i64-u32"])
def test_integers_that_do_not_fit_an_unsigned_or_signed_template_are_refused(tmp_path, stored, template):
    checkpoint.save(tmp_path / "i", {"n": stored})
    with pytest.raises(CheckpointError, match=rf"'n' has values that do not fit {template.dtype}"):
        checkpoint.load(tmp_path / "i", {"n": template})


def test_integers_that_fit_a_narrower_template_load(tmp_path):
    checkpoint.save(tmp_path / "i", {"n": np.array([0, 255], np.uint64), "m": np.array([-128, 127], np.int64)})
    loaded = checkpoint.load(tmp_path / "i", {"n": np.zeros(2, np.uint8), "m": np.zeros(2, np.int8)})
    assert loaded["n"].tolist() == [0, 255] and loaded["n"].dtype == np.uint8
    assert loaded["m"].tolist() == [-128, 127] and loaded["m"].dtype == np.int8


# ---------------------------------------------------------------------- where save writes


def test_save_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "state-0001.safetensors"
    checkpoint.save(target, {"x": np.zeros(2)})
    latest = tmp_path / "latest.safetensors"
    latest.symlink_to(target)
    checkpoint.save(latest, {"x": np.ones(2)})
    assert latest.is_symlink()
    np.testing.assert_array_equal(checkpoint.load(target, {"x": np.zeros(2)})["x"], np.ones(2))
    assert os.listdir(tmp_path / "runs") == [target.name]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_save_onto_a_fifo_is_refused_and_the_fifo_stays(tmp_path):
    fifo = tmp_path / "state.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=rf"'{fifo}' is a FIFO \(named pipe\), not a regular file"):
        checkpoint.save(fifo, {"x": np.ones(1)})
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == [fifo.name]


def test_a_250_character_file_name_saves(tmp_path):
    path = tmp_path / ("c" * 238 + ".safetensors")
    checkpoint.save(path, {"x": np.ones(1)})
    np.testing.assert_array_equal(checkpoint.load(path, {"x": np.zeros(1)})["x"], [1.0])
    assert os.listdir(tmp_path) == [path.name]


def test_save_to_an_empty_path_or_a_folder_path_names_it_and_writes_nothing(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(FileNotFoundError, match="empty path"):
        checkpoint.save("", {"x": np.ones(1)})
    with pytest.raises(IsADirectoryError, match=r"a checkpoint path must name a file, not a folder: 'nope/'"):
        checkpoint.save("nope/", {"x": np.ones(1)})
    assert os.listdir(tmp_path) == ["cwd"] and os.listdir(here) == []


def test_a_folder_that_refuses_files_is_named_not_a_temporary_file(tmp_path, monkeypatch):
    def refused(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(dir, f"{prefix}x1y2{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match=r"checkpoint's folder: Permission denied: '.*c\.safetensors'$"):
        checkpoint.save(tmp_path / "c.safetensors", {"x": np.ones(1)})


# ------------------------------------------------------------ red-team: messages that name what is wrong


def _truncated_header(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "cut.safetensors"
    checkpoint.save(path, {"x": np.ones(2)})
    path.write_bytes(path.read_bytes()[:50])  # the length field and 42 bytes of its header
    return path


def _promised(tmp_path: pathlib.Path) -> int:
    return int.from_bytes((tmp_path / "cut.safetensors").read_bytes()[:8], "little")


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda tmp: checkpoint.save(tmp / "c", {"x": np.ones(2)}, dtype="nonsense"), TypeError,
     lambda tmp: "dtype= must be a floating dtype (float16, float32, float64) or None, got 'nonsense', "
                 "which is not a NumPy dtype"),
    (lambda tmp: checkpoint.save(tmp / "c", {"x": np.ones(2)}, dtype=3.5), TypeError,
     lambda tmp: "dtype= must be a floating dtype (float16, float32, float64) or None, got 3.5, "
                 "which is not a NumPy dtype"),
    (lambda tmp: checkpoint.save(12, {"x": np.ones(2)}), TypeError,
     lambda tmp: "a checkpoint path must be str, bytes or os.PathLike, got int"),
    (lambda tmp: checkpoint.read_metadata(_truncated_header(tmp)), CheckpointError,
     lambda tmp: f"{tmp / 'cut.safetensors'}: the header length field says {_promised(tmp)} bytes but the file "
                 "has 42 after it; the file is truncated or is not a safetensors checkpoint"),
    (lambda tmp: checkpoint.load(_truncated_header(tmp), {"x": np.ones(2)}), CheckpointError,
     lambda tmp: f"{tmp / 'cut.safetensors'}: the header length field says {_promised(tmp)} bytes but the file "
                 "has 42 after it; the file is truncated or is not a safetensors checkpoint"),
], ids=["dtype-not-a-dtype", "dtype-a-number", "path-an-int", "read_metadata-truncated-header",
        "load-truncated-header"])
def test_bad_arguments_and_files_give_a_sentence_naming_them(tmp_path, call, error, message):
    with pytest.raises(error) as caught:
        call(tmp_path)
    assert str(caught.value) == message(tmp_path)


def test_bytes_paths_are_taken_like_os_takes_them(tmp_path):
    path = os.fsencode(tmp_path / "b.safetensors")
    checkpoint.save(path, {"x": np.arange(3.0)}, metadata={"note": "bytes"})
    assert os.listdir(tmp_path) == ["b.safetensors"]
    assert checkpoint.read_metadata(path)["note"] == "bytes"
    np.testing.assert_array_equal(checkpoint.load(path, {"x": np.zeros(3)})["x"], [0.0, 1.0, 2.0])
    (tmp_path / "c").write_bytes(bytes([255] * 8) + b"{}")
    with pytest.raises(CheckpointError, match=rf"^{tmp_path / 'c'}: the header length"):  # named as text
        checkpoint.read_metadata(os.fsencode(tmp_path / "c"))


def test_metadata_too_large_for_a_header_is_a_value_error_and_writes_nothing(tmp_path):
    path = tmp_path / "c.safetensors"
    with pytest.raises(ValueError, match=r"the checkpoint cannot be written: .*header too large"):
        checkpoint.save(path, {"w": np.ones(2)}, metadata={"a": "x" * 120_000_000})
    assert list(tmp_path.iterdir()) == []
