#!/bin/sh
# The packaged unit under systemd, in a VM booted with systemd as init on
# Debian 12's kernel (cargo xtask test; the VM's root is the host's,
# copy-on-write, so nothing here reaches the host). Installs the package
# with dpkg -i, points /etc/default/mxgate at a veth pair of the VM's own,
# starts mxgate.service with every hardening setting of the unit, and shows
# it attaches, logs stats, logs a refresh made from cron's side, writes its
# metrics, and is not restarted after an exit 2 (invalid settings).
# Usage: unit-systemd.sh DEB RESULTS_DIR
set -u
deb=$1
results=$2
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAILED: $1"; }
# Waits up to 60 s for the journal of mxgate.service to have a line with $1.
journal_has() {
    i=0
    while [ $i -lt 120 ]; do
        journalctl -u mxgate.service --no-pager -o cat | grep -q -- "$1" && return 0
        i=$((i + 1))
        sleep 0.5
    done
    return 1
}
finish() {
    journalctl -u mxgate.service --no-pager -o cat >"$results/journal.txt" 2>&1
    systemd-analyze security mxgate.service >"$results/security.txt" 2>&1
    echo "unit under systemd: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

systemctl is-system-running --wait >/dev/null 2>&1
echo "systemd: $(systemctl is-system-running 2>&1)"
dpkg -i "$deb" >"$results/dpkg.txt" 2>&1 && ok "dpkg -i" || { fail "dpkg -i: $(tail -5 "$results/dpkg.txt")"; finish; }
[ "$(stat -c %a /var/lib/mxgate)" = 700 ] && ok "/var/lib/mxgate is 0700" || fail "/var/lib/mxgate is $(stat -c %a /var/lib/mxgate)"
systemctl is-enabled mxgate.service >/dev/null 2>&1 && fail "installing enabled the service" || ok "installing enables nothing"

# Unset settings: exit 2, and no restart loop.
systemctl start mxgate.service
i=0
while [ $i -lt 60 ] && [ "$(systemctl show -p ExecMainStatus --value mxgate.service)" != 2 ]; do
    i=$((i + 1))
    sleep 0.5
done
[ "$(systemctl show -p ExecMainStatus --value mxgate.service)" = 2 ] && ok "empty settings exit 2" || fail "empty settings: ExecMainStatus $(systemctl show -p ExecMainStatus --value mxgate.service)"
# RestartSec is 5 s: a restart would have happened by then.
sleep 7
[ "$(systemctl show -p NRestarts --value mxgate.service)" = 0 ] && ok "exit 2 is not restarted" || fail "exit 2 restarted $(systemctl show -p NRestarts --value mxgate.service) times"
systemctl reset-failed mxgate.service 2>/dev/null

ip link add name mxa type veth peer name mxb && ip link set mxa up && ip link set mxb up || { fail "making a veth pair"; finish; }
mkdir -p /etc/mxgate /var/lib/prometheus/node-exporter
printf '192.0.2.0/24\n' >/etc/mxgate/ranges.txt
cat >/etc/default/mxgate <<'DEFAULTS'
MXGATE_IFACES="mxa"
MXGATE_RANGES="/etc/mxgate/ranges.txt"
MXGATE_OPTIONS="--interval 1 --use-cache-on-failure --prom-file /var/lib/prometheus/node-exporter/mxgate.prom"
DEFAULTS
systemctl start mxgate.service
journal_has "event=attached" && ok "the service attaches" || fail "no attached event"
/usr/sbin/mxgate status | grep -q "attached to mxa" && ok "mxgate status shows it attached" || fail "status: $(/usr/sbin/mxgate status 2>&1)"
journal_has "event=stats" && ok "the service logs stats lines" || fail "no stats line"
printf '192.0.2.0/24\n198.51.100.0/24\n' >/etc/mxgate/ranges.txt
/usr/sbin/mxgate refresh --ranges /etc/mxgate/ranges.txt >/dev/null && ok "refresh (as cron runs it)" || fail "refresh failed"
journal_has "event=refreshed" && ok "the service logs the refresh" || fail "no refreshed event"
i=0
while [ $i -lt 60 ] && [ ! -s /var/lib/prometheus/node-exporter/mxgate.prom ]; do
    i=$((i + 1))
    sleep 0.5
done
grep -q mxgate_syns_total /var/lib/prometheus/node-exporter/mxgate.prom && ok "the metrics file is written" || fail "no metrics file"
[ "$(systemctl is-active mxgate.service)" = active ] && ok "still running" || fail "mxgate.service is $(systemctl is-active mxgate.service)"
systemctl stop mxgate.service
/usr/sbin/mxgate status | grep -q "attached to mxa" && ok "stopping leaves the filter attached" || fail "stopping detached the filter"
/usr/sbin/mxgate detach >/dev/null
finish
