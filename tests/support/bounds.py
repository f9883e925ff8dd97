"""The time bounds tests use, stated once and sized for a loaded 2-core machine.

Tests never measure speed (benchmarks/ does, as ratios against a baseline run
in the same invocation). A bound stays in a test only where it protects
documented behaviour, such as "an unreachable endpoint ends in exit 1 inside
send_timeout"; it is then the documented figure plus :data:`SLACK`, so a busy
machine (another job beside CI, a VM under TCG) cannot turn it red, while a
real regression (a hang, a retry loop that ignores its budget) still does.
"""

#: What a busy machine may add to a documented bound: interpreter start-up,
#: imports and scheduling delays, all several times slower under load.
SLACK = 20.0

#: What the command may take beyond ``--timeout``, and the reporter beyond
#: ``flush_window``, as README's "Network" section states it: start-up, the
#: spool's fsyncs, the IMDS identity lookup when no region is known without it.
COMMAND_SLACK = 3.0

#: How long to wait for an event that must arrive. Waits end as soon as it
#: does, so a generous figure costs nothing when things work.
ARRIVAL = 60.0
