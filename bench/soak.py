"""Soak: `fitq api` and 2 workers on PostgreSQL for N minutes, a job submitted
every few seconds, a worker killed with SIGKILL every ~30 s (and replaced),
a tenth of the jobs cancelled, and the queue's invariants checked as it runs:

- no job stays ``running`` on a lease that expired more than a grace period ago;
- a job that reached a terminal state never leaves it;
- a job that succeeded has its History rows 1..epochs, no gap, and a model
  (the primary key (job, epoch) makes a duplicated row impossible);
- a job that failed says why; a cancelled one was asked to be;
- worker and API memory (VmRSS) and the database's connections (pg_stat_activity)
  stay within a bound of what they were after the warm-up;
- every API request succeeds.

Then submissions and kills stop and, after a bounded wait, every job must be
terminal and none lost. ``run_soak`` is what tests/soak runs (2 minutes);

    .venv/bin/python -m bench.soak --minutes 60 [--database-url URL] [--json PATH]

runs it by hand (default: a fresh database on the local PostgreSQL, dropped
at the end) and prints the table of docs/reliability.md ("Soak"). Exit 1 on
any violation. The API and the workers are tests/support's live stack; the
workers are forked from a warm parent (tests/support/zygote.py), each running
``fitq worker``'s own function, so restarts cost little CPU; jobs are tiny
and the workers sleep between steps (a step delay installed through the
worker's seam, tests/support/faults.py), so the soak uses little of a shared
machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from fitq.service.db.models import TERMINAL_STATUSES
from tests.databases import admin_url, fresh_postgres_database, libpq_dsn
from tests.support.faults import Faults
from tests.support.fleet import worker_pid
from tests.support.specs import iris_spec
from tests.support.stack import Stack, live_stack
from tests.support.zygote import Zygote

MONITOR_APP = "fitq-soak"
"""application_name of the soak's own connection, left out of the connection count."""
WARMUP_FRACTION = 0.2
"""The first part of the run sets the baseline of memory and connections."""
MEMORY_GROWTH = 1.5
MEMORY_SLACK_KIB = 32 * 1024
CONNECTION_SLACK = 4
"""A sample after the warm-up may exceed the warm-up's peak by this much, no more."""
HTTP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 2.0
    submit_every: float = 4.0
    kill_every: float = 30.0
    cancel_every_nth: int = 10
    epochs: int = 5
    step_delay_ms: int = 100
    """iris in batches of 16 is 10 steps an epoch: 5 epochs ≈ 5 s a job, mostly asleep."""
    check_every: float = 2.0
    grace_seconds: float = 60.0
    """A lease expired this long ago and still ``running`` is a violation; a rescue can
    wait for a worker to finish its current job, hence more than the lease."""
    drain_seconds: float = 300.0
    seed: int = 0


@dataclass
class Sample:
    at: float
    worker_rss_kib: list[int]
    api_rss_kib: int
    connections: int


@dataclass
class SoakResult:
    seconds: float = 0.0
    submitted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    kills_of_busy_workers: int = 0
    longest_worker_life_s: float = 0.0
    cancels_asked: int = 0
    cancels_raced_completion: int = 0
    rescued_jobs: int = 0
    epochs_rerun: int = 0
    lost: int = 0
    max_expired_lease_s: float = 0.0
    checks: int = 0
    api_requests: int = 0
    api_errors: int = 0
    drain_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def figures(self) -> list[tuple[str, str]]:
        """The table's rows: what was done, what held."""
        base, later = _split(self.samples, self.seconds)
        return [
            ("duration", f"{self.seconds / 60:.1f} min (+ {self.drain_s:.0f} s drain)"),
            ("jobs submitted", str(self.submitted)),
            (
                "succeeded / failed / cancelled",
                " / ".join(str(self.statuses[s]) for s in ("succeeded", "failed", "cancelled")),
            ),
            ("failure reasons", ", ".join(f"{k}: {v}" for k, v in self.failures.items()) or "–"),
            ("kill -9 (of a busy worker)", f"{self.kills} ({self.kills_of_busy_workers})"),
            ("longest worker life", f"{self.longest_worker_life_s:.0f} s"),
            (
                "cancels asked (raced completion)",
                f"{self.cancels_asked} ({self.cancels_raced_completion})",
            ),
            ("jobs rescued after a kill", str(self.rescued_jobs)),
            ("epochs re-run after a kill", str(self.epochs_rerun)),
            ("longest expired lease seen running", f"{self.max_expired_lease_s:.1f} s"),
            ("jobs lost", str(self.lost)),
            ("invariant checks (violations)", f"{self.checks} ({len(self.violations)})"),
            ("API requests (errors)", f"{self.api_requests} ({self.api_errors})"),
            ("worker RSS, warm-up → rest (max)", _range_mib(base, later, _worker_rss)),
            ("API RSS, warm-up → rest (max)", _range_mib(base, later, lambda s: s.api_rss_kib)),
            ("DB connections, warm-up → rest (max)", _range(base, later, lambda s: s.connections)),
        ]


def _worker_rss(sample: Sample) -> int:
    return max(sample.worker_rss_kib, default=0)


def _split(samples: list[Sample], seconds: float) -> tuple[list[Sample], list[Sample]]:
    cut = max(seconds * WARMUP_FRACTION, 10.0)
    return [s for s in samples if s.at <= cut], [s for s in samples if s.at > cut]


def _range(base: list[Sample], later: list[Sample], value: Callable[[Sample], int]) -> str:
    first = max((value(s) for s in base), default=0)
    rest = max((value(s) for s in later), default=0)
    return f"{first} → {rest}"


def _range_mib(base: list[Sample], later: list[Sample], value: Callable[[Sample], int]) -> str:
    first = max((value(s) for s in base), default=0) / 1024
    rest = max((value(s) for s in later), default=0) / 1024
    return f"{first:.0f} → {rest:.0f} MiB"


def rss_kib(pid: int) -> int:
    """VmRSS of a live process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Soak:
    """One run: the processes, the jobs submitted, what the checks saw."""

    def __init__(
        self,
        stack: Stack,
        monitor: psycopg.Connection[Any],
        config: SoakConfig,
        say: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.fleet = stack.workers
        self.db = monitor
        self.config = config
        self.say = say
        self.rng = random.Random(config.seed)
        self.http = httpx.Client(
            base_url=stack.url, headers=stack.headers, timeout=HTTP_TIMEOUT_SECONDS
        )
        self.result = SoakResult()
        self.jobs: list[str] = []
        self.cancel_due: list[tuple[float, str]] = []
        self.cancel_answer: dict[str, str] = {}
        self.terminal: dict[str, str] = {}
        self.flagged: set[str] = set()
        self.born: dict[int, float] = {}
        self.started = time.monotonic()

    # -- actions ----------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any] | None:
        self.result.api_requests += 1
        try:
            response = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            self.result.api_errors += 1
            self.violation(f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        if not response.is_success:
            self.result.api_errors += 1
            self.violation(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return None
        body: dict[str, Any] = response.json()
        return body

    def submit(self) -> None:
        n = len(self.jobs)
        spec = iris_spec(seed=n, epochs=self.config.epochs, batch_size=16)
        body = self.request("POST", "/v1/jobs", json=spec)
        if body is None:
            return
        self.jobs.append(body["id"])
        self.result.submitted += 1
        if n % self.config.cancel_every_nth == self.config.cancel_every_nth - 1:
            job_seconds = self.config.epochs * 10 * self.config.step_delay_ms / 1000
            when = time.monotonic() + self.rng.uniform(0, job_seconds * 1.5)
            self.cancel_due.append((when, body["id"]))

    def cancel_due_jobs(self) -> None:
        now = time.monotonic()
        for when, job_id in [c for c in self.cancel_due if c[0] <= now]:
            self.cancel_due.remove((when, job_id))
            body = self.request("POST", f"/v1/jobs/{job_id}/cancel")
            if body is not None:
                self.cancel_answer[job_id] = body["status"]
                self.result.cancels_asked += 1

    def start_worker(self) -> None:
        proc = self.fleet.start()
        self.fleet.wait_started(proc)
        self.born[proc.pid] = time.monotonic()

    def kill_one(self) -> None:
        """SIGKILL a worker, one that holds a job when there is one, and start another."""
        alive = self.fleet.alive()
        if not alive:
            return
        rows = self.db.execute("SELECT worker_id FROM jobs WHERE status = 'running'").fetchall()
        busy_pids = {worker_pid(r[0]) for r in rows}
        busy = [p for p in alive if p.pid in busy_pids]
        victim = self.rng.choice(busy or alive)
        victim.kill()
        victim.wait(30)
        life = time.monotonic() - self.born.pop(victim.pid, self.started)
        self.result.longest_worker_life_s = max(self.result.longest_worker_life_s, life)
        self.result.kills += 1
        self.result.kills_of_busy_workers += bool(busy)
        self.start_worker()

    # -- checks ------------------------------------------------------------------------

    def violation(self, what: str) -> None:
        self.result.violations.append(what)
        self.say(f"VIOLATION: {what}")

    def check(self) -> None:
        """The invariants of the jobs as they are now, and one resource sample."""
        self.result.checks += 1
        now = datetime.now(UTC)
        rows = self.db.execute(
            "SELECT id, status, lease_expires_at, epochs, model_key, error FROM jobs"
        ).fetchall()
        known = set(self.jobs)
        for job_id, status, lease, epochs, model_key, error in rows:
            if job_id not in known:
                self.violation(f"job {job_id} in the database was never submitted")
                continue
            if status == "running" and lease is not None and lease < now:
                expired = (now - lease).total_seconds()
                self.result.max_expired_lease_s = max(self.result.max_expired_lease_s, expired)
                if expired > self.config.grace_seconds and job_id not in self.flagged:
                    self.flagged.add(job_id)
                    self.violation(f"job {job_id} running on a lease expired {expired:.0f} s ago")
            if job_id in self.terminal:
                if status != self.terminal[job_id]:
                    self.violation(f"job {job_id} left {self.terminal[job_id]} for {status}")
            elif status in TERMINAL_STATUSES:
                self.terminal[job_id] = status
                self.check_ended(job_id, status, epochs, model_key, error)
        self.sample()

    def check_ended(
        self, job_id: str, status: str, epochs: int, model_key: str | None, error: str | None
    ) -> None:
        if status == "succeeded":
            got = [
                r[0]
                for r in self.db.execute(
                    "SELECT epoch FROM job_epochs WHERE job_id = %s ORDER BY epoch", (job_id,)
                )
            ]
            if got != list(range(1, epochs + 1)):
                self.violation(f"job {job_id} succeeded with epochs {got}, not 1..{epochs}")
            if not model_key:
                self.violation(f"job {job_id} succeeded without a model")
        elif status == "failed" and not error:
            self.violation(f"job {job_id} failed without a reason")

    def sample(self) -> None:
        (connections,) = self.db.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name <> %s",
            (MONITOR_APP,),
        ).fetchone() or (0,)
        at = time.monotonic() - self.started
        sample = Sample(
            at=at,
            worker_rss_kib=[rss_kib(p.pid) for p in self.fleet.alive()],
            api_rss_kib=rss_kib(self.stack.apis[0].pid),
            connections=int(connections),
        )
        self.result.samples.append(sample)
        base, later = _split(self.result.samples, self.config.minutes * 60)
        if later and later[-1] is sample:
            self.check_flat(base, sample)

    def check_flat(self, base: list[Sample], sample: Sample) -> None:
        """Memory and connections after the warm-up stay near the warm-up's peak."""
        for what, value in (
            ("worker RSS", _worker_rss),
            ("API RSS", lambda s: s.api_rss_kib),
        ):
            peak = max(value(s) for s in base)
            if value(sample) > peak * MEMORY_GROWTH + MEMORY_SLACK_KIB:
                self.violation(
                    f"{what} grew to {value(sample) // 1024} MiB (warm-up peak {peak // 1024} MiB)"
                )
        peak = max(s.connections for s in base)
        if sample.connections > peak + CONNECTION_SLACK:
            self.violation(f"{sample.connections} DB connections (warm-up peak {peak})")

    def final_checks(self) -> None:
        rows = {
            r[0]: r[1:]
            for r in self.db.execute(
                "SELECT id, status, attempt, cancel_requested, error FROM jobs"
            ).fetchall()
        }
        result = self.result
        for job_id in self.jobs:
            if job_id not in rows:
                result.lost += 1
                self.violation(f"job {job_id} is gone from the database")
                continue
            status, attempt, cancel_requested, error = rows[job_id]
            result.statuses[status] += 1
            if status not in TERMINAL_STATUSES:
                result.lost += 1
                self.violation(f"job {job_id} is still {status} after the drain")
            if attempt > 1:
                result.rescued_jobs += 1
            if status == "failed":
                result.failures[(error or "").split(" on attempts")[0][:60]] += 1
            answer = self.cancel_answer.get(job_id)
            if answer is None and status == "cancelled":
                self.violation(f"job {job_id} cancelled though nobody asked")
            elif answer == "cancelled" and status != "cancelled":
                self.violation(f"job {job_id} ended {status} after its cancel was acknowledged")
            elif answer == "running" and status != "cancelled":
                result.cancels_raced_completion += 1
        (reruns,) = self.db.execute(
            "SELECT count(*) - count(DISTINCT (job_id, epoch)) FROM execution_log"
        ).fetchone() or (0,)
        result.epochs_rerun = int(reruns)
        result.longest_worker_life_s = max(
            [result.longest_worker_life_s]
            + [time.monotonic() - born for born in self.born.values()]
        )

    # -- the run -----------------------------------------------------------------------

    def run(self) -> SoakResult:
        config = self.config
        end = self.started + config.minutes * 60
        next_submit = next_check = self.started
        next_kill = self.started + config.kill_every
        next_report = self.started + 30
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_submit:
                self.submit()
                next_submit = now + config.submit_every
            self.cancel_due_jobs()
            if now >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + config.kill_every * self.rng.uniform(0.8, 1.2)
            if now >= next_check:
                self.check()
                next_check = now + config.check_every
            if now >= next_report:
                self.progress()
                next_report = now + 30
            time.sleep(0.05)
        self.result.seconds = time.monotonic() - self.started
        self.drain()
        self.check()
        self.final_checks()
        self.http.close()
        return self.result

    def drain(self) -> None:
        """No more submissions or kills: the cancels still due go out, and every
        job gets a bounded time to end."""
        drain_start = time.monotonic()
        deadline = drain_start + self.config.drain_seconds
        while time.monotonic() < deadline:
            self.cancel_due = [(0.0, job_id) for _, job_id in self.cancel_due]
            self.cancel_due_jobs()
            self.check()
            if len(self.terminal) == len(self.jobs):
                break
            time.sleep(self.config.check_every)
        self.result.drain_s = time.monotonic() - drain_start

    def progress(self) -> None:
        last = self.result.samples[-1] if self.result.samples else None
        self.say(
            f"{(time.monotonic() - self.started) / 60:5.1f} min: {len(self.jobs)} submitted, "
            f"{len(self.terminal)} ended, {self.result.kills} kills, "
            f"{len(self.result.violations)} violations"
            + (
                f"; {last.connections} connections, worker RSS "
                f"{_worker_rss(last) // 1024} MiB, API RSS {last.api_rss_kib // 1024} MiB"
                if last
                else ""
            )
        )


def run_soak(
    database_url: str,
    workdir: Path,
    config: SoakConfig | None = None,
    say: Callable[[str], None] = print,
) -> SoakResult:
    """The soak on ``database_url`` (PostgreSQL, any schema state), files under ``workdir``."""
    config = config or SoakConfig()
    zygote = Zygote()
    try:
        with (
            live_stack(
                workdir,
                database_url=database_url,
                storage_url=(workdir / "store").as_uri(),
                workers=0,
                faults=Faults(step_delay_ms=config.step_delay_ms),
                zygote=zygote,
                FITQ_CHECKPOINT_SECONDS="2",
            ) as stack,
            psycopg.connect(
                libpq_dsn(database_url), autocommit=True, application_name=MONITOR_APP
            ) as monitor,
        ):
            soak = Soak(stack, monitor, config, say)
            for _ in range(2):
                soak.start_worker()
            return soak.run()
    finally:
        zygote.close()


def print_table(result: SoakResult, config: SoakConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"fitq soak: 2 workers + API on PostgreSQL, a job every {config.submit_every:g} s, "
        f"kill -9 every ~{config.kill_every:g} s, every {config.cancel_every_nth}th job cancelled"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in result.figures():
        table.add_row(name, value)
    Console().print(table)
    print("\n| figure | value |\n|---|---|")
    for name, value in result.figures():
        print(f"| {name} | {value} |")
    for violation in result.violations:
        print(f"VIOLATION: {violation}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--submit-every", type=float, default=SoakConfig.submit_every)
    parser.add_argument("--kill-every", type=float, default=SoakConfig.kill_every)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--database-url", help="PostgreSQL to use as is (default: a fresh database, dropped)"
    )
    parser.add_argument("--admin-url", default=admin_url())
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--workdir", type=Path, help="keep the logs and the store here")
    args = parser.parse_args()
    config = SoakConfig(
        minutes=args.minutes,
        submit_every=args.submit_every,
        kill_every=args.kill_every,
        seed=args.seed,
    )

    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    with tempfile.TemporaryDirectory(prefix="fitq-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.database_url:
            result = run_soak(args.database_url, workdir, config, say)
        else:
            with fresh_postgres_database(args.admin_url, prefix="fitq_soak") as url:
                result = run_soak(url, workdir, config, say)
    print_table(result, config)
    if args.json:
        figures = {
            "figures": dict(result.figures()),
            "statuses": dict(result.statuses),
            "failures": dict(result.failures),
            "violations": result.violations,
            "samples": [asdict(s) for s in result.samples],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.exit(1 if result.violations or result.lost else 0)


if __name__ == "__main__":
    main()
