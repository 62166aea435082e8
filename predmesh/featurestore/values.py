"""Parsing, validation and encoding of feature values.

Redis stores every value as text: floats and ints as decimal text, bools as "1"/"0"
("true"/"false" accepted on read), categories as their string. Functions here are
pure and return `None` for a value that fails validation (wrong type, unparsable,
outside [min, max], not a registered category, NaN/inf).
"""

from __future__ import annotations

import math

from predmesh.featurestore.spec import DType, FeatureSpec, Scalar

_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"0", "false"})


def in_domain(spec: FeatureSpec, value: Scalar) -> bool:
    """Range and category checks for a value that already has the dtype's Python type."""
    if spec.dtype is DType.CATEGORY:
        return isinstance(value, str) and value in spec.categories
    if spec.dtype in (DType.FLOAT, DType.INT):
        number = float(value)
        if not math.isfinite(number):
            return False
        if spec.min is not None and number < spec.min:
            return False
        if spec.max is not None and number > spec.max:
            return False
    return True


def _number_to_dtype(spec: FeatureSpec, number: float | int) -> Scalar | None:
    if spec.dtype is DType.FLOAT:
        result = float(number)
        return result if math.isfinite(result) else None
    if spec.dtype is DType.INT:
        if isinstance(number, int):
            return number
        if math.isfinite(number) and float(number).is_integer():
            return int(number)
        return None
    if spec.dtype is DType.BOOL:
        if number == 1:
            return True
        if number == 0:
            return False
        return None
    return None  # a number is never a category


def parse_text(spec: FeatureSpec, text: str) -> Scalar | None:
    """Parse the stored text form of a value; `None` when it is invalid."""
    value: Scalar | None
    text = text.strip()
    if spec.dtype is DType.CATEGORY:
        value = text
    elif spec.dtype is DType.BOOL:
        lowered = text.lower()
        value = True if lowered in _TRUE else False if lowered in _FALSE else None
    elif spec.dtype is DType.INT:
        try:
            value = int(text)
        except ValueError:
            try:
                value = _number_to_dtype(spec, float(text))
            except ValueError:
                value = None
    else:
        try:
            value = _number_to_dtype(spec, float(text))
        except ValueError:
            value = None
    if value is None or not in_domain(spec, value):
        return None
    return value


def parse_stored(spec: FeatureSpec, raw: bytes) -> Scalar | None:
    """Parse a raw Redis value (bytes); invalid UTF-8 counts as invalid.

    Numbers, the common case, are parsed from the bytes directly (`float`/`int` accept
    ASCII bytes with surrounding whitespace, as the text path does), and bools stored as
    `1`/`0` are compared as bytes; anything else takes the text path, so the result is
    always what `parse_text` says.
    """
    dtype = spec.dtype
    if dtype is DType.FLOAT:
        try:
            number = float(raw)
        except ValueError:
            pass
        else:
            ok = math.isfinite(number) and not (
                (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max)
            )
            return number if ok else None
    elif dtype is DType.INT:
        try:
            integer = int(raw)  # ASCII digits (and whitespace, `_`), exactly what int(text) accepts of them
        except ValueError:
            pass
        else:
            return integer if in_domain(spec, integer) else None
    elif dtype is DType.BOOL:
        if raw == b"1":
            return True
        if raw == b"0":
            return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return parse_text(spec, text)


def coerce(spec: FeatureSpec, value: Scalar | None) -> Scalar | None:
    """Validate a request-context value; `None` (no value given) and wrong kinds are invalid.

    Numbers are accepted for float/int (ints must be integral) and for bool (0/1);
    strings are parsed like stored text; bools are accepted for bool only.
    """
    result: Scalar | None
    if value is None:
        return None
    if isinstance(value, str):
        return parse_text(spec, value)
    if isinstance(value, bool):
        result = value if spec.dtype is DType.BOOL else None
    else:
        result = _number_to_dtype(spec, value)
    if result is None or not in_domain(spec, result):
        return None
    return result


def why_invalid(spec: FeatureSpec, value: Scalar | None) -> str:
    """Why `coerce(spec, value)` refused `value`, for an INVALID_ARGUMENT message."""
    if value is None:
        return "no value set"
    kind = "a bool" if isinstance(value, bool) else "a string" if isinstance(value, str) else "a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, str) and spec.dtype is not DType.CATEGORY:
        parsed = parse_text(FeatureSpec(spec.name, spec.dtype, spec.source, spec.default), value)
        if parsed is None:
            return f"expected {spec.dtype.value}, got {kind} {value[:40]!r}"
        value = parsed
    elif spec.dtype is DType.CATEGORY and not isinstance(value, str):
        return f"expected a category, got {kind}"
    elif spec.dtype is not DType.BOOL and isinstance(value, bool):
        return f"expected {spec.dtype.value}, got a bool"
    elif spec.dtype is DType.INT and not float(value).is_integer():
        return f"expected an integral int, got {value}"
    elif spec.dtype is DType.BOOL and not isinstance(value, bool) and value not in (0, 1):
        return f"expected bool (or 0/1), got {value}"
    if spec.dtype is DType.CATEGORY:
        return f"{str(value)[:40]!r} is not one of {sorted(spec.categories)}"
    return f"{value} is outside [{spec.min}, {spec.max}]"


def encode(spec: FeatureSpec, value: object) -> str | None:
    """Stored text form of `value`, or `None` when it is not a valid value of `spec`.

    Accepts Python and numpy scalars (anything with `.item()`), and text.
    """
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str):
        value = item()
    if isinstance(value, str):
        parsed = parse_text(spec, value)
    elif isinstance(value, bool | int | float):
        parsed = coerce(spec, value)
    else:
        return None
    if parsed is None:
        return None
    if spec.dtype is DType.BOOL:
        return "1" if parsed else "0"
    if spec.dtype is DType.FLOAT:
        return repr(float(parsed))
    return str(parsed)
