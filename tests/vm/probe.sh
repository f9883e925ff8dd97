#!/bin/sh
# bosky VM tier instrumentation (not part of bosky): once cloud-init has written
# result.json, write what the test reads back to the second serial port, which
# nothing else in the guest uses. Sections are "==> NAME <==" lines; the last
# is "==> done BOOT_ID <==". Kept short: the serial port is slow under TCG.
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null
boot_id=$(cat /proc/sys/kernel/random/boot_id)
say() { printf '%s\n' "$*" >&3; }
section() { say "==> $1 <=="; }

section "start $boot_id"
i=0
while [ ! -e /run/cloud-init/result.json ] && [ $i -lt 3600 ]; do
  sleep 0.5; i=$((i + 1))
done
section result-timing
# Seconds from kernel start to result.json, from its mtime (the probe's own
# polling does not blur it).
python3 -c '
import os, time
up = float(open("/proc/uptime").read().split()[0])
print("%.3f" % (os.stat("/run/cloud-init/result.json").st_mtime - (time.time() - up)))' >&3
# Give the reporter time to deliver and exit (or to show that it cannot).
i=0
while pgrep -f cc_bosky.boot.reporter >/dev/null && [ $i -lt ${BOSKY_PROBE_WAIT:-120} ]; do
  sleep 0.5; i=$((i + 1))
done
section result.json; cat /run/cloud-init/result.json >&3; say
section cloud-init-status
cloud-init status --long >&3 2>&1; say "exit $?"
section units
for u in cloud-init-local cloud-init cloud-init-main cloud-init-network cloud-config \
         cloud-final bosky-reporter; do
  systemctl show -p Id,LoadState,ActiveState,Result,KillMode,ExecMainStatus "$u.service" \
    2>/dev/null | tr '\n' ' ' >&3; say
done
systemctl show -p Id,LoadState,ActiveState,UnitFileState bosky-reporter.path 2>/dev/null \
  | tr '\n' ' ' >&3; say
section reporters
ps -eo pid,args | grep '[c]c_bosky.boot.reporter' >&3
cat /proc/$(pgrep -f cc_bosky.boot.reporter | head -n 1)/cgroup 2>/dev/null >&3
section cloud-init-log-bosky
grep -i bosky /var/log/cloud-init.log | grep -v "Read" | tail -n 40 >&3
section cloud-init-errors
grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -n 30 >&3
section bosky-log
tail -n 40 /var/log/bosky.log >&3 2>/dev/null
section schema-system
cloud-init schema --system 2>&1 | tail -n 12 >&3
section bosky-status
bosky status >&3 2>&1
section "done $boot_id"
sync
