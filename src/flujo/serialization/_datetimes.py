"""Datetimes, times and zones as the text flujo stores: ISO 8601 with an RFC 9557 suffix.

``2024-03-10T01:30:00-05:00[America/New_York]``: the wall time and UTC offset as ISO 8601,
then, in brackets, what the offset alone does not say: ``[fold=1]`` for the later of two
repeated wall times where the offset cannot tell it, an IANA zone's key, or
``[tzname=...]`` for a ``datetime.timezone`` given a name. The generic form of a datetime or
time is this text; the typed form (``rows@3``) holds it for the datetimes pydantic-core
cannot write without losing their zone (``datetime_from_text`` reads it there too).

A zone is looked up only among the names of the time zone database (``_KNOWN_ZONES``):
never a name chosen by stored data that would make ``ZoneInfo`` import a module.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic_core import to_jsonable_python

from ..exceptions import DeserializationError, SerializationError, caused

__all__ = ["FOLD", "common_zoned_text", "datetime_from_text", "datetime_text", "offset_suffix",
           "time_from_text", "time_text", "zone_suffix", "zoneinfo_from_text"]

# Suffixes of the zones seen, by identity (timezone equality ignores the name, so equal
# zones may need different suffixes); each entry holds its zone, so its id is not reused.
_SUFFIXES: Final[dict[int, tuple[tzinfo, str, bool]]] = {}
_MAX_SUFFIXES: Final = 256


def _zone_facts(tz: tzinfo) -> tuple[str, bool]:
    """The zone's suffix (see ``offset_suffix``) and whether it is a ``datetime.timezone``
    of whole minutes, whose ISO text pydantic-core writes exactly as ``isoformat()``."""
    known = _SUFFIXES.get(id(tz))
    if known is not None and known[0] is tz:
        return known[1], known[2]
    suffix = zone_suffix(tz)
    offset = tz.utcoffset(None) if type(tz) is timezone else None
    minutes = offset is not None and offset.microseconds == 0 and offset.seconds % 60 == 0
    if len(_SUFFIXES) >= _MAX_SUFFIXES:
        _SUFFIXES.clear()
    _SUFFIXES[id(tz)] = (tz, suffix, minutes)
    return suffix, minutes


def offset_suffix(tz: tzinfo | None) -> str:
    """``[Zone/Key]`` for IANA zones, ``[tzname=...]`` for named fixed offsets, else ''."""
    return "" if tz is None else _zone_facts(tz)[0]


def zone_suffix(tz: tzinfo) -> str:
    if isinstance(tz, ZoneInfo):
        # Any, not str as typeshed says: a ZoneInfo built from a file has None, which the
        # compiled module would refuse with a bare TypeError before the check below
        key: Any = getattr(tz, "key", None)
        if key is None:
            raise SerializationError("a ZoneInfo built from a file has no key to store")
        if key not in _KNOWN_ZONES:  # e.g. posix/..., right/...: refused now, not at load
            raise SerializationError(
                f"time zone {key!r} is not in the time zone database's list of zones, so "
                "it could not be read back; use its canonical name")
        if key in _MACHINE_ZONES:
            raise SerializationError(
                f"time zone {key!r} is this machine's own, and would be read as the reading "
                "machine's; use its IANA name (e.g. Europe/Paris)")
        return f"[{key}]"
    if type(tz) is timezone:
        offset = tz.utcoffset(None)
        if tz is not UTC and tz.tzname(None) != timezone(offset).tzname(None):
            return f"[tzname={tz.tzname(None)}]"
        return ""
    if type(tz).__module__.startswith("pydantic"):  # pydantic's TzInfo: a fixed offset
        return ""
    raise SerializationError(
        f"cannot store the time zone {tz!r} ({type(tz).__qualname__}): use a fixed "
        "datetime.timezone offset or a zoneinfo.ZoneInfo"
    )


FOLD: Final = "[fold=1]"


def _split_zone(text: str) -> tuple[str, bool, str | None]:
    """``iso[fold=1][zone]`` -> (iso, fold, zone). The fold marker comes first: a tzname
    may contain anything, so only its own brackets may end the text."""
    base, bracket, rest = text.partition("[")
    if not bracket:
        return text, False, None
    rest = bracket + rest
    fold = rest.startswith(FOLD)
    if fold:
        rest = rest[len(FOLD):]
    if not rest:
        return base, fold, None
    if not rest.endswith("]"):
        raise DeserializationError(f"malformed zone suffix in {text!r}")
    return base, fold, rest[1:-1]


# The common zoned datetime, fold 0 in a ZoneInfo zone met before (its suffix in
# _zone_facts' cache) at an offset of whole minutes met before, costs two lookups besides
# pydantic-core's text. The offsets met that pydantic-core writes as isoformat() does
# (timedelta hashes by value):
_WHOLE_MINUTES: Final[set[timedelta]] = set()


def common_zoned_text(dt: datetime) -> str | None:
    """The text of the common zoned datetime (above), else None."""
    tz = dt.tzinfo
    if type(tz) is not ZoneInfo or dt.fold:
        return None
    known = _SUFFIXES.get(id(tz))
    if known is None or known[0] is not tz or dt.utcoffset() not in _WHOLE_MINUTES:
        return None
    return _iso_text(dt) + known[1]


def datetime_text(dt: datetime) -> str:
    text = common_zoned_text(dt)
    if text is not None:
        return text
    tz = dt.tzinfo
    if tz is None or tz is UTC:
        suffix, minutes = "", True
    else:
        known = _SUFFIXES.get(id(tz))  # _zone_facts' cache, read inline: this is hot
        suffix, minutes = ((known[1], known[2]) if known is not None and known[0] is tz
                           else _zone_facts(tz))
    if dt.fold and (not isinstance(tz, ZoneInfo)
                    or dt.replace(fold=0).utcoffset() == dt.utcoffset()):
        # fold picks the later of two repeated wall times and isoformat() drops it; a zone's
        # offset tells it only for an ambiguous wall time, otherwise say it.
        suffix = FOLD + suffix
    if not minutes:
        if type(tz) is not ZoneInfo:
            return dt.isoformat() + suffix
        # a zone's offset at this time: pydantic-core writes whole minutes as isoformat()
        # does (and cuts seconds off, which isoformat() keeps)
        offset = dt.utcoffset()
        if offset is None or offset.seconds % 60 or offset.microseconds:
            return dt.isoformat() + suffix
        if len(_WHOLE_MINUTES) >= _MAX_SUFFIXES:  # remembered for common_zoned_text
            _WHOLE_MINUTES.clear()
        _WHOLE_MINUTES.add(offset)
    return _iso_text(dt) + suffix


def _iso_text(dt: datetime) -> str:
    """isoformat()'s text, by pydantic-core in half the time (the tests check they agree),
    except that pydantic says "Z" for +00:00."""
    text: str = to_jsonable_python(dt)
    return text[:-1] + "+00:00" if text[-1] == "Z" else text


def _apply_zone(zone: str, fixed: timezone) -> tzinfo:
    if zone.startswith("tzname="):
        return timezone(fixed.utcoffset(None), zone[len("tzname="):])
    return zoneinfo_from_text(zone)


# Read once at import (a few ms), never while decoding: looking a name up later could import
# tzdata resource packages named after it.
_KNOWN_ZONES: Final = frozenset(available_timezones())
# Names some systems list among their zones that stand for the machine's own setting: read
# elsewhere, they would be another zone. Refused when written (read as ever, for old data).
_MACHINE_ZONES: Final = frozenset({"localtime", "posixrules"})


# The IANA zones read, by the tail of their text after its "[" ("Europe/Paris]"): the
# datetimes of a list mostly name a few zones, looked up once. Only names in the database
# get in (through zoneinfo_from_text), and only where no fold marker precedes them.
_ZONES_READ: Final[dict[str, tzinfo]] = {}
_ZONES_READ_KEPT: Final = 1024
_combine = datetime.combine
_from_iso = datetime.fromisoformat


def datetime_from_text(text: str) -> datetime:
    base, bracket, rest = text.partition("[")
    if not bracket:  # ISO 8601 alone
        return _from_iso(text)
    known = _ZONES_READ.get(rest)
    if known is not None:  # the common zoned text: a zone read before, no fold marker
        return _in_zone(_from_iso(base), known, False, text)
    base, fold, zone = _split_zone(text)
    dt = _from_iso(base)
    if fold:
        dt = dt.replace(fold=1)
    if zone is None:
        return dt
    if dt.tzinfo is None:
        raise DeserializationError(f"datetime {text!r} names a zone but has no UTC offset")
    tz = _apply_zone(zone, dt.tzinfo)  # type: ignore[arg-type]
    if not fold and type(tz) is ZoneInfo:
        if len(_ZONES_READ) >= _ZONES_READ_KEPT:
            _ZONES_READ.clear()
        _ZONES_READ[rest] = tz
    return _in_zone(dt, tz, fold, text)


def _in_zone(dt: datetime, tz: tzinfo, fold: bool, text: str) -> datetime:
    """The wall time of ``dt`` in ``tz``, whose offset there must be ``dt``'s (else the later
    of two repeated wall times, unless ``fold`` already says it is). Attaching the zone by
    ``combine()`` costs a third of ``replace(tzinfo=)``."""
    offset = dt.utcoffset()
    if offset is None:
        raise DeserializationError(f"datetime {text!r} names a zone but has no UTC offset")
    local = _combine(dt, dt.time(), tz)
    if local.utcoffset() != offset and not fold:  # the offset says which of two wall times
        local = local.replace(fold=1)
    if local.utcoffset() != offset:
        raise DeserializationError(f"offset of {text!r} does not exist in its zone")
    return local


def time_text(t: time) -> str:
    if isinstance(t.tzinfo, ZoneInfo):
        raise SerializationError("a time with a ZoneInfo zone has no fixed offset to store")
    return t.isoformat() + (FOLD if t.fold else "") + offset_suffix(t.tzinfo)


def time_from_text(text: str) -> time:
    base, fold, zone = _split_zone(text)
    t = time.fromisoformat(base)
    if fold:
        t = t.replace(fold=1)
    if zone is not None:
        if not zone.startswith("tzname=") or t.tzinfo is None:
            raise DeserializationError(f"malformed time {text!r}")
        t = t.replace(tzinfo=_apply_zone(zone, t.tzinfo))  # type: ignore[arg-type]
    return t


def zoneinfo_from_text(text: str) -> ZoneInfo:
    # Only names in the time zone database: for any other name ZoneInfo would go looking
    # for it, importing tzdata submodules named after it, i.e. chosen by stored data.
    if text not in _KNOWN_ZONES:
        raise DeserializationError(f"unknown time zone {text!r}")
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise caused(DeserializationError(f"unknown time zone {text!r}"), exc)
