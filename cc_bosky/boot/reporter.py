"""The boot reporter: waits for cloud-init's verdict and delivers it.

Started by the module (:func:`~cc_bosky.boot.handoff.reporter_argv`: in
``/``, never importing from the directory it was started in) in its own
session, or by ``bosky-reporter.path`` (``--request FILE``, naming the job)
in a unit of its own (:mod:`~cc_bosky.boot.handoff`), holding
``run_dir/reporter.lock`` for its whole life. It polls cloud-init's records,
sends ``timeout`` once if the deadline passes, sends the final verdict when
``result.json`` appears (or ``fail`` if cloud-init is gone without one), then
keeps flushing the spool for ``flush_window`` seconds and exits. Each verdict
is spooled before it is sent, so a reporter killed mid-send loses nothing: the
next boot or ``bosky flush`` sends it, under the
same EventId.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from .. import arns, config, files
from ..delivery.spool import Spool, SpoolError
from ..event import Event, make_event, stable_event_id
from ..identity import Identity, identity_from_record, read_boot_id
from . import handoff, state, verdict
from .liveness import CloudInitWatch

LOG = logging.getLogger("bosky.reporter")
LOG_FILE = "/var/log/bosky.log"
POLL = 0.1  # result.json to event: the poll adds at most this much
# result.json can only follow the final stage, so before it the reporter only
# watches the deadline and cloud-init's health, and polls slowly: on whole-
# machine boots under TCG, polling at 0.1 s through the init and config stages
# (a /proc scan each time) cost ~25 s of CPU in a ~220 s boot on one vCPU.
EARLY_POLL = 1.0
SLOW_POLL = 2.0  # after a timeout verdict, waiting may go on for hours
VANISHED_GRACE = 10.0  # cloud-init's process is gone; result.json would be written by then
KINDS = ("timeout", "final")
UNIT_LOCK_WAIT = 5.0
#: A log line's bound: a traceback fits, an endpoint's whole error page does not.
LOG_LINE_MAX = 4000


class Reporter:
    def __init__(self, settings: config.Settings, job: Mapping[str, Any],
                 environ: Mapping[str, str],
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.job = job
        self.environ = environ
        self.clock = clock
        self.sleep = sleep
        self.cloud_run_dir = str(job.get("cloud_run_dir") or "/run/cloud-init")
        self.cloud_data_dir = str(job.get("cloud_data_dir") or "/var/lib/cloud")
        self.spool = Spool(settings.spool_dir, settings.spool_max_events, settings.spool_max_bytes)
        self.started = clock()
        self._first: Optional[bool]
        self._imds: Optional[Identity] = None  # IMDS's answer, once a run
        self.watch = CloudInitWatch(state.path(settings, state.FINAL_PID))
        from .actions import BootActions

        self.actions = BootActions(settings, environ, clock)

    # -- the life of a reporter -----------------------------------------

    def run(self) -> None:
        self._flush(budget=min(5.0, self.settings.send_timeout))  # earlier boots' leftovers
        final = self.wait_for_verdict()
        if final is not None:
            self.report("final", final)
            _log_footprint("verdict sent")
        self._flush_window()

    def wait_for_verdict(self) -> Optional[verdict.Verdict]:
        give_up = self.settings.deadline + max(3600.0, 3.0 * self.settings.deadline)
        gone_since: Optional[float] = None
        prepared = False
        while True:
            records = verdict.read_records(self.cloud_run_dir)
            if not prepared and (records.finished or _stage_done(records.status, "init")):
                self.prepare(records)
                prepared = True
            if prepared:
                self.actions.tick()  # a heartbeat for the lifecycle hook, when due
            if records.finished:
                return verdict.final_verdict(records, self.settings.degraded_is,
                                             self._ignore_recoverable)
            elapsed = verdict.elapsed(records.status, self.clock(), verdict.read_uptime())
            if elapsed is None:
                elapsed = self.clock() - self.started
            if elapsed >= self.settings.deadline and not state.was_sent(self._run, "timeout"):
                self.report("timeout", verdict.timeout_verdict(records, self.settings.deadline,
                                                               elapsed))
            why = self.watch.vanished(records)
            if why:
                gone_since = gone_since or self.clock()
                if self.clock() - gone_since >= VANISHED_GRACE:
                    return verdict.vanished_verdict(records, why)
            else:
                gone_since = None
            if elapsed >= give_up:
                LOG.warning("giving up: cloud-init has not finished after %.0f s", elapsed)
                return None
            if state.was_sent(self._run, "timeout"):
                self.sleep(SLOW_POLL)
            elif verdict.current_stage(records.status) in ("modules-final", None) and \
                    _stage_done(records.status, "modules-config"):
                self.sleep(POLL)
            else:
                self._sleep_unless_finished(EARLY_POLL)

    def _sleep_unless_finished(self, seconds: float) -> None:
        """Sleep, waking within POLL when result.json appears: a stat is cheap,
        the records and the /proc scan are what EARLY_POLL spares. Where the
        config and final stages take under a second (the namespace tier), a
        plain sleep made result.json -> event ~0.6 s instead of ~0.2 s."""
        result = os.path.join(self.cloud_run_dir, "result.json")
        slept = 0.0
        while slept < seconds and not os.path.exists(result):
            self.sleep(POLL)
            slept += POLL

    def prepare(self, records: verdict.Records) -> None:
        """Load now, while cloud-init is still busy, what the verdict will need:
        the sender's botocore modules and, only if cloud-init has warned about
        this boot's cloud-config schema (23.4+ records it by the end of the init
        stage), the check of it, which loads cloud-init's schema (~15 MB).
        This takes result.json-to-event from ~0.6 s to ~0.2 s (benchmarks/boot.py)."""
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.utils  # noqa: F401  (the sender imports these when it sends)

        from . import cloudconfig

        if cloudconfig.schema_warning_in(records.status):
            cloudconfig.instance_config_valid(self.cloud_data_dir)
        # Asked now (IMDS too, if cloud-init named no instance), so at the
        # verdict nothing stands between it and the spool that can hang.
        ident = self._identity()
        if self.actions.configured:  # find the group and stack now, not after the verdict
            self.actions.prepare(ident, self._instance_data())

    @property
    def _run(self) -> str:
        return self.settings.run_dir

    # -- sending -----------------------------------------------------------

    def report(self, kind: str, found: verdict.Verdict) -> None:
        """Build, spool and send one verdict, at most once per boot and kind."""
        if not state.mark_sent(self._run, kind):
            return
        _hurry()  # a verdict is due: it no longer yields to the boot
        event = self.build_event(kind, found)
        acted = self.actions.spool(found.status, self._identity(), self._instance_data(),
                                   self._boot_key(self._identity()), self.spool)
        state.write_json(state.path(self.settings, state.VERDICT), {
            **event.detail, "Sent": event.status in self.settings.send})
        if event.status not in self.settings.send:
            LOG.info("%s verdict %s not sent (send: %s)", kind, event.status,
                     ", ".join(self.settings.send))
            if acted:
                self._flush(budget=self.settings.send_timeout)
            return
        region = arns.send_region(self.settings.event_bus, self.settings.region,
                             str(event.detail.get("Region") or "") or None)
        if not region:
            LOG.error("%s verdict %s not sent: no region configured or known", kind, event.status)
            return
        try:
            self.spool.put(event, region, self.settings.endpoint_url, "not sent yet")
        except SpoolError as exc:  # disk full: still send, from memory
            LOG.error("%s; sending %s without a spool copy", exc, event.event_id)
            self._send_unspooled(event, region)
            return
        report = self._flush(budget=self.settings.send_timeout)
        LOG.info("%s verdict %s (%s): delivered %d, still spooled %d", kind, event.status,
                 event.event_id, report.delivered, report.remaining)

    def build_event(self, kind: str, found: verdict.Verdict) -> Event:
        ident = self._identity()
        boot_key = self._boot_key(ident)
        extra: Dict[str, Any] = dict(found.fields)
        version = self.job.get("cloud_init_version")
        if version:
            extra["CloudInitVersion"] = str(version)
        if not hasattr(self, "_first"):  # the claim below is made once per boot
            self._first = self._first_boot(ident.instance_id)
        first = self._first
        if first is not None:
            extra["FirstBoot"] = first
        warnings = [str(w) for w in self.job.get("config_warnings") or []]
        if warnings:
            extra["ConfigWarnings"] = warnings
        # Everything from the instance goes through redaction: cloud-init's
        # error strings and messages can quote user data (a runcmd item, a
        # schema warning), and the log tail (redacted as it is read) scripts'
        # output.
        from ..redact import redact, redact_all

        for name in ("Errors", "RecoverableErrors", "ConfigWarnings"):
            if name in extra:
                extra[name] = redact_all(extra[name])
        if self.settings.log_lines:
            from .logtail import OUTPUT_LOG, tail

            extra["LogTail"] = tail(OUTPUT_LOG, self.settings.log_lines)
        from .timings import fields as timing_fields

        extra.update(timing_fields(self._status()))  # BootSeconds, SlowestModules
        region = arns.send_region(self.settings.event_bus, self.settings.region, ident.region)
        return make_event(
            source=self.settings.project,
            detail_type=self.settings.detail_type,
            status=found.status,
            message=redact(found.message),
            identity=ident.detail_fields(),
            origin="boot",
            resources=(arns.instance_arn(ident.instance_id, ident.region or region,
                                         ident.account_id),)
            if ident.instance_id else (),
            event_bus=self.settings.event_bus,
            extra=extra,
            event_id=stable_event_id(ident.instance_id or "-", boot_key, kind),
        )

    def _boot_key(self, ident: Identity) -> str:
        return f"{ident.boot_id or '-'}:{verdict.first_start(self._status()) or 0:.3f}"

    def _instance_data(self) -> Optional[Dict[str, Any]]:
        return state.read_json(os.path.join(self.cloud_run_dir, "instance-data.json"))

    def _identity(self) -> Identity:
        import dataclasses
        import socket

        ident = identity_from_record(self._instance_data())
        if not ident.instance_id:
            # The instance id is part of the verdict's EventId (the same on a
            # re-send) and the region decides where its record goes, so IMDS
            # comes before the spool here: asked once a run, within 2 x 1 s.
            if self._imds is None:
                from ..identity import from_imds

                self._imds = from_imds(self.environ)
            ident = self._imds
        return dataclasses.replace(ident, boot_id=read_boot_id(),
                                   hostname=ident.hostname or socket.gethostname() or None)

    def _status(self) -> Optional[Dict[str, Any]]:
        return verdict.read_records(self.cloud_run_dir).status

    def _first_boot(self, instance_id: Optional[str]) -> Optional[bool]:
        """True the first time this instance id reports a boot verdict.

        cloud-init's own previous-instance-id is rewritten by every stage, so
        by the time a verdict exists it names this instance even on its first
        boot; bosky keeps its own record beside the spool (on the disk, which
        an AMI carries to new instances under other ids).
        """
        if not instance_id:
            return None
        seen = os.path.join(os.path.dirname(self.settings.spool_dir.rstrip("/")), "instances")
        try:
            name = files.safe_name(instance_id, "instance id")
            files.private_dir(seen)
            return files.create_new(os.path.join(seen, name))
        except OSError as exc:
            LOG.warning("FirstBoot left out: %s", exc)
            return None

    def _ignore_recoverable(self, level: str, message: str) -> bool:
        """bosky's own complaints are not the boot's: its config WARNING (it is
        in ConfigWarnings) and cloud-init's schema warning about the stanza."""
        from .cloudconfig import is_only_bosky_schema_warning
        from .launcher import CONFIG_WARNING

        if level.upper() == "WARNING" and message.startswith(CONFIG_WARNING):
            return True
        return is_only_bosky_schema_warning(level, message, self.cloud_data_dir)

    def _flush(self, budget: float) -> Any:
        from ..delivery.outbox import FlushReport, flush

        try:
            return flush(self.spool, self.environ, budget, self.settings.endpoint_url,
                         action_endpoints=self.settings.endpoints())
        except SpoolError as exc:  # a spool bosky refuses: nothing in it is sent
            LOG.error("%s", exc)
            return FlushReport()

    def _flush_window(self) -> None:
        from ..delivery.outbox import flush_for

        try:
            self.spool.check()
            if not self.spool.records()[0]:
                return
            report = flush_for(self.spool, self.environ, self.settings.flush_window,
                               self.settings.send_timeout, self.settings.endpoint_url,
                               action_endpoints=self.settings.endpoints())
        except SpoolError as exc:
            LOG.error("%s", exc)
            return
        if report.remaining:
            LOG.warning("%d event(s) still spooled after the flush window (%s); the next boot "
                        "or 'bosky flush' retries them", report.remaining, report.last_error)

    def _send_unspooled(self, event: Event, region: str) -> None:
        """No spool copy to fall back on: the sender keeps trying, by its one retry
        policy, for the whole flush window rather than one send timeout."""
        from ..delivery.outbox import send
        from ..delivery.sender import Target

        budget = max(self.settings.flush_window, self.settings.send_timeout)
        send([event], Target(region, self.settings.endpoint_url, budget), None, self.environ)


def _stage_done(status: Optional[Dict[str, Any]], name: str) -> bool:
    stage = (status or {}).get(name)
    return isinstance(stage, dict) and bool(stage.get("finished"))


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return None


def _yield_to_the_boot() -> None:
    """Wait at the lowest priority (its unit sets it already; a reporter
    spawned by the stage lowers its own): on a one-vCPU guest the reporter's
    imports and polls at nice 0 made the boot 4-18 % longer (benchmarks/vm_boot.py)."""
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, 0) < handoff.REPORTER_NICE:
            os.setpriority(os.PRIO_PROCESS, 0, handoff.REPORTER_NICE)


def _hurry() -> None:
    """Back to nice 0 once a verdict is due, so that an application busy on
    every core right after the boot does not hold the verdict up. Root may;
    elsewhere the reporter stays where it is."""
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)


class OneLineFormatter(logging.Formatter):
    """Each record is one line of at most :data:`LOG_LINE_MAX` characters:
    what an endpoint answered, an exception's text or an instance id is
    data, so its newlines (a forged log line) and terminal escapes are
    escaped, and a huge answer is clipped."""

    def format(self, record: logging.LogRecord) -> str:
        from ..text import printable

        line = printable(super().format(record))
        if len(line) > LOG_LINE_MAX:
            line = f"{line[:LOG_LINE_MAX]}... ({len(line) - LOG_LINE_MAX} more characters)"
        return line


def _setup_logging() -> None:
    try:
        fd = files.open_append(LOG_FILE)
    except OSError as exc:  # a planted symlink or someone else's file: log nowhere
        with contextlib.suppress(OSError):
            sys.stderr.write(f"bosky: not logging to {LOG_FILE}: {exc}\n")
    else:
        handler = logging.StreamHandler(open(fd, "a", encoding="utf-8"))  # noqa: SIM115
        handler.setFormatter(OneLineFormatter(
            "%(asctime)s bosky[%(process)d]: %(levelname)s %(message)s"))
        logging.getLogger("bosky").addHandler(handler)  # the reporter, outbox and actions
    logging.getLogger("bosky").setLevel(logging.INFO)


def _hold_lock(settings: config.Settings, environ: Mapping[str, str]) -> Optional[int]:
    """The reporter lock: inherited from the module, or taken now."""
    inherited = environ.get("BOSKY_REPORTER_LOCK_FD")
    if inherited and inherited.isdigit():
        return int(inherited)
    lock = files.lock(state.path(settings, state.LOCK))
    # Started as a systemd unit, the reporter may start before the module that
    # asked for it has let go of the lock: wait a little for it, not for a
    # reporter that holds it for its whole life.
    waited = 0.0
    while lock is None and environ.get("BOSKY_REPORTER_UNIT") and waited < UNIT_LOCK_WAIT:
        time.sleep(0.05)
        waited += 0.05
        lock = files.lock(state.path(settings, state.LOCK))
    return lock


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _yield_to_the_boot()
    _setup_logging()
    job_file: Optional[str] = args[0] if args else None
    if args[:1] == ["--request"] and len(args) == 2:  # started by bosky-reporter.path
        job_file = handoff.take_request(args[1])
    job = state.take_json(job_file) if job_file else None
    if job is None:
        LOG.error("no readable job file given: %s", args)
        return 2
    # A reporter in its own unit has systemd's environment, not the stage's.
    passed = job.get("environ")
    if isinstance(passed, dict) and os.environ.get("BOSKY_REPORTER_UNIT"):
        os.environ.update({k: v for k, v in passed.items()
                           if isinstance(k, str) and isinstance(v, str)})
    try:
        settings = config.build(config.lenient(job.get("settings") or {}, "job")[0])
        if _hold_lock(settings, os.environ) is None:
            return 0  # another reporter owns this boot
        # The job file is gone once read (it may hold credentials), so this line
        # is where an operator sees which layer configured this boot's reporter.
        LOG.info("reporting for project %s: deadline %d s, flush window %d s, sends %s",
                 settings.project, settings.deadline, settings.flush_window,
                 ",".join(settings.send))
        Reporter(settings, job, os.environ).run()
    except Exception:  # the log is the only place a background process can speak
        LOG.exception("reporter failed")
        return 1
    finally:
        _log_footprint("reporter exiting")
    return 0


def _log_footprint(when: str) -> None:
    """CPU time and peak memory so far, for operators and for benchmarks/boot.py."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    LOG.info("%s; CPU %.2f s, peak memory %.1f MB", when, usage.ru_utime + usage.ru_stime,
             (_peak_kb() or usage.ru_maxrss) / 1024)


def _peak_kb() -> Optional[int]:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: execve keeps the
    peak of the address space it replaces, and posix_spawn's child starts in
    cloud-init's (vfork), so ru_maxrss would report cloud-init's size."""
    for line in (_read_text("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


if __name__ == "__main__":
    sys.exit(main())
