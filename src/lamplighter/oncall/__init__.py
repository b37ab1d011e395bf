"""On-call: schedules, rotations, overrides, escalation policies, contact methods (issue 14)."""
