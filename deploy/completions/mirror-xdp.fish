# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mirror_xdp_global_optspecs
    string join \n bpffs= state-dir= h/help V/version
end

function __fish_mirror_xdp_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mirror_xdp_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mirror_xdp_using_subcommand
    set -l cmd (__fish_mirror_xdp_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -s V -l version -d 'Print version'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "attach" -d 'Load the enforcer with a policy, attach it to interfaces and pin it: protection stays in force after this command returns. With an enforcer attached already, add the interfaces to it (same generation, same maps; the policy must be the one in force): the interfaces attached before never stop enforcing'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "audit" -d 'Run a corpus of evasive frames (VLAN/QinQ tags, IPv4 options, tiny and overlapping fragments, IPv6 extension chains, bogus TCP offsets, NULL/FIN/Xmas scans, zero and broadcast addresses, IPv4-mapped IPv6 sources, tunnels) through the attached program with BPF test runs, and report every frame whose verdict differs from the live policy\'s intent; warn about NIC offloads that hide headers from XDP. Exit 0: no findings; 1: findings (or nothing attached, or an interface that is not attached)'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "check" -d 'Validate a policy file (syntax, addresses, sets, set files, rule conflicts) and check that it would not drop the current SSH session or this host\'s established inbound connections'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "detach" -d 'Detach the enforcer; without --iface from every interface (and remove its pins)'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "diff" -d 'Show what `reload` would change: ports opened and closed, sources added and removed per rule, settings and limits. Exit 0: no change; 1: changes; 2: an invalid policy, a policy a reload would refuse, or nothing attached'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "explain" -d 'Say what the attached enforcer would do with a new connection from SRC to PORT/PROTO (or to an IP protocol: icmp, vrrp, 47), and what decided it: the policy rule or set entry (file and line), a live entry and its origin, a ban and its expiry, a limit and its bucket, or a setting. Reads the live state; sends nothing'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "import" -d 'Print a policy equivalent to an iptables rule set (`iptables-save` and `ip6tables-save` output, with `ipset save` output for the sets it names) or ufw\'s (/etc/ufw/user.rules and user6.rules, one after the other, or `ufw show added`) or nftables\' (`nft list ruleset` output). Every rule the policy cannot express is reported on stderr as FILE:LINE: message; exit 0: all translated, 1: some rules not translated, 2: unreadable input'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "port" -d 'Live port rules: open ports (to everyone or to some sources) or close them again, at once, without re-attaching'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "protocol" -d 'Live protocol rules: let an IP protocol other than TCP, UDP and ICMP in (VRRP from a keepalived peer, GRE from a tunnel end), to everyone or to some sources, or close it again, at once, without re-attaching'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "reload" -d 'Re-read the policy and apply it atomically (no packet meets half a policy). An invalid policy changes nothing and says where the problem is'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "run" -d 'Attach (or adopt the enforcer attached already, without a gap) and stay in the foreground: reload on policy file changes and SIGHUP, serve Prometheus metrics, log sampled drops. SIGTERM stops the daemon, not the protection'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "source" -d 'Live source entries: deny or trust sources at once, without re-attaching'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "status" -d 'Show the interfaces, attach modes, egress hooks, program id, policy path and generation, the eBPF object of the build whose programs are in force, and the kernel memory its maps hold'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "stats" -d 'Show packet and byte counters per verdict reason and per rule port'
complete -c mirror-xdp -n "__fish_mirror_xdp_needs_command" -f -a "trace" -d 'Print a line for each packet the attached enforcer judges that matches (time, interface, verdict, reason, step of the verdict order, source, destination), from the kernel, until Ctrl-C or --count lines. At most --rate lines a second per CPU; the matching packets over it are counted and reported at the end. Costs nothing while no trace runs'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l iface -d 'Interface to protect (repeat for several)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l policy -d 'The policy file (TOML)' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l xdp-mode -d 'XDP attach mode: `auto` tries native and falls back to skb' -r -f -a "auto\t''
native\t''
skb\t''"
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l egress-hook -d 'Egress program hook: `auto` tries TCX (Linux 6.6+) and falls back to a tc clsact filter; `attach` says which each interface got, and why' -r -f -a "auto\t'TCX if the kernel accepts it, else a tc clsact filter'
tcx\t'A TCX link (Linux 6.6+)'
tc\t'A tc clsact egress filter (any supported kernel)'"
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l limiter-entries -d 'Sources the per-source limits track at once (an LRU table; each entry costs about 100 bytes)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -l force -d 'Attach even if the policy would drop the current SSH session or established inbound connections (they are printed as warnings)'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand attach" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand audit" -l iface -d 'Only this interface (default: every attached interface)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand audit" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand audit" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand audit" -l json -d 'Machine-readable output'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand audit" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand check" -l policy -d 'The policy file (TOML)' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand check" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand check" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand check" -l force -d 'Report a lock-out as warnings and exit 0'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand check" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand detach" -l iface -d 'Only this interface' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand detach" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand detach" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand detach" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand diff" -l policy -d 'The policy file to compare (default: the file of the policy in force)' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand diff" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand diff" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand diff" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand explain" -l dst -d 'The destination (default: the first address of the source\'s family on the attached interfaces); matters where rules have `to`' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand explain" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand explain" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand explain" -l json -d 'Machine-readable output'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand explain" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand import" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand import" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand import" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and not __fish_seen_subcommand_from allow remove list" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and not __fish_seen_subcommand_from allow remove list" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and not __fish_seen_subcommand_from allow remove list" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and not __fish_seen_subcommand_from allow remove list" -f -a "allow" -d 'Open a port or range, to any source or only to the `--from` sources, on every address of the host or only on the `--to` ones'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and not __fish_seen_subcommand_from allow remove list" -f -a "remove" -d 'Remove a live rule (exactly as it was allowed); policy ports change in the policy file'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and not __fish_seen_subcommand_from allow remove list" -f -a "list" -d 'Show the port rules: the policy\'s and the live ones'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from allow" -l from -d 'Only these sources: CIDRs, addresses or set names of the policy (repeatable)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from allow" -l to -d 'Only to these destinations (the host\'s addresses): CIDRs, addresses or set names of the policy (repeatable)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from allow" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from allow" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from allow" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from remove" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from remove" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from list" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from list" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable output'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand port; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and not __fish_seen_subcommand_from allow remove list" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and not __fish_seen_subcommand_from allow remove list" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and not __fish_seen_subcommand_from allow remove list" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and not __fish_seen_subcommand_from allow remove list" -f -a "allow" -d 'Let a protocol in, from any source or only from the `--from` sources, on every address of the host or only on the `--to` ones'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and not __fish_seen_subcommand_from allow remove list" -f -a "remove" -d 'Remove a protocol\'s live rule; policy protocols change in the policy file'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and not __fish_seen_subcommand_from allow remove list" -f -a "list" -d 'Show the protocol rules: the policy\'s and the live ones'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from allow" -l from -d 'Only these sources: CIDRs, addresses or set names of the policy (repeatable)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from allow" -l to -d 'Only to these destinations (the host\'s addresses): CIDRs, addresses or set names of the policy (repeatable)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from allow" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from allow" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from allow" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from remove" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from remove" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from list" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from list" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable output'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand protocol; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand reload" -l policy -d 'Switch to this policy file instead of re-reading the current one' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand reload" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand reload" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand reload" -l force -d 'Apply it even if it would cut the current admin session or established connections'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand reload" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l iface -d 'Interface to protect (repeat for several)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l policy -d 'The policy file (TOML); its folder is watched for changes' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l metrics -d 'Address of the Prometheus endpoint (GET /metrics)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l xdp-mode -d 'XDP attach mode for a new attachment: `auto` tries native and falls back to skb' -r -f -a "auto\t''
native\t''
skb\t''"
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l egress-hook -d 'Egress hook for a new attachment: `auto` tries TCX and falls back to a tc clsact filter' -r -f -a "auto\t'TCX if the kernel accepts it, else a tc clsact filter'
tcx\t'A TCX link (Linux 6.6+)'
tc\t'A tc clsact egress filter (any supported kernel)'"
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -l force -d 'Apply a policy even if it would drop the current SSH session or established inbound connections (they are logged as warnings)'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -f -a "deny" -d 'Drop everything from a source (a live deny; re-adding replaces its expiry)'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -f -a "allow" -d 'Trust a source: pass it whatever the port; wins over every deny'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -f -a "remove" -d 'Remove a live entry (allow and deny); policy entries change in the policy file'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and not __fish_seen_subcommand_from deny allow remove list" -f -a "list" -d 'Show the source entries: the policy\'s and the live ones, with expiry and hits'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from deny" -l file -d 'One CIDR or address per line, \'#\' comments; \'-\' reads standard input. A bad line applies nothing' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from deny" -l ttl -d 'The entry expires after this long: 30s, 10m, 2h, 1d, 1h30m, or seconds' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from deny" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from deny" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from deny" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from allow" -l file -d 'One CIDR or address per line, \'#\' comments; \'-\' reads standard input. A bad line applies nothing' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from allow" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from allow" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from allow" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from remove" -l file -d 'One CIDR or address per line, \'#\' comments; \'-\' reads standard input. A bad line applies nothing' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from remove" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from remove" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from list" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from list" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable output'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand source; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand status" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand status" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand status" -l json -d 'Machine-readable output'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand status" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l watch -d 'Refresh every SECS seconds with per-second rates (the first screen shows totals); Ctrl-C stops' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l count -d 'With --watch: stop after N screens' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l top -d 'Only the N port rows with the most packets (passed + dropped), busiest first (with --watch, ranked by the rates over each interval). Reasons are all shown' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l json -d 'Machine-readable output; with --watch, one JSON object a line'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l nonzero -d 'Only rows with a nonzero number: reasons and ports that saw packets (with --watch, in the numbers on each screen: totals first, then rates)'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -l reset -d 'Print the counters, then zero them all (with --json the JSON shows them as they were)'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand stats" -s h -l help -d 'Print help'
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -l source -d 'Only packets from this prefix or address' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -l port -d 'Only packets to this port (PORT/tcp, PORT/udp) or of this IP protocol (vrrp, 47; icmp with --source)' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -l count -d 'Stop after N lines' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -l rate -d 'Lines a second per CPU at most' -r
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -l bpffs -d 'Folder on bpffs for the pinned maps and links' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -l state-dir -d 'Folder of the state file' -r -F
complete -c mirror-xdp -n "__fish_mirror_xdp_using_subcommand trace" -s h -l help -d 'Print help'
