//! What the measurements found about where the time goes: written into docs/benchmarks.md
//! with the tables (the figures here were measured on the bench machine when written; the
//! tables above them are this run's).

pub const FINDINGS: &str = "\
- **Every call costs about 10 ns here.** This CPU runs the kernel with the SRSO mitigation's \
safe return (`spec_rstack_overflow: Safe RET`): every `ret` of kernel code, JIT-compiled BPF \
included, goes through a return thunk. With cut-down variants of the program in test runs \
(bare XDP_DROP 29-30 ns): reading the frame's length with `bpf_xdp_get_buff_len` and \
returning cost 41-44 ns; with the config read too, the same; parsing adds 2-3 ns; the \
verdict for an allowed or closed-port packet 10-12 ns more; the counters and the drop \
sample 1-3 ns. The length helper was a third of what a closed-port drop cost over a bare \
drop (1.96x): the program now reads the whole length only where a length reaches past the \
first buffer (docs/semantics.md, \"Multi-buffer frames\"), and a closed-port drop costs \
about 1.5x, trusted, source_not_allowed and return 8-10 ns less each. An out-of-line BPF \
function costs about 6 ns a call: the `from` lookup, the IPv4 host lookup and the live \
entries' lookups are inlined now (source_not_allowed and trusted 5-8 ns less; with live \
entries every packet 10-13 ns less, the check for a live entry nearby having been a call \
of its own, and a live ban or allow 20-30 ns less); the flow lookup stays out of line, \
because inlined its key pushes the combined stack past 512 bytes (6.1's verifier refuses \
the program). Each hash or trie lookup is a helper call and pays the thunk: that is why the \
paths past the port lookup (trusted, source_not_allowed: a hash or trie lookup; return: the \
flow hash) stay over 2x, and why the 1.3x bound for a closed-port drop (8 ns over a bare \
drop) is below what parsing, the port lookup and the counters cost here.
- **One lookup of each kind.** With cut-down variants of the program in test runs: a BPF \
hash lookup costs about 30-35 ns, an LPM trie lookup 30-40 ns even with two entries (more \
with thousands), an array read 1-2 ns. Only paths that read arrays alone stay near a bare \
drop: allowed, port_closed, the IPv4 lists (the block array, and the /32 hash only for a \
block that holds listed hosts) and every source near no IPv6 list and no live entry (a bit \
each). A source inside an IPv6 list pays a hash lookup per nesting level; one near a live \
entry pays the two tries (allow, then deny).
- **The worst paths.** A live IPv4 deny among 50,000 is two trie lookups in large tries: \
that is the path that stays over 2x a bare drop, and 1.5x what it costs with one entry. \
Getting under needs live entries in arrays or hashes per prefix length; per-length hashes \
(tried) were slower than the trie for the lengths a ban list holds.
- **A call per map.** A lookup helper called for two different maps leaves the verifier a \
map pointer it cannot inline the lookup for: the generic helper call cost an allowed IPv4 \
packet 15 ns with live entries. Each map gets its own small function.
- **The verifier.** The IPv6 walk masked the address with a loop over its 16 bytes and a \
branch each; inside the walk's 16 steps the verifier explored every byte of every step: \
190 ms to verify the XDP program, 690 ms with 4-bit tiers. Two 64-bit shifts instead: 75 \
ms. Every attach, reload without a spare, and spare pays it.
- **Kernel memory.** Preallocated hash tables cost 80 (IPv4) to 112 (IPv6) bytes a slot \
whether used or not, so they are sized to the lists; a byte per /24 is 16 MiB, so the \
block array has a /16 directory and chunks only where blocks differ, unless a list touches \
most /16s; per-CPU arrays cost their size per CPU (the per-port counters: 2 MiB a CPU).
- **Loading a list.** A million IPv4 /32s: parsing and compiling take about 0.4 s, filling \
the host hash about 500 ns an entry in the kernel (0.5 s on one thread; now split over the \
CPUs), zeroing the preallocated table 0.1 s, verifying the program 0.1 s. With 8-bit IPv6 \
tiers a /33 became 128 entries, and a million IPv6 prefixes of random lengths 5 million \
(612 MiB); 4-bit tiers make them 2 million.
";
