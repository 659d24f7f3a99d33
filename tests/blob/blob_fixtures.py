"""Shared helpers for the model blob tests: cached test models and blobs.
(Imported by basename: tests/ folders are not packages.)"""
import struct
import zlib

from training import testmodels

tflite = testmodels.get
blob = testmodels.blob


def fix_crc(buf: bytearray) -> bytes:
    """Re-seal a deliberately edited blob so that only the edit is wrong."""
    struct.pack_into("<I", buf, 12, zlib.crc32(bytes(buf[16:struct.unpack_from("<I", buf, 8)[0]])))
    return bytes(buf)
