"""`eldercare scenario run`: register a scenario's population, play it against the running
stack on a simulated clock, wait for the pipeline to drain, check every expectation."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from devices.registry import save
from foundation import logs
from foundation.config import Settings
from simulators import population, responders
from simulators.clock import SimClock, parse_duration, start_at_or_after, start_in_past
from simulators.devices import Credentials, provisioned_credentials, shared_credentials
from simulators.outcomes import Observer, Verdict, check
from simulators.plans import register_plans
from simulators.scenario import Expectation, Scenario, compile_timeline, load
from simulators.world import play

log = logs.get(__name__)


@dataclass
class ScenarioReport:
    path: str
    scenario: Scenario | None
    verdicts: list[Verdict] = field(default_factory=list)
    published: int = 0
    real_s: float = 0.0
    error: str = ""
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(v.ok for v in self.verdicts)


async def run_scenario(sc: Scenario, settings: Settings, credentials: Credentials | None = None,
                       tag: str | None = None, start: float | None = None) -> ScenarioReport:
    """Play `sc` once against the stack `settings` points at and check its expectations.

    By default the simulated span is placed in the past so it ends before "now" (device
    timestamps stay inside ingest's default clock window). Detectors that fire on silence
    advance idle partitions by the wall clock, so for them pass a `start` at or after now (see
    `run_files(..., ahead=True)`) on a stack with a wide ELDERCARE_INGEST_MAX_FUTURE_S."""
    began = time.monotonic()
    tag = tag or secrets.token_hex(3)
    pop = sc.population
    communities, sims = population.build(tag, pop.elder_specs(), pop.communities,
                                         pop.extra_elders, sc.seed)
    await asyncio.to_thread(save, settings.database_url, communities)
    span = sc.duration_s
    if start is None:
        start = start_in_past(sc.start, span)
    ahead = start + span - time.time()
    if ahead > settings.ingest_max_future_s or -(start - time.time()) > settings.ingest_max_past_s:
        log.warning("scenario outside ingest's clock window: timestamps will be replaced",
                    start=start, span_s=span, max_future_s=settings.ingest_max_future_s,
                    max_past_s=settings.ingest_max_past_s)
    await asyncio.to_thread(register_plans, settings.database_url, sc, sims, start)
    steps = compile_timeline(sc, sims, start)
    by_key = {s.key: s for s in sims}
    observer = Observer(settings, {s.elder.id for s in sims})
    await observer.start()
    report = ScenarioReport("", sc)
    try:
        if credentials is None:
            credentials = await asyncio.to_thread(device_credentials, settings, sims)
        result = await play(steps, _broker(settings), credentials, SimClock(start, sc.speed),
                            mqtt_version=settings.mqtt_protocol,
                            respond=lambda s: responders.respond(settings.database_url, s))
        report.published = result.published
        timeout = parse_duration(sc.timeout)
        await observer.drained(result.published, timeout)
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.to_thread(observer.refresh_db)
            report.verdicts = [_verdict(sc, e, by_key, start, observer) for e in sc.expect]
            pending = [v for v in report.verdicts if not v.ok and v.expectation.no_alert is None]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await observer.stop()
    report.real_s = time.monotonic() - began
    return report


def _broker(settings: Settings) -> str:
    """Provisioned logins work on the broker's device listener, the shared one on mqtt_url."""
    return settings.device_broker_url if settings.mqtt_auth_dir else settings.mqtt_url


def device_credentials(settings: Settings, sims: list[population.SimElder]) -> Credentials:
    """Each device its own provisioned login where the platform manages the broker's
    passwords (`mqtt_auth_dir`); otherwise the user and password of the MQTT URL."""
    if not settings.mqtt_auth_dir:
        return shared_credentials(settings.mqtt_url)
    ids = [d.id for s in sims for d in s.elder.devices]
    return provisioned_credentials(settings.database_url, settings.mqtt_auth_dir, ids)


def _verdict(sc: Scenario, exp: Expectation, by_key: dict[str, population.SimElder],
             start: float, observer: Observer) -> Verdict:
    sim = by_key[exp.elder]
    firsts = [i.at_s for i in sc.inject if i.elder == exp.elder]
    since = start + (min(firsts) if firsts else 0.0)
    contacts = {c.priority: c.phone for c in sim.elder.contacts}
    return check(exp, sim.elder.id, contacts, since, observer.seen)


async def run_files(paths: list[Path], settings: Settings, available: set[str] | None = None,
                    ahead: bool = False) -> list[ScenarioReport]:
    """Run each scenario file in turn; a file that cannot be read is a failed report.

    `ahead`: chain the simulated spans from now into the future, each starting at its time of
    day after the previous one ended, so event time only moves forward on the stack."""
    reports = []
    cursor = time.time()
    for path in paths:
        try:
            sc = load(path)
        except Exception as exc:
            reports.append(ScenarioReport(str(path), None, error=f"cannot load: {exc}"))
            continue
        missing = sorted(set(sc.requires) - available) if available is not None else []
        if missing:
            reports.append(ScenarioReport(str(path), sc, skipped="needs " + ", ".join(missing)))
            continue
        try:
            start = start_at_or_after(sc.start, cursor) if ahead else None
            if start is not None:
                cursor = start + sc.duration_s + 3600
            rep = await run_scenario(sc, settings, start=start)
        except Exception as exc:
            log.exception("scenario failed to run", path=str(path))
            rep = ScenarioReport(str(path), sc, error=f"{type(exc).__name__}: {exc}")
        rep.path = str(path)
        reports.append(rep)
    return reports


def render(reports: list[ScenarioReport], console: Console | None = None) -> None:
    """The readable report: one row per expectation, failures in red."""
    table = Table(title="Scenario results", show_lines=False)
    for col in ("scenario", "elder", "expected", "result", "detail"):
        table.add_column(col)
    for rep in reports:
        name = rep.scenario.name if rep.scenario else rep.path
        if rep.skipped:
            table.add_row(name, "", "", "[yellow]SKIP[/yellow]", rep.skipped)
            continue
        if rep.error:
            table.add_row(name, "", "", "[red]ERROR[/red]", rep.error)
            continue
        for i, v in enumerate(rep.verdicts):
            label = name if i == 0 else ""
            result = "[green]ok[/green]" if v.ok else "[bold red]FAIL[/bold red]"
            table.add_row(label, v.expectation.elder, v.expectation.describe(), result, v.detail)
        table.add_row("", "", f"[dim]{rep.published} messages, {rep.real_s:.1f}s real[/dim]",
                      "", "")
    out = console or Console()
    out.print(table)
    failed = [r for r in reports if not r.ok and not r.skipped]
    out.print(f"{len(reports) - len(failed)} of {len(reports)} scenarios passed"
              + (f"; failed: {', '.join(r.path for r in failed)}" if failed else ""))
