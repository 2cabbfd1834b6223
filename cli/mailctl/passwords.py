"""Password hashes for Dovecot's passwd-file: SHA512-CRYPT.

The salt is derived from the host and the address, so rendering is deterministic (same input,
same bytes) and a redeploy with unchanged passwords changes nothing, while no two users or
hosts share a salt. The algorithm is Ulrich Drepper's SHA-crypt, as glibc and Dovecot use it:
computed by the system's libcrypt (C, about 2x faster, and in parallel threads: ctypes lets
go of the GIL) when it has one, else in pure Python (same bytes). Nothing is remembered
between runs: a cache would have to key on something faster to test a guess against than
the hash itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ORDER = ((0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
          (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
          (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
          (18, 39, 60), (40, 61, 19), (62, 20, 41))
ROUNDS = 5000  # glibc's and doveadm pw's default for SHA512-CRYPT


def derived_salt(*parts: str) -> str:
    digest = hashlib.sha256(("mailctl-salt\0" + "\0".join(parts)).encode()).digest()
    return "".join(_ITOA64[b & 0x3F] for b in digest[:16])


_CRYPT_DATA_SIZE = 1 << 18  # >= struct crypt_data of libxcrypt (32 KiB) and old glibc (128 KiB)
_local = threading.local()
_memo: dict[tuple[str, str, int], str] = {}  # filled by hash_all, for this process only


@lru_cache(maxsize=1)
def _crypt_r():
    """libcrypt's crypt_r, or None when this system has none."""
    name = ctypes.util.find_library("crypt")
    try:
        func = ctypes.CDLL(name or "libcrypt.so.1").crypt_r
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_char_p
    func.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    return func


def _setting(salt: str, rounds: int) -> str:
    return f"$6${salt}" if rounds == ROUNDS else f"$6$rounds={rounds}${salt}"


def _c_crypt(password: str, salt: str, rounds: int) -> str | None:
    func = _crypt_r()
    if func is None or "\0" in password:
        return None
    if not hasattr(_local, "data"):  # crypt_r's state: one per thread
        _local.data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    setting = _setting(salt, rounds)
    out = func(password.encode("utf-8"), setting.encode("ascii"), _local.data)
    result = out.decode("ascii") if out else ""
    return result if result.startswith(setting + "$") else None  # "*0": refused (e.g. FIPS)


def hash_all(items: Iterable[tuple[str, str]], rounds: int = ROUNDS) -> None:
    """Compute the hashes of (password, salt) ITEMS ahead, on every core: rendering many
    hosts then finds each in the memo."""
    todo = list({(p, s[:16], rounds) for p, s in items} - _memo.keys())
    if len(todo) < 2 or _crypt_r() is None:
        return
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        _memo.update(zip(todo, pool.map(lambda k: sha512_crypt(*k), todo), strict=True))


@lru_cache(maxsize=4096)  # a render may ask for a user's hash more than once
def sha512_crypt(password: str, salt: str, rounds: int = ROUNDS) -> str:
    """The crypt(3) string '$6$salt$hash' for password."""
    salt = salt[:16]
    key = (password, salt, rounds)
    if key in _memo:
        return _memo[key]
    return _c_crypt(password, salt, rounds) or _py_crypt(password, salt, rounds)


def _py_crypt(password: str, salt: str, rounds: int = ROUNDS) -> str:
    p, s = password.encode("utf-8"), salt.encode("ascii")[:16]
    length = len(p)
    alt = hashlib.sha512(p + s + p).digest()
    a = hashlib.sha512(p + s)
    remaining = length
    while remaining > 64:
        a.update(alt)
        remaining -= 64
    a.update(alt[:remaining])
    bits = length
    while bits:
        a.update(alt if bits & 1 else p)
        bits >>= 1
    digest = a.digest()
    dp = hashlib.sha512(p * length).digest()
    p_seq = (dp * (length // 64 + 1))[:length]
    ds = hashlib.sha512(s * (16 + digest[0])).digest()
    s_seq = (ds * (len(s) // 64 + 1))[: len(s)]
    # Round r hashes p_seq|digest, then s_seq if r % 3, p_seq if r % 7, then digest|p_seq
    # (odd|even r). The pattern repeats every 42 = lcm(2, 3, 7) rounds: build the 42 fixed
    # parts once, so each round is one concatenation and one hash call (about 2.4x faster
    # than feeding a hash object piece by piece; same bytes).
    odd_prefix, even_suffix = [], []
    for r in range(42):
        middle = (s_seq if r % 3 else b"") + (p_seq if r % 7 else b"")
        odd_prefix.append(p_seq + middle)
        even_suffix.append(middle + p_seq)
    sha512 = hashlib.sha512
    full = rounds - rounds % 42
    for _ in range(full // 42):
        for i in range(0, 42, 2):
            digest = sha512(digest + even_suffix[i]).digest()
            digest = sha512(odd_prefix[i + 1] + digest).digest()
    for r in range(full, rounds):
        i = r % 42
        digest = sha512(odd_prefix[i] + digest if r & 1 else digest + even_suffix[i]).digest()
    out = []
    for b2, b1, b0 in _ORDER:
        out.append(_b64(digest[b2], digest[b1], digest[b0], 4))
    out.append(_b64(0, 0, digest[63], 2))
    return f"{_setting(s.decode(), rounds)}${''.join(out)}"


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    chars = []
    for _ in range(n):
        chars.append(_ITOA64[w & 0x3F])
        w >>= 6
    return "".join(chars)


def dovecot_hash(password: str, *salt_parts: str) -> str:
    return "{SHA512-CRYPT}" + sha512_crypt(password, derived_salt(*salt_parts))


def hash_users(hosts: Iterable) -> None:
    """hash_all for the users of HOSTS (MailHost) with a password and no password_hash,
    salted as dovecot_hash salts them."""
    hash_all((u.password, derived_salt(h.hostname, u.address))
             for h in hosts for u in h.users if u.password and not u.password_hash)
