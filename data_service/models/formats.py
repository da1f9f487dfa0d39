"""String formats a property schema may declare, checked by ourselves so the result
does not depend on optional packages (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import date

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
