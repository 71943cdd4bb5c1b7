"""The pattern limits and protected zones an admin edits are well formed.

The Rego reads them as data, and a zone the policy cannot read would be skipped, not
refused (a window that does not parse as RFC 3339 makes the rule undefined on OPA): so the
data is checked here, where a mistake fails loudly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from policy_support import POLICY_DIR

from gateway.context.activity import WINDOWS
from gateway.policy.bundle import load_bundle

CONFIG = load_bundle(POLICY_DIR).config
ZONES: list[dict[str, Any]] = CONFIG["zones"]["features"]


def test_pattern_windows_are_windows_the_gateway_counts() -> None:
    patterns = CONFIG["patterns"]
    used = {patterns[name]["window"] for name in ("burst", "sweep", "watchlist")}
    used |= {window for limits in patterns["rate_limits"].values() for window in limits}
    assert used <= set(WINDOWS)
    assert set(patterns["burst"]["max_probes"]) <= {"officer", "agency", "case"}
    assert set(patterns["watchlist"]["max_enrolments"]) <= {"officer", "agency", "case"}


def polygons(zone: dict[str, Any]) -> list[list[list[list[float]]]]:
    geometry = zone["geometry"]
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"]]
    assert geometry["type"] == "MultiPolygon"
    return list(geometry["coordinates"])


@pytest.mark.parametrize("zone", ZONES, ids=[z["properties"]["name"] for z in ZONES])
def test_every_zone_is_well_formed(zone: dict[str, Any]) -> None:
    assert CONFIG["zones"]["type"] == "FeatureCollection"
    assert zone["type"] == "Feature"
    properties = zone["properties"]
    for field in ("name", "category", "why"):
        assert isinstance(properties[field], str) and properties[field].strip(), field
    for window in properties.get("windows", []):
        start = datetime.fromisoformat(window["from"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(window["until"].replace("Z", "+00:00"))
        assert start.tzinfo is not None and start < end
    for polygon in polygons(zone):
        for ring in polygon:
            assert len(ring) >= 4 and ring[0] == ring[-1], "rings are closed"
            for lon, lat in ring:
                assert -180 <= lon <= 180 and -90 <= lat <= 90
