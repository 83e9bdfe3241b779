"""The odd records the real Export API sends now and then, for the simulator to send too.

Real exports are not as tidy as a generator: Amplitude adds top-level fields over time, SDKs
send numbers inside strings and strings where numbers belong, property values can be very
long, full of unicode and escapes, and hold nested arrays and empty objects. ``oddify`` turns
one generated (compact, alphabetical) event line into one of these shapes; the dataset applies
it to a deterministic one event in ``odd_every``. Every variant stays one valid JSON object.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["NEW_FIELD", "VARIANTS", "oddify"]

NEW_FIELD: Final = "amplitude_new_field"
"""A top-level key no schema knows (as when Amplitude adds a field)."""

_LONG: Final = (
    '"long_text":"' + ('Ünïcødé ✓ 数据 \\"quoted\\" back\\\\slash tab\\t ' * 160) + '😀",'
)
_SESSION = re.compile(r'"session_id":(-?\d+)')
_USER = re.compile(r'"user_id":(?:null|"u_0*(\d+)")')


def _new_field(line: str) -> str:
    return line.replace(
        '"version_name":',
        f'"{NEW_FIELD}":{{"source":"sdk-3","flags":[[1,2],[3,[4]]]}},"version_name":',
        1,
    )


def _string_session(line: str) -> str:
    return _SESSION.sub(r'"session_id":"\1"', line, count=1)


def _number_user(line: str) -> str:
    return _USER.sub(lambda m: f'"user_id":{int(m.group(1) or 0) + 1}', line, count=1)


def _long_value(line: str) -> str:
    return line.replace('"event_properties":{', '"event_properties":{' + _LONG, 1)


def _nested(line: str) -> str:
    extra = '"matrix":[[1,2],[3,[4,[5]]]],"empty":{},"nothing":null,"list":[],'
    return line.replace('"event_properties":{', '"event_properties":{' + extra, 1)


def _numbers_in_strings(line: str) -> str:
    return line.replace(
        '"location_lat":null,"location_lng":null',
        '"location_lat":"52.5200","location_lng":"13.4050"',
        1,
    )


def _string_bool(line: str) -> str:
    return line.replace('"paying":null', '"paying":"true"', 1).replace(
        '"city":', '"city":"Z\\u00fcrich \\"Altstadt\\" 😀","_city":', 1
    )


VARIANTS: Final = (
    _new_field,
    _string_session,
    _number_user,
    _long_value,
    _nested,
    _numbers_in_strings,
    _string_bool,
)


def oddify(line: str, variant: int) -> str:
    """``line`` in odd shape number ``variant`` (taken modulo the number of shapes)."""
    return VARIANTS[variant % len(VARIANTS)](line)
