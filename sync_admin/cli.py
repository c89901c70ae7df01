"""`sync-admin`: parse arguments, call the library, print the result. No logic lives here."""

from __future__ import annotations

import importlib
import logging
import math
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from sync_admin import defaults, interrupts
from sync_admin.errors import BadInput, CheckFailed, SyncAdminError

if TYPE_CHECKING:
    import psycopg


class _LazyModule(ModuleType):
    """Stands for module NAME in this file until an attribute is asked of it; the import then runs whole, with the
    stop signals held back (interrupts.Deferred): cut short, it would leave a half-initialised module in sys.modules
    for the rest of the process. Attributes are looked up on the real module every time (monkeypatching works)."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):  # copy, pickle, inspect probing a module object: not a reason to load it
            raise AttributeError(attribute)
        module = self.__dict__.get("_loaded")
        if module is None:
            with interrupts.Deferred():
                module = importlib.import_module(self.__name__)
            self.__dict__["_loaded"] = module
        return getattr(module, attribute)


def _lazy(name: str) -> ModuleType:
    """Module NAME, loaded on its first use: a command imports only what it needs, and `sync-admin --help` no
    database driver, SQLAlchemy or rich at all (start-up time, issue 12)."""
    return sys.modules.get(name) or _LazyModule(name)


backfill = _lazy("sync_admin.backfill")
db = _lazy("sync_admin.db")
environments = _lazy("sync_admin.environments")
flags = _lazy("sync_admin.flags")
migrate = _lazy("sync_admin.migrate")
progress = _lazy("sync_admin.progress")
render = _lazy("sync_admin.render")
release = _lazy("sync_admin.release")
reports = _lazy("sync_admin.reports")
rollout = _lazy("sync_admin.rollout")
rollout_status = _lazy("sync_admin.rollout_status")
schema = _lazy("sync_admin.schema")
server = _lazy("sync_admin.server")
terminal = _lazy("sync_admin.terminal")
verify = _lazy("sync_admin.verify")


class _LazyConsole:
    """A terminal.SafeConsole made on first use (rich loads only when something is printed)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    @property
    def real(self) -> Any:
        """The console itself: for rich, which uses it as a context manager (dunders skip __getattr__)."""
        if self._console is None:
            try:
                self._console = terminal.SafeConsole(**self._options)
            except AttributeError as exc:  # raised out of a property, it would be taken for "no attribute `real`"
                raise RuntimeError(f"the console could not be made: {exc}") from exc
        return self._console

    def __getattr__(self, name: str) -> Any:
        if name in ("real", "_options", "_console"):  # an AttributeError inside `real` must not recurse through here
            raise AttributeError(name)
        return getattr(self.real, name)


# Piped output is read by people too (CI logs, pasted reports): give tables room instead of rich's 80.
PIPE_WIDTH = 200
out = _LazyConsole(width=None if sys.stdout.isatty() else PIPE_WIDTH)
err = _LazyConsole(stderr=True, soft_wrap=True)

# A customer id is a positive bigint: anything larger is bad input (exit 2), not a database error.
CUSTOMER_ID = click.IntRange(1, 2**63 - 1)
FORMATS = click.Choice(["text", "json", "markdown"])


@dataclass
class Settings:
    url_option: str | None
    debug: bool
    env: str | None = None

    def url(self) -> str:
        """--env's database, else --database-url, else DATABASE_URL, else the embedded server (started on demand)."""
        if self.env is not None:
            return environments.load().get(self.env).url()
        return db.resolve_url(self.url_option) or server.start()


pass_settings = click.make_pass_decorator(Settings)


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that refuses nan and inf (float() accepts both, and they make waits and bounds meaningless)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server).",
)
@click.option(
    "--env",
    "env_name",
    metavar="NAME",
    help="A named environment of sync-admin.toml (`sync-admin rollout envs` lists them).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="sync-admin")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, env_name: str | None, debug: bool) -> None:
    """Roll out the account_data_persistence sync: flags, migrations, the embedded server."""
    if database_url is not None and env_name is not None:
        raise click.UsageError("--env and --database-url both name the database; give one of them")
    ctx.obj = Settings(database_url, debug, env_name)


# --- server -------------------------------------------------------------------------------------


@cli.group("server")
def server_group() -> None:
    """The embedded PostgreSQL used when no URL is given."""


@server_group.command("status")
def server_status() -> None:
    """Is the embedded server running, and where is its data?"""
    status = server.status()
    state = f"running (pid {status.pid})" if status.running else "stopped"
    out.print(f"embedded PostgreSQL {status.version or '(not initialised)'}: {state}")
    out.print(f"data directory: {status.data_dir}")
    if status.url:
        out.print(f"url: {status.url}")


@server_group.command("url")
def server_url() -> None:
    """Start the embedded server if needed and print its URL (for psql or DATABASE_URL)."""
    click.echo(server.start())


@server_group.command("stop")
def server_stop() -> None:
    """Stop the embedded server (its data is kept)."""
    out.print("stopped" if server.stop() else "the embedded server was not running")


# --- db -----------------------------------------------------------------------------------------


def _change_options(command: click.Command) -> click.Command:
    command = click.option("--reason", help="Why: recorded in the audit log.")(command)
    return click.option("--by", "actor", metavar="PERSON", help="Who acts (default: the OS user).")(command)


@cli.group("db")
def db_group() -> None:
    """The alembic migrations (plain `alembic upgrade head` with DATABASE_URL works too)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@click.option(
    "--release-override",
    metavar="REASON",
    help="Release the flag (revision 0013) although the rollout check fails; REASON and what was missing are"
    " recorded in the audit log.",
)
@click.option(
    "--min-hours",
    type=FiniteFloatRange(min=0),
    metavar="HOURS",
    help=f"The verification period the release guard requires (default {defaults.ROLLOUT_MIN_HOURS:g}).",
)
@_change_options
@pass_settings
def db_upgrade(
    settings: Settings,
    revision: str,
    release_override: str | None,
    min_hours: float | None,
    reason: str | None,
    actor: str | None,
) -> None:
    """Upgrade the database to REVISION (default: head). Head includes the release (revision 0013), which retires
    the flag and runs only where `sync-admin rollout check` passes."""
    url = settings.url()
    guard = release.GuardOptions(release_override, min_hours, actor or flags.default_actor(), reason)
    try:
        migrate.upgrade(url, revision, guard)
    except KeyboardInterrupt:
        raise migrate.interrupted(url) from None
    out.print(f"{db.mask(url)}: at revision {migrate.current(url)}")


@db_group.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@_change_options
@pass_settings
def db_downgrade(settings: Settings, revision: str, yes: bool, reason: str | None, actor: str | None) -> None:
    """Downgrade the database to REVISION ("base" removes everything, data included): says what it undoes and
    asks first (--yes for scripts). Undoing the release (0013) brings the flag back, on for everyone, audited."""
    url = settings.url()
    undo = migrate.to_undo(migrate.current(url), revision)
    if not undo:
        out.print(f"{db.mask(url)}: nothing to undo (at revision {migrate.current(url) or 'base'})")
        return
    out.print(f"downgrading {db.mask(url)} to {revision} undoes:")
    for number, title in undo:
        out.print(f"  {number}  {title}")
    if release.RELEASE_REVISION in (number for number, _ in undo):
        out.print(
            f"and brings {release.FLAG} back, on for everyone with the gates it had when it was released"
            " (the rollback of the release, audited)"
        )
    if undo[-1][0] == "0001":
        out.print("and deletes, for good:")
        for item in migrate.data_lost(url):
            out.print(f"  {item}")
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("a downgrade is not undone by anything; rerun with --yes to confirm (nothing changed)")
        click.confirm("go ahead?", default=False, abort=True)
    try:
        migrate.downgrade(url, revision, release.GuardOptions(actor=actor or flags.default_actor(), reason=reason))
    except KeyboardInterrupt:
        raise migrate.interrupted(url) from None
    out.print(f"{db.mask(url)}: at revision {migrate.current(url) or 'base (nothing installed)'}")


@db_group.command("current")
@pass_settings
def db_current(settings: Settings) -> None:
    """Print the revision the database is at, and the latest one."""
    url = settings.url()
    current = migrate.current(url)
    head = migrate.head_revision()
    note = "up to date" if current == head else f"head is {head}: run `sync-admin db upgrade`"
    if current == release.PRE_RELEASE_REVISION:
        note = (
            f"the revision before the release: the rollout runs; head ({head}) retires the flag once"
            " `sync-admin rollout check` passes"
        )
    out.print(f"{db.mask(url)}: at revision {current or 'base (nothing installed)'} ({note})")


@db_group.command("sql")
@click.argument("revisions", default="base:head")
def db_sql(revisions: str) -> None:
    """Print the SQL of REVISIONS (default base:head; FROM:TO, a downgrade when TO is older) for review,
    without a database."""
    click.echo(migrate.offline_sql(revisions), nl=False)


# --- flag ---------------------------------------------------------------------------------------


@cli.group("flag")
def flag_group() -> None:
    """Read and switch feature flags; every change is audited."""


@flag_group.command("list")
@pass_settings
def flag_list(settings: Settings) -> None:
    """All flags and their state."""
    with _migrated(settings) as conn:
        listed, done = flags.list_flags(conn), release.released(conn)
    out.print(render.flags_table(listed))
    if done is not None:
        out.print(f"{done.flag}: {done.summary}; the sync is always on")


@flag_group.command("status")
@click.argument("name")
@pass_settings
def flag_status(settings: Settings, name: str) -> None:
    """The kill switch, each gate, how many customers are in the rollout, and the last change."""
    with _migrated(settings) as conn:
        flag = flags.get_flag(conn, name)
        in_rollout = flags.rollout_count(conn, name)
        last = flags.history(conn, name, limit=1)
        kill = flags.last_kill(conn, name)
    for line in render.flag_status_lines(flag, in_rollout, last[0] if last else None, kill):
        out.print(line)


@flag_group.command("explain")
@click.argument("name")
@click.argument("customer_id", type=CUSTOMER_ID)
@pass_settings
def flag_explain(settings: Settings, name: str, customer_id: int) -> None:
    """Is flag NAME on for CUSTOMER_ID, and which gate decided it?"""
    with _migrated(settings) as conn:
        explanation = flags.explain(conn, name, customer_id)
    verdict = render.on_off(explanation.enabled)
    out.print(f"{name} is {verdict} for customer {customer_id}: {explanation.gate} (bucket {explanation.bucket})")


ACTOR_OPTION = click.option(
    "--actor",
    "actors",
    type=CUSTOMER_ID,
    multiple=True,
    metavar="CUSTOMER_ID",
    help="A customer id (repeatable).",
)


@flag_group.command("enable")
@click.argument("name")
@click.option("--everyone", is_flag=True, help="The everyone gate: on for every customer.")
@ACTOR_OPTION
@click.option(
    "--percentage",
    type=click.IntRange(0, 100),
    metavar="P",
    help="Whole number 0-100: on for customers whose Unleash bucket is <= P.",
)
@_change_options
@pass_settings
def flag_enable(
    settings: Settings,
    name: str,
    everyone: bool,
    actors: tuple[int, ...],
    percentage: int | None,
    reason: str | None,
    actor: str | None,
) -> None:
    """Add gates to NAME: --everyone, --actor and/or --percentage (other gates kept; at least one is needed).

    While the kill switch is pulled the gates change and the flag stays OFF: only `flag resume` switches it on.
    """
    with _migrated(settings) as conn:
        change = flags.enable(
            conn, name, everyone=everyone, actors=actors, percentage=percentage, actor=actor, reason=reason
        )
        in_rollout = flags.rollout_count(conn, name)
        kill = flags.last_kill(conn, name)
    _print_change(change, in_rollout, kill)
    if change.kept_off:
        out.print(f"the kill switch stays pulled: `sync-admin flag resume {name}` switches the flag back on")


@flag_group.command("disable")
@click.argument("name")
@ACTOR_OPTION
@click.option("--everyone", is_flag=True, help="Remove only the everyone gate.")
@click.option("--percentage", is_flag=True, help="Remove only the percentage gate (set it to 0).")
@_change_options
@pass_settings
def flag_disable(
    settings: Settings,
    name: str,
    actors: tuple[int, ...],
    everyone: bool,
    percentage: bool,
    reason: str | None,
    actor: str | None,
) -> None:
    """Kill switch: NAME off for every customer at once, gates kept. With options, remove only those gates."""
    with _migrated(settings) as conn:
        change = flags.disable(
            conn, name, actors=actors, everyone=everyone, percentage=percentage, actor=actor, reason=reason
        )
        in_rollout = flags.rollout_count(conn, name)
        kill = flags.last_kill(conn, name)
    _print_change(change, in_rollout, kill)


@flag_group.command("resume")
@click.argument("name")
@_change_options
@pass_settings
def flag_resume(settings: Settings, name: str, reason: str | None, actor: str | None) -> None:
    """Undo the kill switch: NAME back on with the gates exactly as they were."""
    with _migrated(settings) as conn:
        change = flags.resume(conn, name, actor=actor, reason=reason)
        in_rollout = flags.rollout_count(conn, name)
    _print_change(change, in_rollout, None)


def _print_change(change: flags.FlagChange, in_rollout: int, kill: flags.FlagEvent | None) -> None:
    if not change.changed:
        out.print(f"{change.after.name}: nothing changed")
    for line in render.flag_state_lines(change.after, in_rollout, kill):
        out.print(line)


@flag_group.command("history")
@click.argument("name")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N events.")
@pass_settings
def flag_history(settings: Settings, name: str, fmt: str, limit: int | None) -> None:
    """Every change to flag NAME: when, what, who, why."""
    with _migrated(settings) as conn:
        events = flags.history(conn, name, limit=limit)
    if fmt == "json":
        click.echo(render.to_json([event.as_json() for event in events]))
    elif fmt == "markdown":
        click.echo(
            f"#### History of `{name}`\n\n" + render.markdown_table(render.HISTORY_HEADERS, render.history_rows(events))
        )
    else:
        out.print(render.table(f"history of {name}", render.HISTORY_HEADERS, render.history_rows(events)))


# --- demo ---------------------------------------------------------------------------------------


@cli.command("demo")
@pass_settings
def demo_command(settings: Settings) -> None:
    """The whole story on a fresh database of the embedded server, in one screen."""
    # The demo's console renders its own markup; what it prints from the database it wrote itself.
    from rich.console import Console

    from sync_admin import demo

    console = Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)
    demo.run(console, url_given=settings.url_option is not None)


# --- backfill, verify, rollout check -----------------------------------------------------------


def _emit(fmt: str, data: object, lines: list[str]) -> None:
    """The result as JSON, or as its text lines."""
    if fmt == "json":
        click.echo(render.to_json(data))
    else:
        for line in lines:
            click.echo(terminal.printable(line))


@cli.command("backfill")
@click.option(
    "--batch-size",
    type=click.IntRange(1, defaults.BACKFILL_MAX_BATCH_SIZE),
    default=defaults.BACKFILL_BATCH_SIZE,
    show_default=True,
    metavar="N",
    help="Customers per batch; each batch is one short transaction.",
)
@click.option(
    "--sleep",
    type=FiniteFloatRange(min=0),
    default=defaults.BACKFILL_SLEEP_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Pause between batches.",
)
@click.option(
    "--max-batch-seconds",
    type=FiniteFloatRange(min=0, min_open=True),
    default=defaults.BACKFILL_MAX_BATCH_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="A batch running longer halves the next;"
    f" {defaults.BACKFILL_STATEMENT_TIMEOUT_FACTOR}x this is its statement_timeout.",
)
@click.option(
    "--settle-seconds",
    type=FiniteFloatRange(min=0),
    default=defaults.BACKFILL_SETTLE_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="How long the final sweep retries customers held by open transactions before it exits 1.",
)
@click.option("--dry-run", is_flag=True, help="Report what a backfill would change; change nothing.")
@click.option("--restart", is_flag=True, help="Abandon an unfinished run and start over from the first customer.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--by", "actor", metavar="PERSON", help="Who runs it (default: the OS user); stored with the run.")
@click.option("--reason", help="Why: stored with the run.")
@pass_settings
def backfill_command(
    settings: Settings,
    batch_size: int,
    sleep: float,
    max_batch_seconds: float,
    settle_seconds: float,
    dry_run: bool,
    restart: bool,
    fmt: str,
    actor: str | None,
    reason: str | None,
) -> None:
    """Bring every customer in the rollout to the sync's derived state; an unfinished run is resumed."""
    if dry_run and restart:
        raise BadInput("--dry-run changes nothing, so it cannot --restart; drop one of the two")
    with _migrated(settings) as conn:
        if dry_run:
            preview = backfill.preview(conn)
            _emit(fmt, preview.as_json(), reports.preview_lines(preview))
            return
        options = backfill.Options(batch_size, sleep, max_batch_seconds, restart, actor, settle_seconds, reason)
        # With --format json stdout carries the summary only, so progress goes to stderr.
        with progress.reporter((err if fmt == "json" else out).real) as on_progress:
            result = backfill.run(conn, options, on_progress)
    _emit(fmt, result.as_json(), reports.backfill_lines(result))


@cli.command("verify")
@click.option(
    "--examples",
    type=click.IntRange(0, defaults.VERIFY_MAX_EXAMPLES),
    default=defaults.VERIFY_EXAMPLES,
    show_default=True,
    metavar="N",
    help="Example customer ids per drift class.",
)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="markdown: the QA report.")
@pass_settings
def verify_command(settings: Settings, examples: int, fmt: str) -> None:
    """Compare the billing tables with the derived state of the customers in the rollout; exit 1 on drift."""
    with _migrated(settings) as conn:
        report = verify.check(conn, examples)
    if fmt == "markdown":
        click.echo(reports.verify_markdown(report))
    else:
        _emit(fmt, report.as_json(), reports.verify_lines(report))
    if not report.clean:
        classes = sum(1 for item in report.drift if item.rows)
        raise CheckFailed(f"drift found in {classes} of {len(report.drift)} classes; run `sync-admin backfill`")


@cli.group("rollout")
def rollout_group() -> None:
    """The rollout plan's release gates."""


@rollout_group.command("check")
@click.option(
    "--min-hours",
    type=FiniteFloatRange(min=0),
    default=defaults.ROLLOUT_MIN_HOURS,
    show_default=True,
    help="How long the flag must have been on for everyone.",
)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="markdown: for the issue.")
@pass_settings
def rollout_check(settings: Settings, min_hours: float, fmt: str) -> None:
    """Is account_data_persistence ready to release? Each gate pass/fail with its evidence; exit 0 only if all pass."""
    with _migrated(settings) as conn:
        checklist = rollout.check(conn, min_hours)
    if settings.env is not None:  # every environment the rollout reaches first must have passed its own check
        checklist = rollout_status.with_staging_gates(checklist, settings.env, min_hours)
    if fmt == "markdown":
        click.echo(reports.checklist_markdown(checklist))
    else:
        _emit(fmt, checklist.as_json(), reports.checklist_lines(checklist))
    if not checklist.passed:
        raise CheckFailed(f"not ready to release the flag: {checklist.failed} of {len(checklist.lines)} checks failed")


@rollout_group.command("envs")
def rollout_envs() -> None:
    """The named environments (sync-admin.toml, the user's config.toml) and where each one's database is."""
    for line in environments.listing(environments.load()):
        click.echo(terminal.printable(line))


@rollout_group.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_settings
def rollout_status_command(settings: Settings, fmt: str) -> None:
    """Every environment side by side: state, cohort, since when and by whom, drift, skips, backfill, last change.

    Exit 1 when an environment cannot be reached."""
    from sync_admin import environments_render

    chosen = environments.covered(settings.env, settings.url_option is not None, settings.url)
    statuses = rollout_status.status(chosen)
    if fmt == "json":
        click.echo(render.to_json([item.as_json() for item in statuses]))
    else:
        out.print(environments_render.status_table(statuses))
        for line in environments_render.unreachable_lines(statuses):
            click.echo(terminal.printable(line))
    _require_reached([item.name for item in rollout_status.unreachable(statuses)], len(statuses))


@rollout_group.command("report")
@click.option(
    "--min-hours",
    type=FiniteFloatRange(min=0),
    default=defaults.ROLLOUT_MIN_HOURS,
    show_default=True,
    help="The verification period, as for `rollout check`.",
)
@click.option("--format", "fmt", type=FORMATS, default="markdown", show_default=True, help="markdown: for the issue.")
@pass_settings
def rollout_report_command(settings: Settings, min_hours: float, fmt: str) -> None:
    """The rollout issue's checklist, each item from the environments' audit logs and state (--env: up to NAME)."""
    from sync_admin import environments_render, rollout_report

    staging, target = environments.plan(settings.env, settings.url_option is not None, settings.url)
    report = rollout_report.build(staging, target, min_hours)
    if fmt == "markdown":
        click.echo(environments_render.report_markdown(report))
    else:
        _emit(fmt, report.as_json(), environments_render.report_lines(report))
    _require_reached(list(report.unreachable), len(report.order))


def _require_reached(unreachable: list[str], total: int) -> None:
    if unreachable:
        raise CheckFailed(f"{len(unreachable)} of {total} environments cannot be reached: {', '.join(unreachable)}")


# --- monitoring: recorded skips, watch, doctor (issue 5) ----------------------------------------
# Imported in the commands: sentry_sdk and the doctor's alembic scripts load only when used.

TEXT_OR_JSON = click.Choice(["text", "json"])


@cli.command("errors")
@click.option("--since", default="24h", show_default=True, metavar="DURATION", help="How far back: 30d, 12h, 90m.")
@click.option(
    "--examples", type=click.IntRange(0, 100), default=3, show_default=True, metavar="N", help="Latest per reason."
)
@click.option("--format", "fmt", type=TEXT_OR_JSON, default="text", show_default=True)
@pass_settings
def errors_command(settings: Settings, since: str, examples: int, fmt: str) -> None:
    """Customer writes the sync skipped: counts per reason code and the latest examples."""
    from sync_admin import durations, events, events_render

    window = durations.parse(since, "--since")
    with _migrated(settings) as conn:
        schema.require_events(conn)
        summary = events.summary(conn, window, examples)
        done = release.released(conn)
    if fmt == "json":
        click.echo(render.to_json({**summary.as_json(), "release": done.as_json() if done else None}))
    else:
        if done is not None:
            click.echo(f"{done.flag} {done.summary}: the sync is always on, its skips are still recorded")
        for line in events_render.summary_lines(summary, durations.describe(window)):
            click.echo(terminal.printable(line))


@cli.group("events")
def events_group() -> None:
    """The skipped customer writes recorded in billing_sync.sync_events."""


@events_group.command("prune")
@click.option("--older-than", required=True, metavar="DURATION", help="Delete events older than this: 30d, 12h, 90m.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@pass_settings
def events_prune(settings: Settings, older_than: str, dry_run: bool) -> None:
    """Retention: delete the events recorded longer ago than --older-than, in short batches."""
    from sync_admin import durations, events, events_render

    age = durations.parse(older_than, "--older-than")
    with _migrated(settings) as conn:
        schema.require_events(conn)
        result = events.prune(conn, age, dry_run=dry_run)
    click.echo(events_render.prune_line(result, age))


@cli.command("watch")
@click.option(
    "--heartbeat",
    type=FiniteFloatRange(min=0, min_open=True),
    default=30,
    show_default=True,
    metavar="SECONDS",
    help="A line with counts this often.",
)
@click.option("--heal", is_flag=True, help="Also run the repair service (`sync-admin heal`) in this process.")
@pass_settings
def watch_command(settings: Settings, heartbeat: float, heal: bool) -> None:
    """Print each skipped customer write as it happens (LISTEN billing_sync_skips); SENTRY_DSN: report it there."""
    from sync_admin import heal as healing
    from sync_admin import sentry, watch

    healer = None
    if heal:
        healer = healing.start_in_background(settings.url(), healing.Options(), _heal_line, _warn)
    reporter = sentry.from_environment()
    try:
        watch.watch(settings.url(), watch.Options(heartbeat=heartbeat), _line, _warn, reporter)
    finally:
        if healer is not None:
            healer.stop()


@cli.command("heal")
@click.option("--once", is_flag=True, help="Drain the queue and exit: 0 when empty, 1 when customers are still held.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    metavar="N",
    help="Queued repairs per pass; each pass is one short transaction.",
)
@click.option(
    "--poll",
    type=FiniteFloatRange(min=0, min_open=True),
    default=5,
    show_default=True,
    metavar="SECONDS",
    help="Read the queue at least this often (notifications only wake the service early).",
)
@click.option(
    "--max-seconds",
    type=FiniteFloatRange(min=0),
    default=30,
    show_default=True,
    metavar="SECONDS",
    help="With --once: how long to keep retrying customers held by open transactions.",
)
@pass_settings
def heal_command(settings: Settings, once: bool, batch_size: int, poll: float, max_seconds: float) -> None:
    """Repair what the sync had to leave (billing_sync.sync_repairs), as soon as the transactions holding it end."""
    from sync_admin import heal as healing

    options = healing.Options(batch_size=batch_size, poll=poll)
    if once:
        result = healing.heal_once(settings.url(), options, max_seconds)
        click.echo(f"heal: repaired {result.repaired} customers in {result.seconds:.1f}s; the queue is empty")
        return
    healing.serve(settings.url(), options, _heal_line, _warn)


def _heal_line(line: str) -> None:
    from sync_admin.events_render import timestamp

    _line(f"{timestamp(datetime.now().astimezone())} heal: {line}")


def _line(line: str) -> None:
    """One line of a service's output (skips carry values from the database: escaped)."""
    click.echo(terminal.printable(line))


def _warn(line: str) -> None:
    click.echo(terminal.printable(line), err=True)


@cli.command("doctor")
@click.option("--format", "fmt", type=TEXT_OR_JSON, default="text", show_default=True)
@pass_settings
def doctor_command(settings: Settings, fmt: str) -> None:
    """Check the installed objects against the code; exit 1 with the fixing command on any failure."""
    from sync_admin import doctor

    with _migrated(settings) as conn:
        report = doctor.run(conn)
    if fmt == "json":
        click.echo(render.to_json(report.as_json()))
    else:
        for line in report.lines():
            click.echo(terminal.printable(line))
    if report.failed:
        raise CheckFailed(f"doctor: {len(report.failed)} of {len(report.checks)} checks failed")


# --- unleash: the database flag follows its Unleash flag (issue 14) -------------------------------
# Imported in the commands: without an Unleash configuration nothing of the bridge loads.

UNLEASH_TIMEOUT = click.option(
    "--timeout",
    type=FiniteFloatRange(min=0.1, max=120),
    default=5,
    show_default=True,
    metavar="SECONDS",
    help="The longest one request to Unleash may take, from connecting to the last byte.",
)


@cli.group("unleash")
def unleash_group() -> None:
    """The database flag follows its Unleash flag: sync-admin --env NAME unleash ... (docs/unleash.md).

    Exit codes: 0 the database follows Unleash; 2 configuration; 3 the database cannot be reached; 4 Unleash
    cannot be read (nothing changed); 5 Unleash's flag cannot be represented or is not served (nothing applied but
    an off); 6 a kill switch pulled in the database conflicts with Unleash (nothing applied); 7 the flag was
    released."""


@unleash_group.command("sync")
@click.option("--dry-run", is_flag=True, help="Print the change it would make; change nothing.")
@click.option("--format", "fmt", type=TEXT_OR_JSON, default="text", show_default=True)
@UNLEASH_TIMEOUT
@pass_settings
def unleash_sync(settings: Settings, dry_run: bool, fmt: str, timeout: float) -> None:
    """Read the flag from Unleash once and apply it to the database in one audited transaction."""
    from sync_admin import unleash_bridge, unleash_config, unleash_follow

    config = unleash_config.for_environment(settings.env)
    outcome = unleash_follow.sync_once(config, settings.url(), dry_run=dry_run, timeout=timeout)
    if fmt == "json":
        click.echo(render.to_json(unleash_bridge.as_json(outcome)))
    else:
        for line in outcome.lines():
            _line(line)
    failure = outcome.plan.failure()
    if failure is not None:
        raise failure


@unleash_group.command("follow")
@click.option(
    "--interval",
    type=FiniteFloatRange(min=0.1),
    default=5,
    show_default=True,
    metavar="SECONDS",
    help="Poll Unleash this often (an unchanged flag costs a 304).",
)
@click.option(
    "--max-backoff",
    type=FiniteFloatRange(min=0.1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="The longest wait between tries while Unleash or the database cannot be reached.",
)
@click.option(
    "--remind",
    type=FiniteFloatRange(min=1),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="Repeat a standing conflict or refusal this often.",
)
@click.option("--dry-run", is_flag=True, help="Print the changes it would make; change nothing.")
@UNLEASH_TIMEOUT
@pass_settings
def unleash_follow_command(
    settings: Settings, interval: float, max_backoff: float, remind: float, dry_run: bool, timeout: float
) -> None:
    """The long-running bridge: apply every change of the Unleash flag, within one interval (SENTRY_DSN: report
    conflicts and refusals there). Ctrl-C or SIGTERM stops it; the release of the flag ends it (exit 7)."""
    from sync_admin import unleash_config, unleash_follow

    config = unleash_config.for_environment(settings.env)
    options = unleash_follow.Options(interval, max_backoff, timeout, remind, dry_run)
    unleash_follow.follow(config, settings.url(), options, _line, _warn)


@unleash_group.command("resolve")
@click.option(
    "--accept-unleash",
    "choice",
    flag_value="accept",
    help="Switch the flag on in the database as Unleash says (releases the local kill switch).",
)
@click.option(
    "--keep-local",
    "choice",
    flag_value="keep",
    help="Keep the kill switch pulled and switch the flag off in Unleash too (needs admin_token_env).",
)
@_change_options
@UNLEASH_TIMEOUT
@pass_settings
def unleash_resolve(
    settings: Settings, choice: str | None, reason: str | None, actor: str | None, timeout: float
) -> None:
    """End a conflict: a kill switch pulled in the database while Unleash says on."""
    from sync_admin import unleash_config, unleash_follow

    if choice is None:
        raise BadInput("say how to resolve it: --accept-unleash or --keep-local; nothing changed")
    config = unleash_config.for_environment(settings.env)
    lines = unleash_follow.resolve_conflict(
        config,
        settings.url(),
        accept=choice == "accept",
        actor=actor or flags.default_actor(),
        reason=reason,
        timeout=timeout,
    )
    for line in lines:
        _line(line)


# --- plumbing -----------------------------------------------------------------------------------


def _migrated(settings: Settings) -> psycopg.Connection:
    """An autocommit connection to a migrated database (changes open their own transaction); exit 3 otherwise."""
    return schema.migrated(db.connect(settings.url(), autocommit=True))


class _StderrLog(logging.Handler):
    """Warnings of the library (a migration waiting for a lock) as lines on stderr, passwords masked.

    It writes to the sys.stderr of the moment, not the one at start-up (tests capture stderr per test).
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(f"sync-admin: {db.mask(self.format(record))}", markup=False, highlight=False)
        except Exception:  # logging must never be what fails a command
            self.handleError(record)


def _log_to_stderr() -> None:
    logger = logging.getLogger("sync_admin")
    if not any(isinstance(handler, _StderrLog) for handler in logger.handlers):
        logger.addHandler(_StderrLog(logging.WARNING))
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    # psycopg logs what it does about an interrupted query ("query cancellation interrupted ...: closing
    # connection"), which Python's last-resort handler would print beside the command's own one line about it.
    driver = logging.getLogger("psycopg")
    if not driver.handlers:
        driver.addHandler(logging.NullHandler())
    driver.propagate = False


def main(argv: list[str] | None = None) -> None:
    """Entry point: one line on stderr and a meaningful exit code for every failure (--debug adds the
    traceback before that line and keeps the exit code)."""
    args = sys.argv[1:] if argv is None else argv
    _log_to_stderr()
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="sync-admin", standalone_mode=False)
    except click.exceptions.Abort:
        with interrupts.Deferred():  # the last line and the exit status, whole: a second Ctrl-C changes neither
            err.print("aborted")
            sys.exit(interrupts.ABORTED_EXIT_CODE)
    except Exception as exc:
        line, code = _failure(exc)
        with interrupts.Deferred():
            if debug:  # masked too: an exception's text may quote a URL
                sys.stderr.write(db.mask(traceback.format_exc()))
            err.print(line)
            sys.exit(code)


def _failure(exc: Exception) -> tuple[str, int]:
    """The one line and the exit code for a failure."""
    if isinstance(exc, click.ClickException):
        code = BadInput.exit_code if isinstance(exc, click.UsageError) else exc.exit_code
        return f"error: {db.mask(exc.format_message())} (see `sync-admin --help`)", code
    if isinstance(exc, SyncAdminError):
        return f"error: {db.mask(str(exc))}", exc.exit_code
    denied = db.permission_denied(exc)
    if denied is not None:
        return f"error: {db.mask(denied)}", 1
    import psycopg

    if isinstance(exc, psycopg.Error):
        return f"database error: {db.mask(db.first_line(exc))}", 1
    # A bug of ours: still one line, the traceback is one flag away.
    name = type(exc).__name__
    return f"internal error: {name}: {db.mask(db.first_line(exc))} (run with --debug for the traceback)", 1


if __name__ == "__main__":
    interrupts.run(main)
