"""SHA512-CRYPT: mailctl's pure-Python implementation against glibc's crypt(3), and the
libcrypt path (C, threads) against the pure-Python one."""

from __future__ import annotations

import random
import string
import warnings

import pytest

from mailctl import passwords
from mailctl.passwords import _ITOA64, _c_crypt, _py_crypt, hash_all, sha512_crypt

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    crypt = pytest.importorskip("crypt")

CASES = []
_rng = random.Random(7)
for _length in (0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 300):
    for _rounds in (1000, 1041, 1042, 1043, 5000):
        CASES.append(("".join(_rng.choice(string.printable + "éü€") for _ in range(_length)),
                      "".join(_rng.choice(_ITOA64) for _ in range(_rng.choice((1, 8, 16)))),
                      _rounds))


@pytest.mark.parametrize(("password", "salt", "rounds"), CASES)
def test_sha512_crypt_matches_glibc(password, salt, rounds):
    setting = "$6$" + ("" if rounds == 5000 else f"rounds={rounds}$") + salt
    expected = crypt.crypt(password, setting)
    if not expected or not expected.startswith("$6$"):
        pytest.skip("this libc has no SHA512-CRYPT")
    assert _py_crypt(password, salt, rounds) == expected


@pytest.mark.parametrize(("password", "salt", "rounds"), CASES[::4])
def test_the_libcrypt_path_gives_the_same_bytes(password, salt, rounds):
    c = _c_crypt(password, salt, rounds)
    if c is None:
        pytest.skip("no libcrypt with SHA512-CRYPT here")
    assert c == _py_crypt(password, salt, rounds)
    assert sha512_crypt(password, salt, rounds) == c


def test_hash_all_fills_the_memo_from_threads_with_the_same_hashes(monkeypatch):
    monkeypatch.setattr(passwords, "_memo", {})
    items = [(f"pw-{i}", f"salt{i:04d}") for i in range(40)]
    hash_all(items)
    if passwords._crypt_r() is None:
        assert passwords._memo == {}
    else:
        assert len(passwords._memo) == 40
    for password, salt in items:
        assert sha512_crypt(password, salt) == _py_crypt(password, salt)


def test_without_libcrypt_the_pure_python_hash_is_used(monkeypatch):
    monkeypatch.setattr(passwords, "_crypt_r", lambda: None)
    monkeypatch.setattr(passwords, "_memo", {})
    hash_all([("a", "s1"), ("b", "s2")])
    assert passwords._memo == {}
    assert sha512_crypt("a", "s1") == _py_crypt("a", "s1")
