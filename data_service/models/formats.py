"""String formats a property schema may declare, checked by ourselves so the result
does not depend on optional packages (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta

from jsonschema import FormatChecker


def _string_check(pattern: str, extra: Callable[[re.Match], bool] = lambda m: True):
    regex = re.compile(pattern)

    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True
        match = regex.fullmatch(value)
        return match is not None and extra(match)

    return check


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OFFSET = r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
_TIME = rf"([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(?:\.\d+)?{_OFFSET}"


def _valid_date(y: str, m: str, d: str) -> bool:
    try:
        date(int(y), int(m), int(d))
    except ValueError:
        return False
    return True


def _valid_ip(kind: type) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            kind(value)
        except ValueError:
            return False
        return "%" not in value

    return check


def _valid_regex(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        re.compile(value)
    except re.error:
        return False
    return True


FORMATS: dict[str, Callable[[object], bool]] = {
    "email": _string_check(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?=.{{1,253}}\Z)(?:{_LABEL}\.)*{_LABEL}"),
    "date-time": _string_check(rf"(\d{{4}})-(\d\d)-(\d\d)[Tt]{_TIME}", lambda m: _valid_date(*m.groups()[:3])),
    "date": _string_check(r"(\d{4})-(\d\d)-(\d\d)", lambda m: _valid_date(*m.groups())),
    "time": _string_check(_TIME),
    "uuid": _string_check(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
    "uri": _string_check(r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?#\[\]-]|%[0-9A-Fa-f]{2})*"),
    "hostname": _string_check(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}"),
    "ipv4": _valid_ip(ipaddress.IPv4Address),
    "ipv6": _valid_ip(ipaddress.IPv6Address),
    "regex": _valid_regex,
}
FORMAT_CHECKER = FormatChecker(formats=())
for _name, _check in FORMATS.items():
    FORMAT_CHECKER.checks(_name)(_check)


_DATE_TIME = re.compile(r"(\d{4}-\d\d-\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?(?:[Zz]|([+-])(\d\d):(\d\d))")


def utc_date_time(value: str) -> str:
    """A valid RFC 3339 date-time in UTC with upper-case ``T`` and ``Z``, fraction kept
    as written (``2024-01-01t05:30:00.5+05:30`` → ``2024-01-01T00:00:00.5Z``), so that
    stored values compare and sort as times. Anything else is returned unchanged."""
    match = _DATE_TIME.fullmatch(value)
    if match is None or not FORMATS["date-time"](value):
        return value
    day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    leap = second == "60"  # datetime has no leap second; an offset moves hours and minutes only
    at = datetime.fromisoformat(f"{day}T{hour}:{minute}:{'59' if leap else second}")
    if sign:
        try:
            at -= (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m))
        except OverflowError:  # before year 1 or after 9999 in UTC: kept as written
            return value
    text = at.isoformat()[:17] + ("60" if leap else second)  # isoformat pads years below 1000
    return f"{text}{fraction or ''}Z"
