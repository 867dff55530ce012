#!/bin/sh
# The systemd unit's restrictions are enough on this kernel.
#
# 1. attach, status, refresh and detach run as root with only the unit's
#    capabilities (`setpriv --bounding-set`, as CapabilityBoundingSet= does
#    for a root service), and the kernel shows that each did its job.
# 2. The unit's ExecStart (dist/mxgate.service, with the options of
#    dist/mxgate.default) runs in the unit's sandbox as far as util-linux
#    can build one: NoNewPrivileges, the capability bounding set,
#    UMask=0077, ProtectSystem=strict (every mount read-only but /proc,
#    /dev and the unit's writable paths: /sys/fs/bpf, the StateDirectory
#    and the ReadWritePaths, the last two stand-ins of the check's own),
#    PrivateTmp and ProtectHome. `run` must attach and log it, log a
#    refresh run in the same sandbox, stop on SIGTERM with exit 0 leaving
#    the filter attached, and, started again as a restart would, take the
#    attached filter over. Not reproduced (seccomp filters, cgroups and
#    namespaces util-linux does not set up): PrivateDevices,
#    ProtectKernel*, ProtectClock, ProtectHostname, ProtectProc,
#    ProtectControlGroups, RestrictNamespaces, RestrictRealtime,
#    RestrictSUIDSGID, LockPersonality, MemoryDenyWriteExecute,
#    SystemCallArchitectures, RestrictAddressFamilies. Stricter than the
#    unit: /sys is read-only but for /sys/fs/bpf.
#
# Everything runs in a network namespace of the check's own, on veths.
# Usage: unit-caps.sh MXGATE CAPS   (CAPS as setpriv takes it: +bpf,+net_admin)
# Prints `ok: WHAT` or `FAILED: WHAT` and why for each check, then as its
# last line `unit capabilities: N passed, M failed`; exits 0 only if none
# failed.
set -u
mxgate=$1
caps=$2
case $mxgate in
/*) ;;
*) mxgate=$PWD/$mxgate ;;
esac
dist=$(dirname "$0")/../dist
tag=mxcaps$$
pin=/sys/fs/bpf/$tag
unit_pin=/sys/fs/bpf/${tag}u
# Not under /tmp: the sandbox has a /tmp of its own (PrivateTmp), and it
# reads its list from here.
dir=$(mktemp -d /run/mxcaps.XXXXXX) || exit 1
passed=0
failed=0
run_pid=
cleanup() {
    if [ -n "$run_pid" ]; then
        kill -KILL "$run_pid" 2>/dev/null
        wait "$run_pid" 2>/dev/null
    fi
    "$mxgate" --pin-dir "$pin" detach >/dev/null 2>&1
    "$mxgate" --pin-dir "$unit_pin" detach >/dev/null 2>&1
    ip netns del "$tag" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# in_netns COMMAND...: COMMAND in the check's network namespace, as root.
in_netns() {
    nsenter --net="/run/netns/$tag" "$@"
}
# capped COMMAND...: the same with only the unit's capabilities.
capped() {
    in_netns setpriv --bounding-set "-all,$caps" --inh-caps=-all -- "$@"
}
# xdp_on IF: the kernel runs mxgate's XDP program on IF.
xdp_on() {
    ip -n "$tag" link show dev "$1" | grep -Eq 'prog/xdp id [0-9]+ name mxgate '
}
# status_says PIN PATTERN: `status` with only the unit's capabilities
# prints a line matching PATTERN (grep -E).
status_says() {
    said=$(capped "$mxgate" --pin-dir "$1" status 2>&1) &&
        printf '%s\n' "$said" | grep -Eq -- "$2"
}

# check WHAT VERIFY ARGS...: `mxgate ARGS` with only the unit's
# capabilities exits 0 and then VERIFY (a command) succeeds.
check() {
    what=$1
    verify=$2
    shift 2
    if ! out=$(capped "$mxgate" --pin-dir "$pin" "$@" 2>&1); then
        why="it failed:"
    elif ! $verify; then
        why="it exited 0, but $verify does not hold. It printed:"
    else
        passed=$((passed + 1))
        echo "ok: $what"
        return
    fi
    failed=$((failed + 1))
    echo "FAILED: $what with only $caps: $why"
    printf '%s\n' "$out" | tail -n 20
}
on_mxa() {
    xdp_on mxa
}
status_shows_mxa() {
    status_says "$pin" '^attached to mxa \('
}
allows_two() {
    status_says "$pin" '^allowlist: 2 IPv4 and 0 IPv6 prefixes'
}
detached_from_mxa() {
    ! xdp_on mxa && [ ! -e "$pin" ]
}

# The unit's sandbox, built as root in a mount namespace of its own before
# it drops to the unit's capabilities. Arguments: the check's directory,
# the capabilities, then the command. Exit 125: the sandbox could not be
# built.
# shellcheck disable=SC2016 # expanded by the sandbox's shell
sandbox_setup='
dir=$1
caps=$2
shift 2
fail() {
    echo "unit sandbox: $*" >&2
    exit 125
}
# StateDirectory=mxgate (mode 0700) and ReadWritePaths=-/var/lib/prometheus/
# node-exporter: directories of the check, mounted where the unit has
# them. An overlay of this namespace only makes their mount points.
mount -t tmpfs -o mode=0700 unit-sandbox "$dir/ovl" ||
    fail "cannot mount a tmpfs on $dir/ovl"
mkdir "$dir/ovl/upper" "$dir/ovl/work" || fail "cannot write in $dir/ovl"
mount -t overlay -o "lowerdir=/var/lib,upperdir=$dir/ovl/upper,workdir=$dir/ovl/work" \
    unit-sandbox /var/lib ||
    fail "cannot put an overlay on /var/lib (for the mount point of the state directory)"
umount "$dir/ovl" || fail "cannot unmount $dir/ovl"
mkdir -p /var/lib/mxgate /var/lib/prometheus/node-exporter ||
    fail "cannot make mount points in /var/lib"
mount --bind "$dir/state" /var/lib/mxgate || fail "cannot mount /var/lib/mxgate"
mount --bind "$dir/prom" /var/lib/prometheus/node-exporter ||
    fail "cannot mount /var/lib/prometheus/node-exporter"
# PrivateTmp=yes
for d in /tmp /var/tmp; do
    mount -t tmpfs -o mode=1777,nosuid,nodev unit-sandbox "$d" ||
        fail "cannot mount a tmpfs on $d"
done
# ProtectHome=yes
for d in /home /root /run/user; do
    if [ -d "$d" ]; then
        mount -t tmpfs -o mode=0000 unit-sandbox "$d" ||
            fail "cannot mount a tmpfs on $d"
    fi
done
# ProtectSystem=strict: every other mount read-only, with its other flags
# kept. A mount hidden under another one (its path now shows another file
# system) has no path left to remount, and nothing can reach it.
mounts=$(cat /proc/self/mountinfo) || fail "cannot read /proc/self/mountinfo"
while read -r _ _ dev _ mp opts _; do
    mp=$(printf "%b" "$mp")
    case $mp in
    /proc | /proc/* | /dev | /dev/*) continue ;;
    /sys/fs/bpf | /var/lib/mxgate | /var/lib/prometheus/node-exporter) continue ;;
    /tmp | /var/tmp) continue ;;
    esac
    if ! err=$(mount -o "remount,bind,ro${opts#r[ow]}" "$mp" 2>&1) &&
        [ "$(stat -c %Hd:%Ld "$mp" 2>/dev/null)" = "$dev" ]; then
        fail "cannot make $mp read-only: $err"
    fi
done <<EOF
$mounts
EOF
for p in / /etc /usr /var /var/lib /run /sys "$dir" "$(dirname "$1")"; do
    [ ! -w "$p" ] || fail "$p is still writable"
done
for p in /sys/fs/bpf /var/lib/mxgate /var/lib/prometheus/node-exporter /tmp /var/tmp; do
    [ -w "$p" ] || fail "$p is not writable"
done
[ "$(stat -c %a /var/lib/mxgate)" = 700 ] || fail "/var/lib/mxgate is not mode 0700"
for d in /tmp /var/tmp /home; do
    [ -z "$(ls -A "$d")" ] || fail "$d is not empty"
done
umask 0077
exec setpriv --no-new-privs --bounding-set "-all,$caps" --inh-caps=-all -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
'
# sandboxed COMMAND...: COMMAND in the unit's sandbox, in the check's
# network namespace, standard input from /dev/null as under systemd. It
# replaces the shell that calls it (call it in $(...) or with &), so that
# in the end COMMAND has the shell's process id, for signals and wait.
sandboxed() {
    exec nsenter --net="/run/netns/$tag" unshare --mount --propagation private \
        sh -c "$sandbox_setup" unit-sandbox "$dir" "$caps" "$@" </dev/null
}
# start_run LOG: starts the unit's ExecStart in the sandbox, its output
# to LOG; sets run_pid and run_log.
start_run() {
    run_log=$1
    shift
    : >"$run_log"
    sandboxed "$mxgate" --pin-dir "$unit_pin" "$@" >"$run_log" 2>&1 &
    run_pid=$!
}
# running: run has not exited.
running() {
    case $(ps -o stat= -p "$run_pid" 2>/dev/null) in
    '' | Z*) return 1 ;;
    esac
}
# within SECS WHAT COMMAND...: COMMAND succeeds within SECS seconds, and
# before run exits.
within() {
    secs=$1
    what=$2
    shift 2
    limit=$(($(date +%s) + secs))
    until "$@"; do
        if ! running && ! "$@"; then
            why="run exited before $what"
            return 1
        fi
        if [ "$(date +%s)" -ge "$limit" ]; then
            why="run took more than $secs s for $what"
            return 1
        fi
        sleep 0.1
    done
}
# logged PATTERN SECS: run logs a line matching PATTERN (grep -E) within
# SECS seconds.
logged() {
    within "$2" "logging a line matching '$1'" grep -Eq -- "$1" "$run_log"
}
# stop_run: SIGTERM stops run within a minute, with exit 0 and a last
# line that says so.
stop_run() {
    kill -TERM "$run_pid"
    limit=$(($(date +%s) + 60))
    while running; do
        if [ "$(date +%s)" -ge "$limit" ]; then
            why="run did not exit within 60 s of SIGTERM"
            return 1
        fi
        sleep 0.1
    done
    wait "$run_pid"
    rc=$?
    run_pid=
    if [ "$rc" -ne 0 ]; then
        why="run exited $rc on SIGTERM"
        return 1
    fi
    if ! tail -n 1 "$run_log" | grep -Eq '^ts=[^ ]+ level=info event=stopped signal=SIGTERM '; then
        why="run's last line is not its stop on SIGTERM"
        return 1
    fi
}
# only_info: every line run logged is an info line (no warning, no error,
# nothing of another form).
only_info() {
    if grep -Ev '^ts=[^ ]+ level=info event=[a-z_]+( |$)' "$run_log" | grep -q .; then
        why="run logged a warning, an error or a line of another form"
        return 1
    fi
}
# sandboxed_run: the running mxgate is the one in the sandbox, with its
# restrictions.
sandboxed_run() {
    bounding=$(setpriv --bounding-set "-all,$caps" -- \
        sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
    status=$(grep -E '^(Name|NoNewPrivs|CapBnd|Umask):' "/proc/$run_pid/status" 2>/dev/null)
    if ! running || [ -z "$status" ]; then
        why="run exited right after its attach"
        return 1
    fi
    if [ "$status" != "$(printf 'Name:\tmxgate\nUmask:\t0077\nCapBnd:\t%s\nNoNewPrivs:\t1' "$bounding")" ] ||
        [ "$(readlink "/proc/$run_pid/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ] ||
        [ -w "/proc/$run_pid/root/etc" ] || [ ! -w "/proc/$run_pid/root/sys/fs/bpf" ]; then
        why="the process that logged is not mxgate in the sandbox (no_new_privs, bounding set $bounding, umask 0077, its own mounts, read-only /etc, writable /sys/fs/bpf): $(printf '%s' "$status" | tr '\n\t' '  ')"
        return 1
    fi
}
# unit_attached: mxc runs the filter, and status says so.
unit_attached() {
    if ! xdp_on mxc; then
        why="the kernel shows no mxgate XDP program on mxc"
        return 1
    fi
    if ! status_says "$unit_pin" '^attached to mxc \('; then
        why="status with only $caps does not show the filter attached to mxc. It printed: $said"
        return 1
    fi
}

# The unit's ExecStart in its sandbox, on interface mxc.
unit_sandbox_check() {
    service=$dist/mxgate.service
    for setting in NoNewPrivileges=yes ProtectSystem=strict StateDirectory=mxgate \
        StateDirectoryMode=0700 \
        'ReadWritePaths=/sys/fs/bpf -/var/lib/prometheus/node-exporter' \
        ProtectHome=yes PrivateTmp=yes UMask=0077; do
        if ! grep -qx -- "$setting" "$service"; then
            why="$service no longer says $setting: make this sandbox match the unit"
            return 1
        fi
    done
    exec_start=$(sed -n 's/^ExecStart=//p' "$service")
    options=$(sed -n 's/^MXGATE_OPTIONS="\(.*\)"$/\1/p' "$dist/mxgate.default")
    if [ -z "$exec_start" ] || [ -z "$options" ]; then
        why="no ExecStart= in $service or no MXGATE_OPTIONS= in $dist/mxgate.default"
        return 1
    fi
    case $mxgate in
    /tmp/* | /var/tmp/* | /home/* | /root/* | /run/user/*)
        why="$mxgate is in a directory the sandbox hides (PrivateTmp, ProtectHome): build it elsewhere"
        return 1
        ;;
    esac
    if ! mkdir -m 0700 "$dir/state" || ! mkdir -m 0755 "$dir/prom" "$dir/ovl" ||
        ! printf '192.0.2.0/24\n' >"$dir/unit-ranges"; then
        why="cannot write in $dir"
        return 1
    fi
    # ExecStart's words, its variables split on blanks as systemd splits
    # an unbraced $VAR, with this check's interface, list and pin directory.
    set -f
    set --
    binary=
    for word in $exec_start; do
        # shellcheck disable=SC2016 # the words as ExecStart= spells them
        case "$binary $word" in
        ' '*/mxgate) binary=$word ;;
        ' '*)
            set +f
            why="ExecStart= starts with $word, not mxgate"
            return 1
            ;;
        *' $MXGATE_IFACES') set -- "$@" mxc ;;
        *' $MXGATE_RANGES') set -- "$@" "$dir/unit-ranges" ;;
        *' $MXGATE_OPTIONS')
            # shellcheck disable=SC2086 # split on blanks, as systemd does
            set -- "$@" $options
            ;;
        *' $'*)
            set +f
            why="ExecStart= uses $word, which this check does not set"
            return 1
            ;;
        *) set -- "$@" "$word" ;;
        esac
    done
    set +f
    shape="mxgate $*"

    start_run "$dir/run.log" "$@"
    # Attaching under emulation (the kernel matrix's VMs) takes a while.
    logged '^ts=[^ ]+ level=info event=attached iface=mxc .* already=false' 300 || return 1
    sandboxed_run || return 1
    logged '^ts=[^ ]+ level=info event=refreshed added=1 removed=0 unchanged=0 v4_prefixes=1 ' 1 ||
        return 1
    unit_attached || return 1
    printf '192.0.2.0/24\n198.51.100.0/24\n' >"$dir/unit-ranges"
    if ! out=$(sandboxed "$mxgate" --pin-dir "$unit_pin" refresh --ranges "$dir/unit-ranges" 2>&1); then
        why="refresh in the sandbox failed: $out"
        return 1
    fi
    if ! status_says "$unit_pin" '^allowlist: 2 IPv4 and 0 IPv6 prefixes'; then
        why="refresh in the sandbox exited 0, but status shows no allowlist of 2 prefixes: $out"
        return 1
    fi
    # Logged from run's event loop, which watches the pinned filter.
    logged '^ts=[^ ]+ level=info event=refreshed v4_prefixes=2 v6_prefixes=0' 60 || return 1
    if ! grep -q '^mxgate_' "$dir/prom/mxgate.prom" 2>/dev/null; then
        why="run wrote no metrics to its --prom-file in /var/lib/prometheus/node-exporter"
        return 1
    fi
    # node-exporter reads it as another user, whatever the unit's UMask.
    if [ "$(stat -c %a "$dir/prom/mxgate.prom")" != 644 ]; then
        why="run's --prom-file is mode $(stat -c %a "$dir/prom/mxgate.prom"), not 0644"
        return 1
    fi
    only_info || return 1
    stop_run || return 1
    if ! unit_attached; then
        why="once run stopped: $why"
        return 1
    fi

    # A restart (Restart=on-failure, systemctl restart) runs ExecStart
    # again: it takes over the attached filter and its list.
    rm -f "$dir/prom/mxgate.prom"
    start_run "$dir/restart.log" "$@"
    logged '^ts=[^ ]+ level=info event=attached iface=mxc .* already=true' 300 || return 1
    # Its event loop, and with it its SIGTERM handler, runs once it has
    # written the metrics file again.
    within 60 "writing its --prom-file again" test -s "$dir/prom/mxgate.prom" || return 1
    only_info || return 1
    if ! status_says "$unit_pin" '^allowlist: 2 IPv4 and 0 IPv6 prefixes'; then
        why="after the restart, status shows no allowlist of 2 prefixes"
        return 1
    fi
    stop_run || return 1

    # The administrator removes it (as root, outside the unit).
    if ! out=$(in_netns "$mxgate" --pin-dir "$unit_pin" detach 2>&1) || xdp_on mxc ||
        [ -e "$unit_pin" ]; then
        run_log=/dev/null
        why="detach after run failed or left the filter: $out"
        return 1
    fi
}

ip netns add "$tag" &&
    ip -n "$tag" link add name mxa type veth peer name mxb &&
    ip -n "$tag" link add name mxc type veth peer name mxd &&
    for i in mxa mxb mxc mxd; do ip -n "$tag" link set "$i" up || exit 1; done || exit 1
printf '192.0.2.0/24\n' >"$dir/ranges"
# A cache directory of the check's own: the host's /var/lib/mxgate is not
# the test's to write.
mkdir -m 0700 "$dir/cache" || exit 1
check attach on_mxa attach --iface mxa --ranges "$dir/ranges" --cache-dir "$dir/cache"
check status status_shows_mxa status
printf '192.0.2.0/24\n198.51.100.0/24\n' >"$dir/ranges"
check refresh allows_two refresh --ranges "$dir/ranges" --cache-dir "$dir/cache"
check detach detached_from_mxa detach

why=
shape='mxgate run'
run_log=/dev/null
if unit_sandbox_check; then
    passed=$((passed + 1))
    echo "ok: the unit's ExecStart in its sandbox ($shape): attached, logged, took a refresh, stopped on SIGTERM, restarted"
else
    failed=$((failed + 1))
    echo "FAILED: the unit's ExecStart in its sandbox ($shape) with only $caps: $why"
    if [ -s "$run_log" ]; then
        echo "run's output:"
        tail -n 20 "$run_log"
    fi
fi
echo "unit capabilities: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
