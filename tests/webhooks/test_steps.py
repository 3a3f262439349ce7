"""A recorded batch updates each endpoint once per run of like outcomes, with the effect of
applying its outcomes one by one (the failure streak starts at a run's first failure, the
"failing" check uses its last, a 410 disables)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.store.webhook_records import Attempt, AttemptOutcome, endpoint_steps

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _outcome(n: int, ok: bool, reason: str | None = None) -> AttemptOutcome:
    at = T0 + timedelta(seconds=n)
    attempt = Attempt(f"dlv_{n}", 1, at, 204 if ok else 500, 1.0, None, None)
    return AttemptOutcome(attempt, ok, None, reason, at - timedelta(days=3))


def test_runs_of_like_outcomes_make_one_step_per_endpoint():
    kept = [(_outcome(0, True), "a", 0), (_outcome(1, False), "b", 0), (_outcome(2, True), "a", 0),
            (_outcome(3, False), "a", 0), (_outcome(4, False, "gone"), "a", 0), (_outcome(5, False), "a", 0),
            (_outcome(6, False), "b", 0), (_outcome(7, True), "b", 0)]
    steps = [(s.webhook_id, s.succeeded, s.failed_at, s.last_at, s.disable_reason) for s in endpoint_steps(kept)]
    t = [T0 + timedelta(seconds=n) for n in range(8)]
    assert steps == [("a", True, t[0], t[2], None), ("b", False, t[1], t[6], None), ("a", False, t[3], t[5], "gone"),
                     ("b", True, t[7], t[7], None)]
    _, failing_a = [s for s in endpoint_steps(kept) if s.webhook_id == "a"]
    assert failing_a.failing_before == t[5] - timedelta(days=3) and failing_a.disabled_at == t[4]
