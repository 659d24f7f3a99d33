"""SHA-256, HMAC-SHA256 and the manifest reader of the Nano 33 C core against
Python's hashlib/hmac and contract.protocol.manifest_signing_bytes."""
import hashlib
import hmac
import json

import pytest

from contract import protocol as P

import nano33_harness as H


@pytest.mark.parametrize("n", [0, 1, 3, 55, 56, 57, 63, 64, 65, 127, 128, 129, 1000, 1_000_000])
def test_sha256_matches_hashlib(n):
    data = (b"abc" * (n // 3 + 1))[:n] if n < 1000 else bytes(i * 7 & 0xFF for i in range(n))
    assert H.tool("sha256", data=data).stdout.decode() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("key", [b"", b"k", b"x" * 64, b"y" * 65, bytes(range(200))])
@pytest.mark.parametrize("msg", [b"", b"what do ya want for nothing?", bytes(range(256)) * 3])
def test_hmac_sha256_matches_hmac_module(key, msg):
    want = hmac.new(key, msg, hashlib.sha256).hexdigest()
    assert H.tool("hmac", key.hex(), data=msg).stdout.decode() == want


def manifest(**kw):
    args = dict(deployment="d-1", model="sine", version=2, blob=b"\x01" * 1000, chunk_size=256,
                golden=[(b"\x00\x01", b"\x7f"), (b"\xff" * 40, b"\x80\x00")])
    args.update(kw)
    return P.build_manifest(b"k", args.pop("key_id", "fleet"), **args)


@pytest.mark.parametrize("m", [
    manifest(), manifest(rollback=True, key_id="node"), manifest(golden=[]),
    manifest(deployment="dépl\u00f6y-\U0001F600/\"q\"", version=123456789012, min_runtime=0),
])
@pytest.mark.parametrize("style", ["compact", "sorted_spaced", "ascii", "extra_keys"])
def test_signing_bytes_match_the_contract(m, style):
    if style == "compact":
        text = json.dumps(m, separators=(",", ":"), ensure_ascii=False)
    elif style == "sorted_spaced":
        text = json.dumps(m, sort_keys=True, indent=2)
    elif style == "ascii":
        text = json.dumps(m).replace("/", "\\/")
    else:
        text = json.dumps({"zz_future": {"a": [1, 2.5e3, None, True]}, **m, "note": "x" * 200})
    r = H.tool("signing-bytes", data=text.encode())
    assert r.returncode == 0 and r.stdout == P.manifest_signing_bytes(m)


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("hmac"),
    lambda m: m.__setitem__("version", "2"),
    lambda m: m.__setitem__("version", 2.0),
    lambda m: m.__setitem__("size", True),
    lambda m: m.__setitem__("rollback", 0),
    lambda m: m.__setitem__("v", 2),
    lambda m: m.__setitem__("sha256", "ab" * 31),
    lambda m: m.__setitem__("sha256", "zz" * 32),
    lambda m: m.__setitem__("chunk_size", 0),
    lambda m: m.__setitem__("golden", [["AAE="]]),
    lambda m: m.__setitem__("golden", [["AAE", "fw=="]]),
])
def test_manifest_reader_is_strict(edit):
    m = manifest()
    edit(m)
    assert H.tool("signing-bytes", data=json.dumps(m).encode()).returncode == 1


@pytest.mark.parametrize("text", [
    b"", b"[]", b"{", b'{"v":1,}', b'{"v":1} x', b'{"v":01}', b"{'v':1}",
    json.dumps(manifest()).encode()[:-1],
    json.dumps(manifest()).encode().replace(b'"v": 1', b'"v": 1, "v": 1'),
])
def test_manifest_reader_rejects_bad_json(text):
    assert H.tool("signing-bytes", data=text).returncode == 1


def test_unknown_long_keys_and_nested_values_are_skipped():
    m = manifest()
    text = json.dumps({"a_future_field_with_a_long_name": {"x": ["y", {"z": 'q"\u00e9\\'}]}, **m})
    r = H.tool("signing-bytes", data=text.encode())
    assert r.returncode == 0 and r.stdout == P.manifest_signing_bytes(m)
