"""Hypothesis strategies for keys and values, and helpers to compare values.

Values compare by *type and bits*: ``True`` is not ``1``, ``1`` is not
``1.0``, and ``-0.0`` is not ``0.0``. Use :func:`same_value` and
:func:`canon` rather than ``==``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hypothesis import strategies as st

Value = None | bool | int | float | str | bytes

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# ---------------------------------------------------------------- keys

#: Keys from a tiny alphabet, so that rules hit the same keys often.
small_keys = st.text(alphabet="abc", min_size=1, max_size=3)

#: Any non-empty text without surrogates (Hypothesis excludes them by
#: default), NUL and other control characters included.
unicode_keys = st.text(min_size=1, max_size=40)

#: Keys that are long in UTF-8 bytes: 4-byte characters repeated.
long_keys = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["x", "\u00e9", "\u20ac", "\U0001f600"]),
    st.integers(min_value=100, max_value=2000),
)

keys = st.one_of(small_keys, unicode_keys, long_keys)

# ---------------------------------------------------------------- values

INT_EDGES = [
    0,
    1,
    -1,
    INT64_MAX,
    INT64_MIN,
    INT64_MAX - 1,
    INT64_MIN + 1,
    2**31 - 1,
    -(2**31),
    2**32,
    2**53 + 1,
    -(2**53) - 1,
]

FLOAT_EDGES = [
    0.0,
    -0.0,
    5e-324,  # smallest subnormal
    -5e-324,
    2.2250738585072014e-308,  # smallest normal
    2.225073858507201e-308,  # largest subnormal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    math.inf,
    -math.inf,
    0.1,
    1.0,
    -1.0,
    float(2**53),
    float(2**63),
]

ints = st.one_of(
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.sampled_from(INT_EDGES),
)

#: Floats without NaN (NaN breaks equality); subnormals and +-0.0 included.
floats = st.one_of(
    st.floats(allow_nan=False, allow_subnormal=True),
    st.sampled_from(FLOAT_EDGES),
)

texts = st.one_of(
    st.text(max_size=50),
    st.text(max_size=2000),
    st.just(""),
    st.just("\x00"),
    st.just("a\x00b"),
)

binaries = st.one_of(
    st.binary(max_size=50),
    st.binary(max_size=4000),
    st.just(b""),
    st.just(b"\x00" * 17),
)

values: st.SearchStrategy[Value] = st.one_of(
    st.none(), st.booleans(), ints, floats, texts, binaries
)

#: Values small enough that hundreds fit in a 1 MiB dict.
small_values: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    st.text(max_size=30),
    st.binary(max_size=30),
)

#: Values of a size that fills a 64 KiB dict after a few dozen items.
bulky_values: st.SearchStrategy[Value] = st.one_of(
    small_values,
    st.binary(min_size=500, max_size=8000),
    st.builds(lambda n: "\u20ac" * n, st.integers(min_value=200, max_value=3000)),
)

#: Deltas for incr.
int_deltas = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.sampled_from([INT64_MAX, INT64_MIN]),
)
float_deltas = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False
)
deltas: st.SearchStrategy[int | float] = st.one_of(int_deltas, float_deltas)


# ---------------------------------------------------------------- helpers


def canon(v: object) -> tuple[str, str]:
    """A hashable form that tells apart every value the dict can hold.

    ``repr`` keeps the sign of ``-0.0`` and spells NaN ``nan``; the type name
    keeps ``True`` apart from ``1`` and ``1`` apart from ``1.0``.
    """
    if isinstance(v, float):
        # float.hex is exact for every finite float; repr handles inf/nan.
        return ("float", v.hex() if math.isfinite(v) else repr(v))
    return (type(v).__name__, repr(v))


def same_value(a: object, b: object) -> bool:
    """True when a and b are the same type and the same bits."""
    return canon(a) == canon(b)


def canon_map(m: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """Canonical snapshot of a mapping (see :func:`canon`)."""
    return {k: canon(v) for k, v in m.items()}


def is_number(v: object) -> bool:
    """True for the values incr accepts: int or float, not bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def incr_model(old: int | float, delta: int | float) -> int | float | None:
    """What incr should return, or None when it must raise OverflowError."""
    if isinstance(old, int) and isinstance(delta, int):
        r = old + delta
        return r if INT64_MIN <= r <= INT64_MAX else None
    return float(old) + float(delta)
