"""The error budget policy per catalog tier, from ``LAMPLIGHTER_SLO_TIER_POLICIES``."""

from __future__ import annotations

from typing import Any

from lamplighter.core.settings import get_settings

POLICY_KEYS = frozenset({"notify_at", "notify", "on_exhausted"})


def tier_policy(tier: int | None) -> dict[str, Any]:
    """The operator's policy for a tier, keeping only the keys a policy has."""
    if tier is None:
        return {}
    policy = get_settings().slo_tier_policies.get(str(tier)) or {}
    return {key: value for key, value in policy.items() if key in POLICY_KEYS}
