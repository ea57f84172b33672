"""Event-frame loaders on tiny recordings written in the datasets' real on-disk formats.

* DVS-Gesture: tonic's preprocessed layout, ``DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy``,
  each an ``[N, 4]`` integer array of x, y, polarity, t in milliseconds.
* CIFAR10-DVS: tonic's layout ``CIFAR10DVS/<class>/<name>.aedat4``, AEDAT 4.0 files written byte for byte
  below (magic line, size-prefixed ``IOHE`` flatbuffer header with the XML stream description, then
  uncompressed size-prefixed ``EVTS`` flatbuffer packets), read back by tonic through the ``aedat`` decoder.
"""

import pickle
import struct

import numpy as np
import pytest
import torch

from fptt_ext.data.events import (
    CIFAR10_DVS_CLASSES,
    EqualTimeFrames,
    cifar10_dvs,
    dvs_gesture,
    split_per_class,
)
from fptt_ext.data.images import DatasetNotFoundError

# ---------------------------------------------------------------- DVS-Gesture


def _gesture_events(rng, n, duration_ms):
    ev = np.empty((n, 4), dtype=np.int64)
    ev[:, 0] = rng.integers(0, 128, n)  # x
    ev[:, 1] = rng.integers(0, 128, n)  # y
    ev[:, 2] = rng.integers(0, 2, n)  # polarity
    ev[:, 3] = np.sort(rng.integers(0, duration_ms, n))  # t, ms
    ev[0, 3], ev[-1, 3] = 0, duration_ms  # the last event sits at the end of the recording
    return ev


@pytest.fixture(scope="module")
def gesture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gesture")
    rng = np.random.default_rng(0)
    recordings = {}
    for split, files in {
        "ibmGestureTrain": [("user02_led", 10), ("user01_fluorescent", 0), ("user01_fluorescent", 3)],
        "ibmGestureTest": [("user24_natural", 7), ("user24_natural", 2)],
    }.items():
        for sub, label in files:
            folder = root / "DVSGesture" / split / sub
            folder.mkdir(parents=True, exist_ok=True)
            ev = _gesture_events(rng, int(rng.integers(50, 400)), int(rng.integers(30, 2000)))
            np.save(folder / f"{label}.npy", ev)
            recordings[(split, sub, label)] = ev
    return root, recordings


def test_dvs_gesture_frames_labels_and_counts(gesture_root):
    root, recordings = gesture_root
    ds = dvs_gesture("train", root=root, T=20)
    assert len(ds) == 3
    assert ds.targets == [0, 3, 10]  # ordered by path: user01 before user02
    for i, (split, sub, label) in enumerate(
        [("ibmGestureTrain", "user01_fluorescent", 0), ("ibmGestureTrain", "user01_fluorescent", 3),
         ("ibmGestureTrain", "user02_led", 10)]
    ):
        ev = recordings[(split, sub, label)]
        frames, y = ds[i]
        assert y == label and isinstance(y, int)
        assert frames.shape == (20, 2, 128, 128) and frames.dtype == torch.float32
        assert frames.sum().item() == len(ev)  # every event, the last one included
        # per polarity and pixel, over all bins
        expected = np.zeros((2, 128, 128))
        np.add.at(expected, (ev[:, 2], ev[:, 1], ev[:, 0]), 1)
        assert torch.equal(frames.sum(0), torch.from_numpy(expected).float())
        assert frames[0].sum() > 0 and frames[-1].sum() > 0  # the bins span the recording

    test = dvs_gesture("test", root=root / "DVSGesture", T=7)  # the dataset folder itself also works
    assert len(test) == 2 and test.targets == [2, 7]
    assert test[1][0].shape == (7, 2, 128, 128)


def test_dvs_gesture_pool4_is_the_average(gesture_root):
    root, _ = gesture_root
    full, pooled = dvs_gesture("test", root=root, T=5), dvs_gesture("test", root=root, T=5, pool=4)
    f, p = full[0][0], pooled[0][0]
    assert p.shape == (5, 2, 32, 32)
    assert torch.allclose(p, f.reshape(5, 2, 32, 4, 32, 4).mean((3, 5)))
    assert torch.isclose(p.sum() * 16, f.sum())
    assert pickle.loads(pickle.dumps(pooled))[0][1] == pooled[0][1]  # DataLoader workers (spawn) can use it


def test_dvs_gesture_missing_data_and_bad_args(tmp_path, monkeypatch):
    monkeypatch.delenv("FPTT_EXT_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as err:
        dvs_gesture("train", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "DVSGesture") in msg and "ibmGestureTrain/user01_fluorescent/0.npy" in msg
    assert "official site" in msg
    with pytest.raises(DatasetNotFoundError, match="FPTT_EXT_DATA"):
        dvs_gesture("test")
    for bad_T in (0, -3, 2.5, "20", True):
        with pytest.raises(ValueError, match="T must be a positive int"):
            dvs_gesture("train", root=tmp_path, T=bad_T)
    with pytest.raises(ValueError, match="pool"):
        dvs_gesture("train", root=tmp_path, pool=3)
    with pytest.raises(ValueError, match="split"):
        dvs_gesture("val", root=tmp_path)


def test_env_var_fallback(gesture_root, monkeypatch):
    root, _ = gesture_root
    monkeypatch.setenv("FPTT_EXT_DATA", str(root))
    assert len(dvs_gesture("test")) == 2


def test_equal_time_frames_short_recording():
    # shorter than T time units: tonic's n_time_bins would give empty frames, here all events are kept
    ev = np.zeros(4, dtype=[("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    ev["t"] = [3, 3, 4, 5]
    f = EqualTimeFrames((128, 128, 2), T=10)(ev)
    assert f.shape == (10, 2, 128, 128) and f.sum() == 4 and f[0].sum() == 2
    assert EqualTimeFrames((128, 128, 2), T=3)(ev[:0]).shape == (3, 2, 128, 128)


# ---------------------------------------------------------------- CIFAR10-DVS (AEDAT 4.0)

_MAGIC = b"#!AER-DAT4.0\r\n"
_DESCRIPTION = (
    '<dv version="2.0">\n'
    '    <node name="outInfo" path="/mainloop/Recorder/outInfo/">\n'
    '        <node name="0" path="/mainloop/Recorder/outInfo/0/">\n'
    '            <attr key="compression" type="string">NONE</attr>\n'
    '            <attr key="originalModuleName" type="string">capture</attr>\n'
    '            <attr key="originalOutputName" type="string">events</attr>\n'
    '            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>\n'
    '            <attr key="typeIdentifier" type="string">EVTS</attr>\n'
    '            <node name="info" path="/mainloop/Recorder/outInfo/0/info/">\n'
    '                <attr key="sizeX" type="int">128</attr>\n'
    '                <attr key="sizeY" type="int">128</attr>\n'
    "            </node>\n"
    "        </node>\n"
    "    </node>\n"
    "</dv>\n"
)


def _pad(buf: bytearray, align: int) -> None:
    buf += b"\0" * (-len(buf) % align)


def _ioheader() -> bytes:
    """Size-prefixed flatbuffer ``Ioheader`` (file identifier IOHE): compression and file_data_position left
    at their defaults (None, -1: packets until the end of the file), description = the XML above."""
    text = _DESCRIPTION.encode()
    b = bytearray(b"\0" * 4)  # size prefix, filled last
    b += struct.pack("<I", 20)  # root table offset, relative to byte 4: table at 24
    b += b"IOHE"
    b += struct.pack("<HHHHH", 10, 8, 0, 0, 4)  # vtable at 12: 3 fields, only field 2 (description) at +4
    _pad(b, 8)  # table at 24
    b += struct.pack("<i", 24 - 12)  # soffset to the vtable
    b += struct.pack("<I", 4)  # uoffset to the string at 32
    b += struct.pack("<I", len(text)) + text + b"\0"
    _pad(b, 8)
    b[:4] = struct.pack("<I", len(b) - 4)
    return bytes(b)


def _event_packet(t, x, y, p) -> bytes:
    """Stream id 0, byte size, and a size-prefixed flatbuffer ``EventPacket`` (file identifier EVTS)
    whose vector holds 16-byte ``Event`` structs {t: int64, x: int16, y: int16, on: bool, 3 bytes pad}."""
    b = bytearray(b"\0" * 4)
    b += struct.pack("<I", 16)  # root table at 20
    b += b"EVTS"
    b += struct.pack("<HHH", 6, 8, 4)  # vtable at 12: 1 field (elements) at +4
    _pad(b, 4)  # table at 20
    b += struct.pack("<i", 20 - 12)
    b += struct.pack("<I", 4)  # uoffset to the vector length at 28; elements at 32 (8-aligned)
    b += struct.pack("<I", len(t))
    for ti, xi, yi, pi in zip(t, x, y, p):
        b += struct.pack("<qhh?3x", int(ti), int(xi), int(yi), bool(pi))
    b[:4] = struct.pack("<I", len(b) - 4)
    return struct.pack("<II", 0, len(b)) + bytes(b)


def write_aedat4(path, t, x, y, p, packets=2):
    """An uncompressed AEDAT 4.0 recording of one 128x128 event stream, split in ``packets`` packets."""
    parts = np.array_split(np.arange(len(t)), packets)
    path.write_bytes(_MAGIC + _ioheader() + b"".join(_event_packet(t[i], x[i], y[i], p[i]) for i in parts))


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(1)
    counts = {}
    for cls, names in {"airplane": range(12), "truck": range(3), "cat": range(2)}.items():
        folder = root / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for k in names:
            n = int(rng.integers(20, 120))
            t = np.sort(rng.integers(0, 1_300_000, n))  # microseconds
            x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            write_aedat4(folder / f"cifar10_{cls}_{k}.aedat4", t, x, y, p)
            counts[f"cifar10_{cls}_{k}.aedat4"] = (n, np.stack([p, y, x]))
    return root, counts


def test_aedat4_writer_is_read_by_tonic(cifar_root):
    from tonic.io import read_aedat4

    root, counts = cifar_root
    path = root / "CIFAR10DVS" / "truck" / "cifar10_truck_1.aedat4"
    ev = read_aedat4(str(path))
    n, pyx = counts[path.name]
    assert len(ev) == n and ev.dtype.names == ("t", "x", "y", "on")
    assert np.array_equal(np.stack([ev["on"], ev["y"], ev["x"]]), pyx)


def test_cifar10_dvs_split_frames_and_labels(cifar_root):
    root, counts = cifar_root
    train, test = cifar10_dvs(root, T=20, split="train"), cifar10_dvs(root, T=20, split="test")
    everything = cifar10_dvs(root, T=20, split="all")
    assert (len(train), len(test), len(everything)) == (10 + 2 + 1, 2 + 1 + 1, 17)
    names = lambda ds: [f.rsplit("/", 1)[1] for f in ds.files]
    # per class, sorted by the number in the name: the first 90% train, the rest test
    assert names(test) == ["cifar10_airplane_10.aedat4", "cifar10_airplane_11.aedat4",
                           "cifar10_cat_1.aedat4", "cifar10_truck_2.aedat4"]
    assert sorted(names(train) + names(test)) == sorted(counts)
    assert test.targets == [0, 0, 3, 9] == [CIFAR10_DVS_CLASSES.index(n.split("_")[1]) for n in names(test)]
    for i in range(len(test)):
        frames, y = test[i]
        n, pyx = counts[names(test)[i]]
        assert y == test.targets[i] and frames.shape == (20, 2, 128, 128) and frames.dtype == torch.float32
        assert frames.sum().item() == n
        expected = np.zeros((2, 128, 128))
        np.add.at(expected, tuple(pyx), 1)
        assert torch.equal(frames.sum(0), torch.from_numpy(expected).float())
    pooled = cifar10_dvs(root, T=20, pool=4, split="test")
    p, _ = pooled[0]
    assert p.shape == (20, 2, 32, 32) and torch.isclose(p.sum() * 16, test[0][0].sum())


def test_cifar10_dvs_missing_data(tmp_path, monkeypatch):
    monkeypatch.delenv("FPTT_EXT_DATA", raising=False)
    (tmp_path / "CIFAR10DVS" / "airplane").mkdir(parents=True)  # a folder without recordings is not data
    with pytest.raises(DatasetNotFoundError) as err:
        cifar10_dvs(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "CIFAR10DVS") in msg and "airplane/<name>.aedat4" in msg
    with pytest.raises(ValueError, match="T must be a positive int"):
        cifar10_dvs(tmp_path, T=0)


def test_split_per_class_is_stratified():
    targets = [c for c in range(10) for _ in range(1000)]
    test = split_per_class(targets, "test")
    assert len(test) == 1000 and np.bincount(np.array(targets)[test]).tolist() == [100] * 10
    assert sorted(test + split_per_class(targets, "train")) == list(range(10000))
