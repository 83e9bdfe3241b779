"""The simulated project's visitors and events, drawn from the site's catalogue
(``site_catalog.py``: pages, blog posts, countries, referrers, devices), and the deterministic
hashing that turns (seed, hour, event number) into one event.

Pure and cached (``build_model``); ``dataset.Dataset`` draws its events from it.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from .site_catalog import (
    BLOG_POSTS,
    BUTTONS,
    COMPANIES,
    COUNTRIES,
    DEVICES,
    LIBRARY,
    PAGES,
    PLANS,
    REFERRERS,
    SITE,
)

_HOUR_US: Final = 3_600_000_000
_MASK48: Final = (1 << 48) - 1
_MASK64: Final = (1 << 64) - 1
_TABLE: Final = 4096  # size of the per-event lookup tables (power of two)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_2000: Final = 262_968  # hours from 1970 to 2000-01-01
_MUL_A: Final = 0x9E3779B97F4B  # odd: multiplying by it is a bijection modulo 2**48
_MUL_B: Final = 0xD1B54A32D193


def _hour_index(hour: datetime) -> int:
    return int((hour - _EPOCH).total_seconds()) // 3600


def _mix(*values: int) -> int:
    """splitmix64 over several integers: a cheap, well-spread deterministic hash."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK64)) & _MASK64
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state


def _unit(*values: int) -> float:
    """A deterministic float in [0, 1)."""
    return (_mix(*values) >> 11) / float(1 << 53)


def _uuid_prefix(value: int) -> str:
    """The first 24 characters of a version-4-looking UUID, derived from ``value``."""
    h = _mix(value, 0x5EED)
    return "%08x-%04x-4%03x-%04x-" % (  # noqa: UP031 - hot path style kept consistent
        h >> 32,
        (h >> 16) & 0xFFFF,
        (h >> 4) & 0xFFF,
        0x8000 | (_mix(value, 0xA11CE) & 0x3FFF),
    )


def _frag(obj: Mapping[str, Any]) -> str:
    """JSON for a dict without its braces, ending with a comma (or empty)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    inner = text[1:-1]
    return inner + "," if inner else ""


def _js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- site model


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def _activity(local_hour: int) -> float:
    """Relative browsing activity by local hour: low at night, peak in the afternoon."""
    return 0.12 + math.exp(-(((local_hour - 14.5) / 4.5) ** 2))


@dataclass(frozen=True, slots=True)
class _Visitor:
    """A session-level template: everything that stays constant within a session."""

    session_fmt: str  # a %-format with the visitor's constants baked in, escaped
    no_session: bool


@dataclass(frozen=True, slots=True)
class _Model:
    visitors: tuple[_Visitor, ...]
    visitor_tables: tuple[tuple[int, ...], ...]  # per UTC hour of day: _TABLE visitor indexes
    events: tuple[tuple[str, str], ...]  # per table slot: (event_properties fragment, type)
    session_start: tuple[str, str]
    session_lengths: tuple[int, ...]
    jitter_frac: tuple[float, ...]  # [0, 1): position of an event inside its time slot
    delays_us: tuple[int, ...]  # event_time = server_upload_time - delay
    mmss: tuple[str, ...]  # "MM:SS" for every second of an hour
    uuid_heads: tuple[str, ...]  # random-looking first 24 characters of UUIDs


def _weighted_table(rng: random.Random, items: int, weights: list[float], size: int) -> list[int]:
    return rng.choices(range(items), weights=weights, k=size)


# The JSON line, alphabetical like a real export. ``%%s`` survive the session-level
# substitution and are filled per event: insert_id, client_event_time, client_upload_time,
# event_id, event_properties head, event_time, event_type, processed_time,
# server_received_time, server_upload_time, uuid.
_LINE = (
    '{"$insert_id":"%%s","$insert_key":null,"$schema":null,"adid":null,'
    '"amplitude_attribution_ids":null,"amplitude_event_type":null,"amplitude_id":%(amplitude_id)s,'
    '"app":%(app)s,"city":%(city)s,"client_event_time":"%%s","client_upload_time":"%%s",'
    '"country":%(country)s,"data":{"path":"/2/httpapi","group_first_event":{},"group_ids":{}},'
    '"data_type":"event","device_brand":null,"device_carrier":null,'
    '"device_family":%(device_family)s,"device_id":"%(device_id)s","device_manufacturer":null,'
    '"device_model":%(device_model)s,"device_type":%(device_type)s,"dma":%(dma)s,'
    '"event_id":%%d,"event_properties":{%%s%(referrer)s},"event_time":"%%s",'
    '"event_type":"%%s","global_user_properties":{},"group_properties":{},"groups":{},'
    '"idfa":null,"ip_address":%(ip_address)s,"is_attribution_event":false,'
    '"language":%(language)s,"library":"%(library)s","location_lat":null,"location_lng":null,'
    '"os_name":%(os_name)s,"os_version":%(os_version)s,"partner_id":null,"paying":null,'
    '"plan":{},"platform":"Web","processed_time":"%%s","region":%(region)s,"sample_rate":null,'
    '"server_received_time":"%%s","server_upload_time":"%%s","session_id":%(session_id)s,'
    '"source_id":null,"start_version":null,"user_creation_time":%(user_creation_time)s,"user_id":%(user_id)s,'
    '"user_properties":{%(user_properties)s},"uuid":"%%s","version_name":null}\n'
)


@functools.lru_cache(maxsize=8)
def _build_model(seed: int, project_id: int) -> _Model:
    rng = random.Random(seed * 1_000_003 + 17)

    # ---- visitors: country, city, device, referrer, company
    n_visitors = 2048
    c_weights = [c[2] for c in COUNTRIES]
    d_weights = [d[5] for d in DEVICES]
    r_weights = [r[4] for r in REFERRERS]
    co_weights = _zipf_weights(len(COMPANIES), 0.9)
    visitors: list[_Visitor] = []
    visitor_country: list[int] = []
    for _ in range(n_visitors):
        ci = rng.choices(range(len(COUNTRIES)), weights=c_weights)[0]
        country, _offset, _w, language, ip_head, cities = COUNTRIES[ci]
        city, region, dma = rng.choice(cities)
        os_name, os_version, family, dtype, dmodel, _dw = DEVICES[
            rng.choices(range(len(DEVICES)), weights=d_weights)[0]
        ]
        ref, ref_domain, utm_source, utm_medium, _rw = REFERRERS[
            rng.choices(range(len(REFERRERS)), weights=r_weights)[0]
        ]
        ip = f"{ip_head}{rng.randrange(1, 255)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
        event_props: dict[str, Any] = {"referrer": ref, "referring_domain": ref_domain}
        user_props: dict[str, Any] = {
            "initial_referrer": ref or "EMPTY",
            "initial_referring_domain": ref_domain or "EMPTY",
        }
        if utm_source is not None:
            event_props["utm_source"] = utm_source
            user_props["initial_utm_source"] = utm_source
        if utm_medium is not None:
            event_props["utm_medium"] = utm_medium
            user_props["initial_utm_medium"] = utm_medium
        if rng.random() < 0.32:
            domain, name = COMPANIES[rng.choices(range(len(COMPANIES)), weights=co_weights)[0]]
            user_props["company_domain"] = domain
            user_props["company_name"] = name
            user_props["company_size"] = rng.choice(
                ["1-10", "11-50", "51-200", "201-1000", "1000+"]
            )
        elif rng.random() < 0.2:
            user_props["company_domain"] = None
        if rng.random() < 0.15:
            user_props["plan"] = rng.choices([p for p, _ in PLANS], [w for _, w in PLANS])[0]
        no_session = rng.random() < 0.02
        values = {
            "app": str(project_id),
            "city": _js(city),
            "country": _js(country),
            "region": _js(region),
            "dma": _js(dma),
            "device_family": _js(family),
            "device_model": _js(dmodel),
            "device_type": _js(dtype),
            "ip_address": _js(ip),
            "language": _js(language),
            "library": LIBRARY,
            "os_name": _js(os_name),
            "os_version": _js(os_version),
            "referrer": _frag(event_props)[:-1],
            "user_properties": _frag(user_props)[:-1],
        }
        # Everything user-visible is escaped so the per-session substitution leaves it alone.
        escaped = {k: val.replace("%", "%%%%") for k, val in values.items()}
        escaped["amplitude_id"] = "%(amplitude_id)s"
        escaped["device_id"] = "%(device_id)s"
        escaped["session_id"] = "%(session_id)s"
        escaped["user_id"] = "%(user_id)s"
        escaped["user_creation_time"] = "%(user_creation_time)s"
        # Two rounds: this one bakes the visitor, the session round bakes ids, leaving %s.
        session_fmt = _LINE.replace("%%", "%%%%") % escaped
        visitors.append(_Visitor(session_fmt=session_fmt, no_session=no_session))
        visitor_country.append(ci)

    # Visitors weighted by how awake their country is at each UTC hour of day.
    tables: list[tuple[int, ...]] = []
    for utc_h in range(24):
        weights = [
            _activity((utc_h + COUNTRIES[visitor_country[v]][1]) % 24) for v in range(n_visitors)
        ]
        tables.append(tuple(_weighted_table(rng, n_visitors, weights, _TABLE)))

    # ---- events: (event_properties head, event_type)
    page_w = [p[2] for p in PAGES]
    blog_w = _zipf_weights(len(BLOG_POSTS), 1.05)
    events: list[tuple[str, str]] = []

    def page_props(path: str, title: str) -> dict[str, Any]:
        return {
            "[Amplitude] Page Location": SITE + path,
            "page_path": path,
            "page_title": title,
        }

    for _ in range(_TABLE):
        kind = rng.choices(
            ["page", "blog", "button", "scroll", "form", "signup"],
            weights=[46.0, 22.0, 12.0, 14.0, 2.5, 1.5],
        )[0]
        if kind == "page":
            path, title, _pw = PAGES[rng.choices(range(len(PAGES)), weights=page_w)[0]]
            events.append((_frag(page_props(path, title)), "Page Viewed"))
        elif kind == "blog":
            slug, title, category, author, minutes = BLOG_POSTS[
                rng.choices(range(len(BLOG_POSTS)), weights=blog_w)[0]
            ]
            props = page_props(f"/blog/{slug}", f"{title} - ShipFast Blog")
            props |= {
                "blog_post_slug": slug,
                "blog_post_title": title,
                "blog_category": category,
                "blog_author": author,
                "read_time_min": minutes,
            }
            events.append((_frag(props), "Blog Post Viewed"))
        elif kind == "button":
            path, title, _pw = PAGES[rng.choices(range(len(PAGES)), weights=page_w)[0]]
            button = rng.choices([b for b, _ in BUTTONS], [w for _, w in BUTTONS])[0]
            props = page_props(path, title) | {"button_text": button}
            events.append((_frag(props), "Button Clicked"))
        elif kind == "scroll":
            if rng.random() < 0.5:
                slug, title, *_rest = BLOG_POSTS[
                    rng.choices(range(len(BLOG_POSTS)), weights=blog_w)[0]
                ]
                path, title = f"/blog/{slug}", f"{title} - ShipFast Blog"
            else:
                path, title, _pw = PAGES[rng.choices(range(len(PAGES)), weights=page_w)[0]]
            props = page_props(path, title) | {"percent": rng.choice([25, 50, 75, 100])}
            events.append((_frag(props), "Scroll Depth Reached"))
        elif kind == "form":
            props = page_props("/demo", "Book a demo - ShipFast") | {
                "form_name": "Book a demo",
                "team_size": rng.choice(["1-10", "11-50", "51-200", "200+"]),
            }
            events.append((_frag(props), "Form Submitted"))
        else:
            props = page_props("/signup", "Sign up - ShipFast") | {
                "plan": rng.choices([p for p, _ in PLANS], [w for _, w in PLANS])[0],
                "method": rng.choice(["google", "github", "email", "email"]),
            }
            events.append((_frag(props), "Sign Up"))

    # ---- per-event timing tables
    jitter = tuple(rng.random() for _ in range(_TABLE))
    delays: list[int] = []
    for _ in range(_TABLE):
        roll = rng.random()
        if roll < 0.008:  # late arrivals: an offline tab flushing hours or days later
            delays.append(rng.randrange(3600, 3 * 86400) * 1_000_000)
        else:
            delays.append(int(rng.lognormvariate(math.log(250_000), 1.2)))
    # bounces (1 event), short and long sessions; a Session Start is added in front.
    lengths = tuple(
        rng.choices([1, 2, 3, 4, 6, 8, 12, 20], weights=[38, 16, 12, 9, 9, 7, 6, 3], k=256)
    )
    mmss = tuple(f"{s // 60:02d}:{s % 60:02d}" for s in range(3600))
    heads = tuple(_uuid_prefix(rng.getrandbits(64)) for _ in range(_TABLE))
    model = _Model(
        visitors=tuple(visitors),
        visitor_tables=tuple(tables),
        events=tuple(events),
        session_start=("", "Session Start"),
        session_lengths=lengths,
        jitter_frac=jitter,
        delays_us=tuple(delays),
        mmss=mmss,
        uuid_heads=heads,
    )
    return model
