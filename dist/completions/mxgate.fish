# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mxgate_global_optspecs
    string join \n pin-dir= lock-timeout= h/help V/version
end

function __fish_mxgate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mxgate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mxgate_using_subcommand
    set -l cmd (__fish_mxgate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mxgate -n "__fish_mxgate_needs_command" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_needs_command" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_needs_command" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_needs_command" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "attach" -d 'Attach the filter to interfaces with an allowlist; it stays after exit'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "refresh" -d 'Replace the live allowlist with a new list (safe to run from cron)'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "run" -d 'Attach (or adopt the attached filter) and log stats until stopped'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "stats" -d 'Print the counters and the top denied sources'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "status" -d 'Print what is attached where, the mode and the allowlist size'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "check" -d 'Validate and summarise a list without touching the kernel'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "lookup" -d 'Say whether the live allowlist allows an address, and by which prefix'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "open" -d 'Emergency switch: let every SYN through (still counted)'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "enforce" -d 'Switch back from open: drop SYNs from outside the allowlist again'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "detach" -d 'Detach the filter and remove its pins'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "audit" -d 'Before you enforce: which senders in the mail server\'s logs the list would refuse (exit 3 if one delivered accepted mail)'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "doctor" -d 'Before you enforce: which service a domain\'s MX records point at, the range sources to use for it, and what would refuse real mail'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "top" -d 'Show the filter live: SYNs per second per interface and family, the busiest denied blocks, the list\'s age and sources (q quits)'
complete -c mxgate -n "__fish_mxgate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l iface -d 'Interfaces to attach to' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l ranges -d 'Range sources, all merged: file paths, `-` (standard input), `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l allow -d 'Extra allowed entries (CIDR, address or range), merged with the lists' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l port -d 'Protected TCP destination ports' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l protect-dst -d 'Filter only SYNs to these local addresses (partial domains)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l mode -d 'XDP attach mode' -r -f -a "auto\t'Native (driver) mode if the driver supports it, generic otherwise'
native\t'Native (driver) mode only'
skb\t'Generic (skb) mode'"
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l max-shrink -d 'Refuse a list that takes access from more than this percent of the live addresses of a family' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l max-grow -d 'Refuse a list that allows more than this many times the live addresses of a family' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l max-allow-v4 -d 'Refuse a list that allows more IPv4 addresses than a prefix of this length holds (`8` or `/8`: 16,777,216), whatever is live; --force does not lift it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l max-allow-v6 -d 'Refuse a list that allows more IPv6 addresses than a prefix of this length holds (`28` or `/28`: 2^100), whatever is live; --force does not lift it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l dns-server -d 'DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those of /etc/resolv.conf]' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l dns-timeout -d 'Seconds each DNS query may take' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l fetch-timeout -d 'Seconds reading one source may take, from first query to last byte (standard input and FIFOs included)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l spf-lookup-limit -d 'Most DNS-querying terms an SPF chain may use (RFC 7208: 10)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l https-ca -d 'Trust the CA certificates in this PEM file instead of the built-in roots, for `https://` and `m365:` sources' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l max-download -d 'Largest source accepted, in bytes (downloads, files and standard input)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l cache-dir -d 'Where the last good copy of each remote source is kept' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l dry-run -d 'Count denied SYNs as "would drop" and let them through'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l log-denials -d 'Log one kernel line per denied SYN (read by `mxgate run`); takes effect when the program is first loaded. Floods the log under attack'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l force -d 'Apply the list even when --max-shrink or --max-grow refuses it, and read the maps back to repair any drift from it'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l spf-allow-unenumerable -d 'Flatten an `spf:` source even when a term that names no addresses (`exists`, `ptr`, sender macros) could fail senders that a later term passes; those senders are then allowlisted. Without it such a source is refused'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l use-cache-on-failure -d 'When a remote source fails, use its last good copy instead of failing (a warning says so)'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -l verbose -d 'Say on standard error what each remote source delivered and from where: the address a download ended at after redirects, its size, the SPF records evaluated; and, for `refresh`, how the tries were written (batched or one call per prefix) and whether it stopped at the sources\' unchanged bytes'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mxgate -n "__fish_mxgate_using_subcommand attach" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l ranges -d 'Range sources, all merged: file paths, `-` (standard input), `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l allow -d 'Extra allowed entries (CIDR, address or range), merged with the lists' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l dns-server -d 'DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those of /etc/resolv.conf]' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l dns-timeout -d 'Seconds each DNS query may take' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l fetch-timeout -d 'Seconds reading one source may take, from first query to last byte (standard input and FIFOs included)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l spf-lookup-limit -d 'Most DNS-querying terms an SPF chain may use (RFC 7208: 10)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l https-ca -d 'Trust the CA certificates in this PEM file instead of the built-in roots, for `https://` and `m365:` sources' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l max-download -d 'Largest source accepted, in bytes (downloads, files and standard input)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l cache-dir -d 'Where the last good copy of each remote source is kept' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l max-shrink -d 'Refuse a list that takes access from more than this percent of the live addresses of a family' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l max-grow -d 'Refuse a list that allows more than this many times the live addresses of a family' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l max-allow-v4 -d 'Refuse a list that allows more IPv4 addresses than a prefix of this length holds (`8` or `/8`: 16,777,216), whatever is live; --force does not lift it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l max-allow-v6 -d 'Refuse a list that allows more IPv6 addresses than a prefix of this length holds (`28` or `/28`: 2^100), whatever is live; --force does not lift it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l spf-allow-unenumerable -d 'Flatten an `spf:` source even when a term that names no addresses (`exists`, `ptr`, sender macros) could fail senders that a later term passes; those senders are then allowlisted. Without it such a source is refused'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l use-cache-on-failure -d 'When a remote source fails, use its last good copy instead of failing (a warning says so)'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l verbose -d 'Say on standard error what each remote source delivered and from where: the address a download ended at after redirects, its size, the SPF records evaluated; and, for `refresh`, how the tries were written (batched or one call per prefix) and whether it stopped at the sources\' unchanged bytes'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l force -d 'Apply the list even when --max-shrink or --max-grow refuses it, and read the maps back to repair any drift from it'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l diff -d 'Print the change and apply nothing (exit 3 when a guard would refuse it)'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -l json -d 'Print the result as JSON'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand refresh" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l iface -d 'Interfaces to attach to; without it, run adopts the attached filter' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l ranges -d 'Range sources for the attach (see attach)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l allow -d 'Extra allowed entries (CIDR, address or range), merged with the lists' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l port -d 'Protected TCP destination ports' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l protect-dst -d 'Filter only SYNs to these local addresses (partial domains)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l mode -d 'XDP attach mode' -r -f -a "auto\t'Native (driver) mode if the driver supports it, generic otherwise'
native\t'Native (driver) mode only'
skb\t'Generic (skb) mode'"
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l max-shrink -d 'Refuse a list that takes access from more than this percent of the live addresses of a family' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l max-grow -d 'Refuse a list that allows more than this many times the live addresses of a family' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l max-allow-v4 -d 'Refuse a list that allows more IPv4 addresses than a prefix of this length holds (`8` or `/8`: 16,777,216), whatever is live; --force does not lift it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l max-allow-v6 -d 'Refuse a list that allows more IPv6 addresses than a prefix of this length holds (`28` or `/28`: 2^100), whatever is live; --force does not lift it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l dns-server -d 'DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those of /etc/resolv.conf]' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l dns-timeout -d 'Seconds each DNS query may take' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l fetch-timeout -d 'Seconds reading one source may take, from first query to last byte (standard input and FIFOs included)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l spf-lookup-limit -d 'Most DNS-querying terms an SPF chain may use (RFC 7208: 10)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l https-ca -d 'Trust the CA certificates in this PEM file instead of the built-in roots, for `https://` and `m365:` sources' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l max-download -d 'Largest source accepted, in bytes (downloads, files and standard input)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l cache-dir -d 'Where the last good copy of each remote source is kept' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l interval -d 'Seconds between stats lines' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l log-format -d 'Log line format' -r -f -a "text\t'logfmt: `key=value` pairs'
json\t'One JSON object per line'"
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l top -d 'How many denied sources a stats line names' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l log-level -d 'Kernel log lines (aya-log) at this level or above are forwarded. Per-denial lines are debug, and exist only with attach --log-denials' -r -f -a "error\t'Errors only'
warn\t'Warnings and errors'
info\t'Informational messages and above'
debug\t'Everything, one line per denied SYN included (rate-limited)'"
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l prom-file -d 'Also write the metrics each interval to this file, in node_exporter\'s textfile format (written whole, then renamed). If its directory does not exist when run starts (no node exporter), run says so once (`metrics_unavailable`) and writes none' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l metrics-listen -d 'Serve the same metrics at `GET /metrics` (Prometheus text format) on this address and port, e.g. 127.0.0.1:9325. Off by default; a non-loopback address shows the counters, the list\'s size and age and the busiest denied sources to whoever can reach it' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l dry-run -d 'Count denied SYNs as "would drop" and let them through'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l log-denials -d 'Log one kernel line per denied SYN (read by `mxgate run`); takes effect when the program is first loaded. Floods the log under attack'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l force -d 'Apply the list even when --max-shrink or --max-grow refuses it, and read the maps back to repair any drift from it'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l spf-allow-unenumerable -d 'Flatten an `spf:` source even when a term that names no addresses (`exists`, `ptr`, sender macros) could fail senders that a later term passes; those senders are then allowlisted. Without it such a source is refused'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l use-cache-on-failure -d 'When a remote source fails, use its last good copy instead of failing (a warning says so)'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -l verbose -d 'Say on standard error what each remote source delivered and from where: the address a download ended at after redirects, its size, the SPF records evaluated; and, for `refresh`, how the tries were written (batched or one call per prefix) and whether it stopped at the sources\' unchanged bytes'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mxgate -n "__fish_mxgate_using_subcommand run" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -l format -d 'Output format' -r -f -a "text\t'A table for people'
json\t'JSON'
prometheus\t'Prometheus text exposition'"
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -l top -d 'How many denied sources to list' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -l json -d 'Print JSON (same as --format json)'
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mxgate -n "__fish_mxgate_using_subcommand stats" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand status" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand status" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand status" -l json -d 'Print JSON'
complete -c mxgate -n "__fish_mxgate_using_subcommand status" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand status" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l ranges -d 'Range sources, all merged: file paths, `-` (standard input), `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l allow -d 'Extra allowed entries (CIDR, address or range), merged with the lists' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l dns-server -d 'DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those of /etc/resolv.conf]' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l dns-timeout -d 'Seconds each DNS query may take' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l fetch-timeout -d 'Seconds reading one source may take, from first query to last byte (standard input and FIFOs included)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l spf-lookup-limit -d 'Most DNS-querying terms an SPF chain may use (RFC 7208: 10)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l https-ca -d 'Trust the CA certificates in this PEM file instead of the built-in roots, for `https://` and `m365:` sources' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l max-download -d 'Largest source accepted, in bytes (downloads, files and standard input)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l cache-dir -d 'Where the last good copy of each remote source is kept' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l spf-allow-unenumerable -d 'Flatten an `spf:` source even when a term that names no addresses (`exists`, `ptr`, sender macros) could fail senders that a later term passes; those senders are then allowlisted. Without it such a source is refused'
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l use-cache-on-failure -d 'When a remote source fails, use its last good copy instead of failing (a warning says so)'
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l verbose -d 'Say on standard error what each remote source delivered and from where: the address a download ended at after redirects, its size, the SPF records evaluated; and, for `refresh`, how the tries were written (batched or one call per prefix) and whether it stopped at the sources\' unchanged bytes'
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -l json -d 'Print JSON'
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand check" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand lookup" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand lookup" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand lookup" -l json -d 'Print JSON'
complete -c mxgate -n "__fish_mxgate_using_subcommand lookup" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand lookup" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand open" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand open" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand open" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand open" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand enforce" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand enforce" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand enforce" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand enforce" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand detach" -l iface -d 'Detach from these interfaces only; the filter stays installed' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand detach" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand detach" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand detach" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand detach" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l mta-log -d 'The MTA\'s logs (Postfix or Exim), read in order: files, rotated `.gz` files, or `-` for standard input (`journalctl -u postfix -o short-iso | mxgate audit --mta-log - …`)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l ranges -d 'Range sources, all merged: file paths, `-` (standard input), `spf:DOMAIN`, `https://URL`, `m365:INSTANCE`' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l allow -d 'Extra allowed entries (CIDR, address or range), merged with the lists' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l dns-server -d 'DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those of /etc/resolv.conf]' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l dns-timeout -d 'Seconds each DNS query may take' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l fetch-timeout -d 'Seconds reading one source may take, from first query to last byte (standard input and FIFOs included)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l spf-lookup-limit -d 'Most DNS-querying terms an SPF chain may use (RFC 7208: 10)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l https-ca -d 'Trust the CA certificates in this PEM file instead of the built-in roots, for `https://` and `m365:` sources' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l max-download -d 'Largest source accepted, in bytes (downloads, files and standard input)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l cache-dir -d 'Where the last good copy of each remote source is kept' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l since -d 'Leave out what the logs say before this time (2026-11-01, "2026-11-01 08:00", 2026-11-01T08:00:00Z; local time unless an offset is given) or age (7d, 12h)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l top -d 'How many refused /24 and /48 blocks that delivered no accepted mail the report lists (those that did are always listed; --json lists all)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l spf-allow-unenumerable -d 'Flatten an `spf:` source even when a term that names no addresses (`exists`, `ptr`, sender macros) could fail senders that a later term passes; those senders are then allowlisted. Without it such a source is refused'
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l use-cache-on-failure -d 'When a remote source fails, use its last good copy instead of failing (a warning says so)'
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l verbose -d 'Say on standard error what each remote source delivered and from where: the address a download ended at after redirects, its size, the SPF records evaluated; and, for `refresh`, how the tries were written (batched or one call per prefix) and whether it stopped at the sources\' unchanged bytes'
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -l json -d 'Print JSON'
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand audit" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l domain -d 'The domains this server receives mail for' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l mta-log -d 'Also audit the MTA\'s logs against the proposed sources, as `mxgate audit` does (files, rotated `.gz` files, or `-`)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l since -d 'For the audit: leave out what the logs say before this time or age' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l allow -d 'Extra allowed entries (CIDR, address or range) merged with the proposed sources for --check and --mta-log (a backup MX)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l dns-server -d 'DNS servers for `spf:` sources, ADDR or ADDR:PORT [default: those of /etc/resolv.conf]' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l dns-timeout -d 'Seconds each DNS query may take' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l fetch-timeout -d 'Seconds reading one source may take, from first query to last byte (standard input and FIFOs included)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l spf-lookup-limit -d 'Most DNS-querying terms an SPF chain may use (RFC 7208: 10)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l https-ca -d 'Trust the CA certificates in this PEM file instead of the built-in roots, for `https://` and `m365:` sources' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l max-download -d 'Largest source accepted, in bytes (downloads, files and standard input)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l cache-dir -d 'Where the last good copy of each remote source is kept' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l check -d 'Also fetch and check the proposed sources, as `mxgate check` does'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l json -d 'Print JSON'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l spf-allow-unenumerable -d 'Flatten an `spf:` source even when a term that names no addresses (`exists`, `ptr`, sender macros) could fail senders that a later term passes; those senders are then allowlisted. Without it such a source is refused'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l use-cache-on-failure -d 'When a remote source fails, use its last good copy instead of failing (a warning says so)'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -l verbose -d 'Say on standard error what each remote source delivered and from where: the address a download ended at after redirects, its size, the SPF records evaluated; and, for `refresh`, how the tries were written (batched or one call per prefix) and whether it stopped at the sources\' unchanged bytes'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -l interval -d 'Seconds between two screens' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -l top -d 'How many denied blocks (/24, /48) to show' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -l cache-dir -d 'Where refresh keeps its record of the sources\' last results' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -l pin-dir -d 'Where the filter\'s program, maps and links are pinned (on bpffs)' -r -F
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -l lock-timeout -d 'Seconds to wait for another mxgate command working on the same filter before giving up (exit 1, nothing changed)' -r
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -l once -d 'Print one plain-text snapshot after one interval, then exit'
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -s h -l help -d 'Print help'
complete -c mxgate -n "__fish_mxgate_using_subcommand top" -s V -l version -d 'Print version'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "attach" -d 'Attach the filter to interfaces with an allowlist; it stays after exit'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "refresh" -d 'Replace the live allowlist with a new list (safe to run from cron)'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "run" -d 'Attach (or adopt the attached filter) and log stats until stopped'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "stats" -d 'Print the counters and the top denied sources'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "status" -d 'Print what is attached where, the mode and the allowlist size'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "check" -d 'Validate and summarise a list without touching the kernel'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "lookup" -d 'Say whether the live allowlist allows an address, and by which prefix'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "open" -d 'Emergency switch: let every SYN through (still counted)'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "enforce" -d 'Switch back from open: drop SYNs from outside the allowlist again'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "detach" -d 'Detach the filter and remove its pins'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "audit" -d 'Before you enforce: which senders in the mail server\'s logs the list would refuse (exit 3 if one delivered accepted mail)'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "doctor" -d 'Before you enforce: which service a domain\'s MX records point at, the range sources to use for it, and what would refuse real mail'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "top" -d 'Show the filter live: SYNs per second per interface and family, the busiest denied blocks, the list\'s age and sources (q quits)'
complete -c mxgate -n "__fish_mxgate_using_subcommand help; and not __fish_seen_subcommand_from attach refresh run stats status check lookup open enforce detach audit doctor top help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
