"""SHA512-CRYPT: mailctl's pure-Python implementation against glibc's crypt(3)."""

from __future__ import annotations

import random
import string
import warnings

import pytest

from mailctl.passwords import _ITOA64, sha512_crypt

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
    assert sha512_crypt.__wrapped__(password, salt, rounds) == expected
