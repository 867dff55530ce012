#!/bin/sh
# The unit's capability bounding set is enough on this kernel: attach,
# status, refresh and detach run as root with only those capabilities
# (`setpriv --bounding-set`, as CapabilityBoundingSet= does for a root
# service), in a network namespace of the check's own.
# Usage: unit-caps.sh MXGATE CAPS   (CAPS as setpriv takes it: +bpf,+net_admin)
set -u
mxgate=$1
caps=$2
tag=mxcaps$$
dir=$(mktemp -d)
passed=0
failed=0
cleanup() {
    "$mxgate" --pin-dir "/sys/fs/bpf/$tag" detach >/dev/null 2>&1
    ip netns del "$tag" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
check() {
    what=$1
    shift
    if out=$(nsenter --net="/run/netns/$tag" setpriv --bounding-set "-all,$caps" \
        --inh-caps=-all -- "$mxgate" --pin-dir "/sys/fs/bpf/$tag" "$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok: $what"
    else
        failed=$((failed + 1))
        echo "FAILED: $what with only $caps:"
        printf '%s\n' "$out" | tail -n 20
    fi
}
ip netns add "$tag" &&
    ip -n "$tag" link add name mxa type veth peer name mxb &&
    ip -n "$tag" link set mxa up &&
    ip -n "$tag" link set mxb up || exit 1
printf '192.0.2.0/24\n' >"$dir/ranges"
check attach attach --iface mxa --ranges "$dir/ranges"
check status status
printf '192.0.2.0/24\n198.51.100.0/24\n' >"$dir/ranges"
check refresh refresh --ranges "$dir/ranges"
check detach detach
echo "unit capabilities: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
