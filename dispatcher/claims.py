"""Claiming due escalation steps for one dispatcher process: the claim the step workers run,
and the claim of a new incident's first step inside the incident's own transaction.

A step is claimed with FOR UPDATE SKIP LOCKED (see dispatcher/steps.py). A new incident's steps
are rows of its own uncommitted transaction, invisible and so unlockable by anyone else: its
first step (calls first) is claimed there, in the pipeline that writes the steps, which saves
the first call a claim of its own after the commit (a checkout, two statements and a commit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_CLAIM = """
UPDATE escalation_steps s SET status = 'running', claimed_by = %(worker)s, claimed_at = now(),
       worker_lock = %(lock)s, attempts = attempts + 1
WHERE s.id = (
    SELECT id FROM escalation_steps
    WHERE status = 'pending' AND due_at <= now() {incident}
    ORDER BY round, action <> 'call', seq, due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING s.id, s.incident_id, s.seq, s.round, s.action, s.target, s.due_at, s.attempts,
          s.purpose
"""
CLAIM_ANY = _CLAIM.format(incident="")
CLAIM_OF_INCIDENT = _CLAIM.format(incident="AND incident_id = %(incident)s")


@dataclass
class FirstStep:
    """A request to claim a new incident's first due step for the process (`worker`, `lock`)
    in the incident's transaction (`dispatcher.incidents.record_alert`), which sets `step` to
    the claimed row (None: no step due, or no new incident)."""

    worker: str
    lock: int
    step: dict[str, Any] | None = None

    def params(self, incident_id: Any) -> dict[str, Any]:
        return {"worker": self.worker, "lock": self.lock, "incident": incident_id}
