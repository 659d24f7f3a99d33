"""Shared helpers for the C runtime / codegen / M4 tests: cached test models,
blobs, TFLM golden outputs and input sets. (Imported by basename: tests/
folders are not packages.)"""
import functools
import struct
import zlib

import numpy as np

from training import testmodels

N_RANDOM = 300

tflite = testmodels.get
blob = testmodels.blob


def io_sizes(name: str) -> tuple[int, int]:
    from node_firmware import c_host
    return c_host._io_sizes(blob(name))


@functools.lru_cache(maxsize=None)
def inputs(name: str) -> np.ndarray:
    """N_RANDOM random inputs, a ramp giving every int8 value at every position, and edges."""
    size = io_sizes(name)[0]
    rng = np.random.default_rng(sum(map(ord, name)) + 7)
    x = rng.integers(-128, 128, (N_RANDOM, size), dtype=np.int8)
    ramp = (np.arange(256 * size) % 256 - 128).astype(np.int8).reshape(-1, size)
    edges = np.stack([np.full(size, -128, np.int8), np.full(size, 127, np.int8), np.zeros(size, np.int8)])
    return np.concatenate([x, ramp[: max(1, 256 // size + 1)], edges])


@functools.lru_cache(maxsize=None)
def golden(name: str) -> np.ndarray:
    """TFLM's output bytes for inputs(name)."""
    from training import tflm
    return tflm.run_batch(tflite(name), inputs(name))


def fix_crc(buf: bytearray) -> bytes:
    """Re-seal a deliberately edited blob so that only the edit is wrong."""
    size = struct.unpack_from("<I", buf, 8)[0]
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:size])))
    return bytes(buf)


def assert_same(name: str, got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, "%s %s: shape %s, TFLM %s" % (name, what, got.shape, want.shape)
    bad = int((got != want).sum())
    assert bad == 0, "%s: %d of %d output bytes of the %s differ" % (name, bad, want.size, what)
    assert len(np.unique(want)) > 1, "%s: outputs never vary, the comparison proves nothing" % name
