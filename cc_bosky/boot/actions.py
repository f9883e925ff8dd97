"""The boot reporter's side of acting on the verdict.

Resolved while cloud-init is still busy (:meth:`BootActions.prepare`), kept
alive while the boot runs long (:meth:`BootActions.tick`), and spooled once
per boot with the first verdict (:meth:`BootActions.spool`): a ``timeout``
abandons the instance, and the late final verdict acts no more, so a hook is
never completed twice.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

from .. import config
from ..actions import (
    Plan,
    complete_facts,
    facts_from_record,
    heartbeat,
    hook_spec,
    resolve,
    signal_spec,
    wanted_tags,
)
from ..delivery.spool import Spool, SpoolError
from ..identity import Identity
from . import state

LOG = logging.getLogger("bosky.actions")
ACTED = "actions"  # the once-per-boot claim in run_dir/sent/


class BootActions:
    def __init__(self, settings: config.Settings, environ: Mapping[str, str],
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.environ = environ
        self.clock = clock
        self.hook = hook_spec(settings.lifecycle_hook)
        self.signal = signal_spec(settings.cfn_signal)
        self.plan: Optional[Plan] = None
        self._ident: Optional[Identity] = None
        self._next_beat: Optional[float] = None

    @property
    def configured(self) -> bool:
        return bool(self.hook or self.signal)

    def region(self, ident: Identity) -> Optional[str]:
        return ident.region or self.settings.region

    def prepare(self, ident: Identity, record: Any) -> None:
        """Find the group, hook, stack and resource (once per reporter)."""
        if self.plan is not None or not self.configured:
            return
        facts = complete_facts(facts_from_record(record), self.environ,
                               wanted_tags(self.hook, self.signal))
        self._ident = ident
        self.plan = resolve(self.hook, self.signal, facts, ident.instance_id, self.region(ident),
                            self.settings.autoscaling_endpoint_url, self.environ)
        if self.plan.group and self.hook and self.hook.heartbeat:
            self._next_beat = self.clock() + self.hook.heartbeat
        if facts.target_state:
            LOG.info("Auto Scaling target lifecycle state: %s", facts.target_state)

    def tick(self) -> None:
        """A heartbeat for the pending lifecycle action, when one is due."""
        if self._next_beat is None or self.clock() < self._next_beat:
            return
        if state.was_sent(self.settings.run_dir, ACTED):
            self._next_beat = None
            return
        ident, plan = self._ident, self.plan
        assert ident is not None and plan is not None and self.hook is not None
        region = self.region(ident)
        alive = bool(ident.instance_id and region) and heartbeat(
            plan, str(ident.instance_id), str(region), self.settings.autoscaling_endpoint_url,
            self.environ)
        self._next_beat = self.clock() + self.hook.heartbeat if alive else None

    def spool(self, status: str, ident: Identity, record: Any, boot_key: str,
              spool: Spool) -> int:
        """Spool this boot's actions for ``status``; the first verdict only."""
        if not self.configured or not state.mark_sent(self.settings.run_dir, ACTED):
            return 0
        self.prepare(ident, record)
        region = self.region(ident)
        if self.plan is None or not ident.instance_id or not region:
            return 0
        count = 0
        for action in self.plan.actions(status, ident.instance_id, boot_key):
            endpoint = self.settings.endpoints().get(action.service)
            try:
                spool.put(action, region, endpoint, "not sent yet")
                count += 1
            except SpoolError as exc:  # disk full: sent from memory by the outbox instead
                LOG.error("%s; %s sent without a spool copy", exc, action.describe())
                from ..delivery.outbox import act

                act([action], region, self.settings.endpoints(), None, self.environ,
                    self.settings.send_timeout)
        return count
