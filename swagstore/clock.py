"""The booth's clock: times are stored in UTC and shown to staff in the booth's time zone.

TIMEZONE is an IANA zone name ("America/Chicago"); unset, it is the laptop's own zone (the
TZ variable, else /etc/localtime), else UTC. Daylight saving time follows the zone's rules.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask

LOCALTIME = "/etc/localtime"


def zone(name: str | None) -> ZoneInfo:
    """Return the time zone of that name (the laptop's own if None), or raise ValueError."""
    name = name or system_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            f"TIMEZONE must be a zone name such as America/Chicago or UTC, not {name!r}"
        ) from e


def system_zone() -> str:
    """Return the name of this machine's time zone, or "UTC" when it cannot tell."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    # /etc/localtime links to /usr/share/zoneinfo/<name> on Debian and macOS.
    target = os.path.realpath(LOCALTIME)
    _, found, name = target.partition("zoneinfo/")
    return name if found and name else "UTC"


def local(when: datetime, tz: ZoneInfo) -> datetime:
    """Return a stored time in the booth's zone (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(tz)


def init_app(app: Flask) -> None:
    """Check TIMEZONE and give templates `localtime` (date and time) and `clocktime` filters."""
    tz = zone(app.config["TIMEZONE"])
    app.extensions["swagstore.timezone"] = tz

    def localtime(when: datetime | None) -> str:
        return "" if when is None else f"{local(when, tz):%Y-%m-%d %H:%M:%S}"

    def clocktime(when: datetime | None) -> str:
        return "" if when is None else f"{local(when, tz):%H:%M:%S}"

    app.add_template_filter(localtime, "localtime")
    app.add_template_filter(clocktime, "clocktime")
    app.add_template_global(tz, "booth_zone")


def booth_zone(app: Flask) -> ZoneInfo:
    """Return the app's time zone (set up by init_app)."""
    return app.extensions["swagstore.timezone"]
