// Process migration, fd shipping and onnode in a real cluster (the tools'
// CFS cluster: node 1 serves the root, nodes 2 and 3 network-boot), with
// CRIU inside the guests (it does not work on the host's kernel). It runs
// on the tools test's boot, after the tools' part (ToolsTests): one boot
// for both, since a cluster boot is most of either's time. The scenarios
// run one after the other; the last ones kill node 2, then node 3.

import Foundation
import SSIVMHarness
import Testing

extension VM.ToolsTests {
    /// The migration scenarios on a booted ToolsCluster whose three nodes
    /// are up (node 2 with 1.5 GB: it holds the 200 MB pre-copy process).
    static func migration(cluster: ToolsCluster, node1: Guest, node2: Guest, node3: Guest) async throws {
        let ssi = ToolsCluster.ssi
        for g in [node1, node2, node3] {
            // The process agent runs, and the node's PIDs are in its range.
            let agents = try await g.run("pgrep -f 'cluster proc-agent' | wc -l").output
            #expect(agents == "1", "\(g.name): \(agents) process agents")
        }
        let pid1 = try await node1.run("sh -c 'echo $$'").output
        #expect((Int(pid1) ?? 0) > 65536 && (Int(pid1) ?? 0) < 2 * 65536, "node 1's PIDs start at 65537: \(pid1)")

        // onnode: node 2's hostname, stdin from node 1, status back.
        let on = try await node1.run("echo typed-on-1 | \(ssi) onnode 2 sh -c 'hostname; cat; exit 7'",
                                     timeout: .seconds(60), expectStatus: 7).output
        #expect(on == "node2\ntyped-on-1", "\(on)")
        let onName = try await node1.run("\(ssi) onnode node3 sh -c 'echo $PWD $FOO' ", timeout: .seconds(60)).output
        #expect(onName.hasSuffix("/root"), "\(onName)")
        // OpenSSI's names for scripts: onall, clusternode_num.
        let all = try await node1.run("\(ssi) onall sh -c 'echo $(hostname) $(\(ssi) clusternode_num)'", timeout: .seconds(120)).output
        #expect(all == "node1: node1 1\nnode2: node2 2\nnode3: node3 3", "every node in turn, prefixed: \(all)")
        // And OpenSSI's `cluster -v` (the applet by its argv[0]).
        let states = try await node3.run("bash -c 'exec -a cluster \(ssi) -v'", timeout: .seconds(30)).output
        #expect(states == "1: UP\n2: UP\n3: UP", "cluster -v: \(states)")
        let ps = try await node2.run("\(ssi) cluster ps | awk '{print $1}' | sort -u | tr '\\n' ' '", timeout: .seconds(60)).output
        #expect(ps.contains("1 ") && ps.contains("2 ") && ps.contains("3 "), "\(ps)")

        // The counter: its stdout is a pipe read on node 1.
        try await node1.run("rm -f /root/counter.log; (ssi-counter </dev/null 2>/dev/null | cat > /tmp/reader.out &)")
        try await Task.sleep(for: .seconds(3))
        let counter = try await node1.run("pgrep -f ssi-counter | head -1").output
        #expect(try await node2.run("\(ssi) where_pid \(counter)", timeout: .seconds(30)).output == "1")
        // It has a child now and then (sleep): -t moves the tree.
        for (target, g) in [(2, node2), (3, node3)] {
            let m = try await node1.run("\(ssi) migrate -t \(counter) \(target) 2>&1", timeout: .seconds(300))
            log("migrate to \(target): \(m.output)")
            #expect(m.status == 0 && m.output.contains("moved to node \(target)"), "\(m.output)")
            if !m.output.contains(" 1 descriptors shipped") {
                // Its stdout (the pipe home, or its stand-in) must go with
                // it; a fresh-clone CI once saw 0 on the second move, and
                // the process died at its next write. The source's plan:
                let source = target == 2 ? node1 : node2
                let plan = try await source.run("grep 'moving \(counter) ' /run/ssi/proc-agent.log | tail -3", expectStatus: nil).output
                Issue.record("the counter's pipe home was not shipped to node \(target): \(m.output)\nthe plan on the source: \(plan)")
            }
            #expect(try await node1.run("\(ssi) where_pid \(counter)", timeout: .seconds(30)).output == "\(target)")
            #expect(try await g.run("cat /proc/\(counter)/comm").output == "ssi-counter")
            try await Task.sleep(for: .seconds(4))
        }
        try await node3.run("kill \(counter)")
        try await Task.sleep(for: .seconds(3))
        let log1 = try await node1.run("cat /root/counter.log").output.split(separator: "\n").map(String.init)
        let numbers = log1.compactMap { Int($0.split(separator: " ")[0]) }
        #expect(numbers == Array(1...max(1, numbers.count)), "the counter went on without a gap or a reset: \(log1)")
        let hosts = log1.compactMap { $0.split(separator: " ").last.map(String.init) }
        #expect(hosts.first == "node1" && hosts.last == "node3" && hosts.contains("node2"), "\(hosts)")
        let read = try await node1.run("cat /tmp/reader.out").output.split(separator: "\n").map(String.init)
        #expect(read == numbers.map { "line \($0)" }, "the reader on node 1 got every line once, in order: \(read)")
        #expect(try await node1.run("pgrep -x cat", expectStatus: nil).status == 1, "the reader saw end of file")

        // Deputies: a parent on node 1 (bash, waiting) whose child moved
        // sees the child's real end: its exit status, a signal sent from
        // node 3, a stop and a continue; the home keeps a deputy under the
        // child's PID, marked in ps, and where_pid and the cluster's ps
        // find the child where it runs.
        for (c, file) in [("a", "/root/exit-a"), ("b", "/root/exit-b"), ("c", "/root/exit-c")] {
            try await node1.run("rm -f \(file) /tmp/parent-\(c).out; (bash -c 'ssi-exit-when \(file) 7 & echo $! > /tmp/child-\(c); wait $!; "
                                + "echo status=$? > /tmp/parent-\(c).out' </dev/null >/dev/null 2>&1 &)")
        }
        try await Task.sleep(for: .seconds(3))
        var children: [String: (pid: String, parent: String)] = [:]
        for c in ["a", "b", "c"] {
            let pid = try await node1.run("cat /tmp/child-\(c)").output
            let parent = try await node1.run("ps -o ppid= -p \(pid) | tr -d ' '").output
            children[c] = (pid, parent)
            let m = try await node1.run("\(ssi) migrate \(pid) 2 2>&1", timeout: .seconds(300))
            log("deputy migrate \(c): \(m.output)")
            #expect(m.status == 0 && m.output.contains("moved to node 2"), "\(m.output)")
        }
        let a = children["a"]!, b = children["b"]!
        let deputy = try await node1.run("ps -o ppid=,comm=,args= -p \(a.pid)").output.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        #expect(deputy.count >= 4 && deputy[0] == a.parent && deputy[1] == "ssi-exit-when" && deputy[2] == "ssi-deputy",
                "node 1 keeps a deputy under the PID, with the same parent and name, marked in its command line: \(deputy)")
        #expect(try await node1.run("\(ssi) where_pid \(a.pid)", timeout: .seconds(30)).output == "2", "where_pid finds the process, not its deputy")
        let listed = try await node3.run("\(ssi) cluster ps | awk '$2 == \(a.pid) { print $1 }' | tr '\\n' ' '", timeout: .seconds(60)).output
        #expect(listed.trimmingCharacters(in: .whitespaces) == "2", "the cluster's ps lists it once, on node 2: \(listed)")
        // A stop from node 3 (ssi kill): the process stops on node 2 and its
        // deputy on node 1; a continue sent to the deputy continues both.
        try await node3.run("\(ssi) kill -STOP \(b.pid)", timeout: .seconds(60))
        /// Waits (bounded) for a process's state letter, or "gone".
        func state(_ g: Guest, _ pid: String, is wanted: String, seconds: Int = 10) async throws -> Bool {
            for _ in 0..<(seconds * 2) {
                let now = try await g.run("awk '{print $3}' /proc/\(pid)/stat 2>/dev/null || echo gone", expectStatus: nil).output
                if now == wanted { return true }
                try await Task.sleep(for: .milliseconds(500))
            }
            return false
        }
        #expect(try await state(node2, b.pid, is: "T"), "stopped on node 2")
        #expect(try await state(node1, b.pid, is: "T"), "its deputy on node 1 stopped too: its parent can see the stop")
        try await node1.run("kill -CONT \(b.pid)")
        #expect(try await state(node2, b.pid, is: "S"), "continued on node 2 by the SIGCONT its deputy got")
        #expect(try await state(node1, b.pid, is: "S"), "and the deputy runs")
        // Its exit code reaches the parent at home.
        try await node1.run("touch /root/exit-a")
        func parentSaw(_ c: String, seconds: Int = 30) async throws -> String {
            try await node1.run("for i in $(seq \(seconds)); do test -s /tmp/parent-\(c).out && break; sleep 1; done; cat /tmp/parent-\(c).out",
                                timeout: .seconds(seconds + 30), expectStatus: nil).output
        }
        #expect(try await parentSaw("a") == "status=7", "the parent's wait saw the child's exit code, 7")
        // kill -TERM from node 3 ends it on node 2: the parent sees SIGTERM.
        try await node3.run("\(ssi) kill -TERM \(b.pid)", timeout: .seconds(60))
        #expect(try await parentSaw("b") == "status=143", "the parent saw it killed by SIGTERM (128+15)")
        #expect(try await node1.run("test -e /proc/\(a.pid) || test -e /proc/\(b.pid)", expectStatus: nil).status != 0, "both deputies are gone")
        // c stays on node 2 until node 2 dies (below).

        // Load leveling. Off (the default): a parallel build of a real C
        // tree (Lua) under ssi-ll stays on node 1. On: its compile jobs run
        // on every node, and what it builds is byte-identical; a compile
        // error fails the build with make's own message. Then running
        // leveled processes started while it was off are spread by the
        // leveler once it is on, and stay put (no ping-pong).
        let offStatus = try await node1.run("\(ssi) loadlevel").output
        #expect(offStatus.contains("cluster: off"), "off by default: \(offStatus)")
        let loads = try await node1.run("for i in $(seq 20); do test $(wc -l < /run/ssi/loads) -ge 3 && break; sleep 1; done; \(ssi) loads",
                                        timeout: .seconds(60)).output
        #expect(loads.split(separator: "\n").count == 4, "every node publishes its load over CPG: \(loads)")
        // -O0 (MYCFLAGS comes after Lua's -O2): the same 34 compile
        // jobs to place in a third of the time; -O2's build took 428 s
        // of a CI run on a busy host. bench/level times the -O2 build.
        let makeArguments = "MYCFLAGS=-O0"
        let build = "cd /root/lua/src && \(ssi) ll make -j6 linux \(makeArguments) > /tmp/make.out 2>&1; echo make=$?"
        let sums = "cd /root/lua/src && sha256sum lua luac *.o | sha256sum"
        let placed = "grep 'placed a leveled' /run/ssi/proc-agent.log | tail -n +$(( $(cat /tmp/placed-before) + 1 )) | "
            + "awk '{ c[$NF]++ } END { for (n in c) printf \"node%s=%d \", n, c[n] }'"
        // The reference: the same tree built on the host with the root's
        // own compiler (a chroot of the test root; a guest's build on one
        // node gives these bytes, checked when this was written).
        let reference = try SourceTree.luaReferenceSums(makeArguments: makeArguments)
        try await node1.run("\(ssi) loadlevel -a on")
        #expect(try await node2.run("\(ssi) loadlevel").output.contains("cluster: on"), "on for every node (the file is on the shared root)")
        try await node1.run("rm -rf /root/lua; cp -a \(SourceTree.luaInRoot) /root/lua; grep -c 'placed a leveled' /run/ssi/proc-agent.log > /tmp/placed-before",
                            expectStatus: nil)
        let leveled = try await node1.run(build, timeout: .seconds(900)).output
        let leveledTail = try await node1.run("grep -m8 -iE -B1 'error|terminated|killed' /tmp/make.out; free -m | head -2", expectStatus: nil).output
        #expect(leveled.hasSuffix("make=0"), "the leveled build: \(leveled) \(leveledTail)")
        #expect(try await node1.run(sums).output == reference, "byte-identical to the build of the same tree with the same compiler on one machine")
        let spread = try await node1.run(placed).output
        log("leveled build, jobs placed on other nodes: \(spread)")
        #expect(spread.contains("node2=") && spread.contains("node3="), "compile jobs ran on node 2 and node 3: \(spread)")
        // A compile error in one of the jobs (four rebuilt, placed as the
        // loads say) fails the build with make's own message.
        try await node1.run("cd /root/lua/src && touch lapi.c lcode.c ldebug.c && echo 'int broken(' >> lauxlib.c")
        let broken = try await node1.run(build, timeout: .seconds(900)).output
        let brokenOut = try await node1.run("grep -E 'Error|error:' /tmp/make.out | head -5").output
        #expect(broken.hasSuffix("make=2") && brokenOut.contains("lauxlib.c") && brokenOut.contains("Error 1"),
                "a compile error fails the build with make's message: \(broken) \(brokenOut)")
        // Off: every job here.
        try await node1.run("\(ssi) loadlevel -a off")
        try await node1.run("cd /root/lua/src && sed -i '$ d' lauxlib.c && touch lapi.c lcode.c && grep -c 'placed a leveled' /run/ssi/proc-agent.log > /tmp/placed-before",
                            expectStatus: nil)
        let unleveled = try await node1.run(build, timeout: .seconds(900)).output
        #expect(unleveled.hasSuffix("make=0"), "the build without leveling: \(unleveled)")
        #expect(try await node1.run(placed).output.isEmpty, "leveling off: every job on node 1")
        #expect(try await node1.run(sums).output == reference, "and the same bytes again")

        // Rebalancing: three spinners (named in the loadlevellist, as a
        // running process must be to be moved) started under ssi-ll while
        // leveling is off stay on node 1; turned on, the leveler spreads them.
        try await node1.run("printf 'gcc\\ncc\\nssi-spin\\n' > /etc/ssi/loadlevellist; sleep 3")
        try await node1.run("for i in 1 2 3; do (\(ssi) ll ssi-spin </dev/null >/dev/null 2>&1 &); done")
        try await Task.sleep(for: .seconds(6))
        let spinners = try await node1.run("pgrep -f 'python3 /usr/local/bin/ssi-spin' | tr '\\n' ' '").output
            .split(separator: " ").map(String.init)
        #expect(spinners.count == 3, "\(spinners)")
        try await node1.run("\(ssi) loadlevel -a on")
        var placesOf: [String] = []
        for _ in 0..<45 {
            try await Task.sleep(for: .seconds(2))
            placesOf = []
            for p in spinners { placesOf.append(try await node1.run("\(ssi) where_pid \(p)", timeout: .seconds(30), expectStatus: nil).output) }
            if Set(placesOf).count >= 2 && !placesOf.contains("1") || Set(placesOf).count == 3 { break }
        }
        log("spinners' nodes after leveling: \(placesOf)")
        #expect(Set(placesOf).count >= 2, "the leveler moved running leveled processes off the busy node: \(placesOf)")
        let movesBefore = try await node1.run("cat /run/ssi/proc-agent.log | grep -c 'load leveling: moving'", expectStatus: nil).output
        try await Task.sleep(for: .seconds(20))
        let afterPlaces = try await node1.run("for p in \(spinners.joined(separator: " ")); do \(ssi) where_pid $p; done | tr '\\n' ' '",
                                              timeout: .seconds(90), expectStatus: nil).output
        let movesAfter = try await node1.run("cat /run/ssi/proc-agent.log | grep -c 'load leveling: moving'", expectStatus: nil).output
        log("leveler moves on node 1: \(movesBefore) -> \(movesAfter); nodes \(afterPlaces)")
        #expect(Int(movesAfter) ?? 99 <= (Int(movesBefore) ?? 0) + 1, "no ping-pong: at most one more move from node 1 in 20 s")
        try await node1.run("\(ssi) kill -KILL \(spinners.joined(separator: " "))", timeout: .seconds(60), expectStatus: nil)
        try await node1.run("\(ssi) loadlevel -a off; rm -f /etc/ssi/loadlevellist")

        // Pre-copy: a process rewriting 1 MB/s of a 32 MB buffer
        // moves while it runs (32, not issue 17's 200: CI's budget on a
        // slow host, where 200 MB took 5.5 min of the boot and 64 MB
        // took 132 s in six rounds; bench/migrate --writer moves
        // 200 MB); the rounds carry most of it, the
        // freeze only what it dirtied since the last one. 1 MB/s: the
        // tunnel carries about 7.5 MB/s between two TCG guests (its
        // ChaCha20 emulated) on a quiet host and 2 MB/s on a busy one
        // (a run at 3 MB/s dirtied the whole buffer in each round
        // there), and no pre-copy converges on a link slower than the
        // rewriting (at 10 MB/s every round was the whole buffer).
        try await node1.run("rm -f /tmp/dirtier.out; (ssi-dirtier 32 1 </dev/null 2>/dev/null | cat > /tmp/dirtier.out &)")
        var dirtierLines = 0
        for _ in 0..<60 where dirtierLines < 3 {
            try await Task.sleep(for: .seconds(1))
            dirtierLines = Int(try await node1.run("grep -c node1 /tmp/dirtier.out", expectStatus: nil).output) ?? 0
        }
        let dirtier = try await node1.run("pgrep -f ssi-dirtier | head -1").output
        try await node1.run("kill -USR1 \(dirtier)")
        let pre = try await node1.run("\(ssi) migrate \(dirtier) 2 2>&1", timeout: .seconds(600))
        log("pre-copy migrate: \(pre.output)")
        #expect(pre.status == 0 && pre.output.contains("moved to node 2"), "\(pre.output)")
        func mb(_ text: String, after marker: String) -> Int? {
            guard let r = text.range(of: marker) else { return nil }
            return Int(text[r.upperBound...].prefix { $0.isNumber })
        }
        let sent = mb(pre.output, after: "pre-copy rounds sent ") ?? mb(pre.output, after: "pre-copy round sent ") ?? 0
        let frozen = mb(pre.output, after: " ms of ") ?? 999
        #expect(sent >= 32, "the rounds sent the whole buffer while it ran: \(pre.output)")
        #expect(frozen < 40, "the freeze carried only what was dirtied since the last round: \(pre.output)")
        try await Task.sleep(for: .seconds(4))
        try await node2.run("kill -USR1 \(dirtier)")
        var checks: [String] = []
        for _ in 0..<30 where checks.count < 2 {
            try await Task.sleep(for: .seconds(1))
            checks = try await node1.run("grep '^check' /tmp/dirtier.out", expectStatus: nil).output.split(separator: "\n").map(String.init)
        }
        #expect(checks.count == 2 && checks.allSatisfy { $0.hasPrefix("check ok ") },
                "every block of the buffer holds what the program wrote, before and after the move: \(checks)")
        try await node2.run("kill \(dirtier)")
        try await Task.sleep(for: .seconds(2))
        // Checked in the guest, so that a byte the serial console doubles
        // in hundreds of lines is not taken for the program's: its pipe at
        // home got every line once, in order, from node 1 then node 2, and
        // its block counter went on without a reset.
        let dirtierCheck = try await node1.run("awk '!/^check/ { n++; if ($1 != n) bad++; if (NF == 3) { c++; if ($3 != c * 5) gap++; if (c == 1) f = $2; l = $2 } } "
                                          + "END { if (n > 0 && bad + gap == 0 && f == \"node1\" && l == \"node2\") print \"dirtier ok: \" n \" lines\"; "
                                          + "else print \"dirtier: \" n \" lines, \" bad + 0 \" out of order, \" gap + 0 \" counter gaps, from \" f \" to \" l }' /tmp/dirtier.out").output
        #expect(LineMatch.consoleText(dirtierCheck, contains: "dirtier ok: "), "its pipe at home, every line once and in order, node 1 then 2: \(dirtierCheck)")

        // A socketpair between a parent and its child moves with the
        // tree (CRIU restores it): nothing is shipped, and they go on
        // talking on node 2.
        try await node1.run("rm -f /root/pair.log; (ssi-pair </dev/null >/dev/null 2>&1 &)")
        try await Task.sleep(for: .seconds(4))
        let pair = try await node1.run("pgrep -of ssi-pair").output
        let pm = try await node1.run("\(ssi) migrate -t \(pair) 2 2>&1", timeout: .seconds(300))
        log("socketpair migrate: \(pm.output)")
        #expect(pm.status == 0 && pm.output.contains("moved to node 2") && pm.output.contains(" 0 descriptors shipped"), "\(pm.output)")
        try await Task.sleep(for: .seconds(4))
        try await node2.run("pkill -f ssi-pair", expectStatus: nil)
        // Checked in the guest (a doubled console byte once failed it):
        // every ping answered, in order, by the child on the parent's
        // node, node 1 first and node 2 last.
        let pairs = try await node1.run("awk '{ if (NF == 4 && $1 == NR && $1 == $2 && $3 == $4) ok++; else print \"bad line \" NR \": \" $0 } "
                                        + "NR == 1 { f = $4 } { l = $4 } END { if (NR > 0 && ok == NR && f == \"node1\" && l == \"node2\") print \"pairs ok: \" NR; "
                                        + "else print \"pairs: \" NR \", \" ok + 0 \" answered on the parent node, from \" f \" to \" l }' /root/pair.log").output
        #expect(LineMatch.consoleText(pairs, contains: "pairs ok: "), "every ping answered by the child on the parent's node: \(pairs)")

        // A job-control shell's foreground job (script's pty on node 1, an
        // interactive bash in it): moved to node 2, it keeps its keys,
        // window size, Ctrl-Z / bg / fg and Ctrl-C as if it never left, and
        // the shell's $? is its end. The move freezes it in a cgroup: the
        // shell never sees a stop it did not ask for. (script is started
        // with SIGINT at its default: a command started with & ignores it,
        // and a shell keeps for its jobs what it found ignored.)
        try await node1.run("rm -f /tmp/keys /tmp/tty.out; mkfifo /tmp/keys; (env --default-signal=INT script -qfc 'bash --norc --noprofile -i' /tmp/tty.out < /tmp/keys > /dev/null &) ; exec 9>/tmp/keys")
        // POSIX mode: bash then names the stop signal in a job's status
        // ("Stopped(SIGTTIN)"); without it every stop reads "Stopped".
        try await node1.run("echo 'PS1=\"sh> \"; set -o posix; ssi-tty-prog' >&9")
        // Waits follow progress, bounded (a slow machine takes longer
        // to fork on a diskless root; fixed sleeps failed there).
        func waitFor(_ text: String, in file: String, on g: Guest, seconds: Int = 60) async throws {
            try await g.run("for i in $(seq \(seconds)); do grep -q '\(text)' \(file) && break; sleep 1; done",
                            timeout: .seconds(seconds + 30), expectStatus: nil)
        }
        try await waitFor("ready", in: "/tmp/tty.out", on: node1)
        let prog = try await node1.run("pgrep -f 'bash /usr/local/bin/ssi-tty-prog' | head -1").output
        let shell = try await node1.run("ps -o ppid= -p \(prog) | tr -d ' '").output
        let m = try await node1.run("\(ssi) migrate \(prog) 2 2>&1", timeout: .seconds(300))
        log("tty migrate: \(m.output)")
        #expect(m.status == 0, "\(m.output)")
        #expect(try await node1.run("grep -c Stopped /tmp/tty.out", expectStatus: nil).output == "0",
                "the move was no stop its shell saw")
        try await node1.run("echo hello-tty >&9")
        try await waitFor("got hello-tty on node2", in: "/tmp/tty.out", on: node1)
        // The terminal: the pty slave its shell holds.
        let pts = try await node1.run("readlink /proc/\(shell)/fd/0").output
        #expect(pts.hasPrefix("/dev/pts/"), "\(pts)")
        try await node1.run("stty -F \(pts) rows 41 cols 99 2>&1; echo", expectStatus: nil)
        // Applied on node 2 (the stand-in logs it), then one more line:
        // bash runs its WINCH trap once `read` returns.
        try await waitFor("window 41x99", in: "/run/ssi/proc-agent.log", on: node2, seconds: 30)
        try await node1.run("echo after-winch >&9")
        try await waitFor("got after-winch on node2", in: "/tmp/tty.out", on: node1)
        var tty = try await node1.run("cat /tmp/tty.out").output
        #expect(tty.contains("got hello-tty on node2"), "keystrokes reach the program on node 2: \(tty)")
        #expect(tty.contains("winch 41 99") && tty.contains("got after-winch on node2"), "the window size change reaches it: \(tty)")
        // Ctrl-Z at home: the terminal stops the foreground group (the
        // deputy), which stops the program on node 2; the shell says so.
        try await node1.run("printf '\\032' >&9")
        try await waitFor("Stopped(SIGTSTP)", in: "/tmp/tty.out", on: node1, seconds: 30)
        #expect(try await state(node2, prog, is: "T", seconds: 30), "Ctrl-Z stopped it on node 2")
        #expect(try await state(node1, prog, is: "T"), "its deputy stopped at home: the shell saw the stop")
        // bg: it runs again there, in the background, where it reads
        // the terminal: stopped by SIGTTIN, as it would be at home.
        try await node1.run("echo bg >&9")
        #expect(try await state(node2, prog, is: "T", seconds: 60), "SIGTTIN stopped it on node 2")
        #expect(try await state(node1, prog, is: "T", seconds: 30), "its deputy stopped at home: the shell saw the stop")
        // bash (without set -b) reports a background job's stop before
        // its next prompt, as at home: an empty line makes one. The
        // signal it names is the deputy's WSTOPSIG: SIGTTIN.
        try await node1.run("echo >&9")
        try await waitFor("Stopped(SIGTTIN)", in: "/tmp/tty.out", on: node1, seconds: 30)
        // fg: the foreground again; a line typed reaches it.
        try await node1.run("echo fg >&9")
        try await Task.sleep(for: .seconds(2))
        try await node1.run("echo after-fg >&9")
        try await waitFor("got after-fg on node2", in: "/tmp/tty.out", on: node1)
        // Ctrl-C: it dies of SIGINT on node 2, its deputy at home, and the
        // shell's $? says so.
        try await node1.run("printf '\\003' >&9")
        #expect(try await state(node2, prog, is: "gone", seconds: 30), "Ctrl-C at home ended it on node 2")
        #expect(try await state(node1, prog, is: "gone", seconds: 30), "and its deputy on node 1")
        try await node1.run("echo 'echo \"rc=$?\"' >&9")
        try await waitFor("rc=1", in: "/tmp/tty.out", on: node1, seconds: 30)
        // A foreground job that exits 7 on node 2: the shell's $? is 7.
        try await node1.run("echo \"bash -c 'read -r x; exit 7'\" >&9")
        try await Task.sleep(for: .seconds(2))
        let seven = try await node1.run("pgrep -f 'read -r x; exit 7' | head -1").output
        let m7 = try await node1.run("\(ssi) migrate \(seven) 2 2>&1", timeout: .seconds(300))
        #expect(m7.status == 0, "\(m7.output)")
        try await node1.run("echo go >&9")
        #expect(try await state(node1, seven, is: "gone", seconds: 30), "its deputy ended")
        try await node1.run("echo 'echo \"rc=$?\"' >&9")
        try await waitFor("rc=7", in: "/tmp/tty.out", on: node1, seconds: 30)
        try await node1.run("echo exit >&9")
        #expect(try await node1.run("for i in $(seq 30); do pgrep -f 'script -qfc bash' > /dev/null || break; sleep 1; done; pgrep -fc 'script -qfc bash'",
                                    timeout: .seconds(60), expectStatus: nil).output == "0", "the shell exited, and script with it")
        tty = try await node1.run("cat /tmp/tty.out").output
        log("interactive shell: " + tty)
        // Checked in the guest: qemu's serial log has doubled a byte of
        // this very text on a loaded host ("ssi-tty-pprog &").
        let codes = try await node1.run("[ \"$(tr '\\r' '\\n' < /tmp/tty.out | grep -a '^rc=' | tr '\\n' ' ')\" = 'rc=130 rc=7 ' ] && echo codes-ok", expectStatus: nil).output
        #expect(LineMatch.consoleText(codes, contains: "codes-ok"), "the shell's $?: Ctrl-C's 130, then the moved job's own 7: \(tty)")
        let words = try await node1.run("grep -q 'Stopped(SIGTSTP)' /tmp/tty.out && grep -qF 'ssi-tty-prog &' /tmp/tty.out && grep -q 'Stopped(SIGTTIN)' /tmp/tty.out && echo words-ok",
                                        expectStatus: nil).output
        #expect(LineMatch.consoleText(words, contains: "words-ok"),
                "the shell said Stopped(SIGTSTP), bg put it in the background, where reading the terminal stopped it: Stopped(SIGTTIN): \(tty)")
        for g in [node1, node2] {
            log("\(g.name) agent: " + (try await g.run("grep -E 'window|SIGWINCH|stand-in|channel|freez|SIGTTIN|signal|stopped|continued|again|not told' /run/ssi/proc-agent.log | tail -30", expectStatus: nil).output))
        }
        // The FIFO that fed the terminal, fd 9 of this shell: the
        // programs below have it too, and it is shipped with them.

        // A TCP client keeps its connection to node 1's server: the
        // socket stays home, the client gets a stand-in on node 2.
        try await node1.run("rm -f /root/tcp.log; (ssi-echo-server </dev/null >/dev/null 2>&1 &); sleep 2; (ssi-tcp-client </dev/null >/dev/null 2>&1 &)")
        try await Task.sleep(for: .seconds(3))
        let client = try await node1.run("pgrep -f ssi-tcp-client | head -1").output
        let t = try await node1.run("\(ssi) migrate \(client) 2 2>&1", timeout: .seconds(300))
        log("tcp migrate: \(t.output)")
        #expect(t.status == 0, "\(t.output)")
        try await Task.sleep(for: .seconds(5))
        let tcp = try await node1.run("cat /root/tcp.log").output.split(separator: "\n").map(String.init)
        #expect(tcp.contains { $0.hasSuffix("node2") } && tcp.allSatisfy { l in
            let f = l.split(separator: " ")
            return f.count == 5 && f[1] == "echo" && f[2] == "ping" && f[0] == f[3]
        }, "every ping answered over the same connection: \(tcp)")
        #expect(tcp.map { Int($0.split(separator: " ")[0]) ?? 0 } == Array(1...max(1, tcp.count)), "no ping lost: \(tcp)")
        try await node2.run("kill \(client)", expectStatus: nil)

        // Node-local objects stay home: a file read in node 1's
        // /run, a file appended to there, and /dev/kmsg (a device
        // CRIU cannot dump: it becomes a socket to the agent first).
        try await node1.run("rm -rf /run/lf; mkdir /run/lf; seq -f 'a%04g' 1 200 > /run/lf/in.txt; (ssi-local </dev/null >/dev/null 2>/run/lf/err &)")
        try await Task.sleep(for: .seconds(4))
        let local = try await node1.run("pgrep -f ssi-local | head -1").output
        if local.isEmpty {
            let why = try await node1.run("cat /run/lf/err; ls -l /usr/local/bin /dev/kmsg").output
            Issue.record("ssi-local does not run: \(why)")
        }
        // Its images go through the cluster root (/cluster/migrate),
        // which the diskless target sees as node 1 does.
        let lm = try await node1.run("\(ssi) migrate --through-root \(local) 2 2>&1", timeout: .seconds(300))
        log("local migrate: \(lm.output)")
        #expect(lm.status == 0 && lm.output.contains("moved to node 2"), "\(lm.output)")
        try await Task.sleep(for: .seconds(5))
        let lines = try await node1.run("cat /run/lf/out.txt").output.split(separator: "\n").map(String.init)
        let parsed = lines.map { $0.split(separator: " ").map(String.init) }
        #expect(parsed.enumerated().allSatisfy { i, f in f.count == 3 && f[0] == "\(i + 1)" && f[1] == String(format: "a%04d", i + 1) },
                "every record read once, in order, every line written once, into node 1's file: \(lines)")
        #expect(parsed.first?.last == "node1" && parsed.last?.last == "node2", "\(lines)")
        let kmsg1 = try await node1.run("dmesg | grep -c 'ssi-local [0-9]* a[0-9]* node2'", expectStatus: nil).output
        #expect((Int(kmsg1) ?? 0) >= 2, "its /dev/kmsg lines from node 2 are in node 1's kernel log (\(kmsg1))")
        let kmsg2 = try await node2.run("dmesg | grep -c ssi-local", expectStatus: nil).output
        #expect(kmsg2 == "0", "and not in node 2's (\(kmsg2))")
        #expect(try await node2.run("ls /run/lf 2>&1", expectStatus: nil).status != 0, "node 2 has no /run/lf of its own")
        try await node2.run("kill \(local)", expectStatus: nil)
        // A node-local file open both ways cannot be a stream.
        try await node1.run("(sleep 300 3<>/run/lf/rw </dev/null >/dev/null 2>&1 &)")
        let rw = try await node1.run("pgrep -f '^sleep 300' | head -1").output
        let rwOut = try await node1.run("\(ssi) migrate \(rw) 2 2>&1", timeout: .seconds(60), expectStatus: 1).output
        #expect(rwOut.contains("fd 3 is /run/lf/rw on a node-local file system") && rwOut.contains("open for reading and writing"), "\(rwOut)")
        #expect(try await node1.run("awk '{print $3}' /proc/\(rw)/stat").output == "S", "the refused process sleeps on")
        try await node1.run("kill \(rw)", expectStatus: nil)

        // Refusals name the reason; the process stays, running.
        let server = try await node1.run("pgrep -f ssi-echo-server | head -1").output
        let refused = try await node1.run("\(ssi) migrate \(server) 2 2>&1", timeout: .seconds(60), expectStatus: 1).output
        #expect(refused.contains("listening socket"), "\(refused)")
        let busy = try await node1.run("\(ssi) migrate 1 2 2>&1", timeout: .seconds(60), expectStatus: 1).output
        #expect(busy.contains("cluster daemon") || busy.contains("in use on node 2"), "\(busy)")
        let nowhere = try await node1.run("\(ssi) where_pid 4000000 2>&1", timeout: .seconds(30), expectStatus: 1).output
        #expect(nowhere.contains("no such process on any node"), "\(nowhere)")

        // Node 3's link is slowed to 20 Mbit/s so that a transfer to
        // it lasts half a minute and a kill lands in it (at full
        // speed, a CI run saw the move finish before the kill).
        try cluster.network.limitRate(tap: node3.config.nics[0].tap, mbit: 20)

        // The source dies after the first pre-copy round: the move
        // is lost with it, nothing runs twice, and the target drops
        // the rounds it received once it sees the source gone.
        try await node2.run("(ssi-dirtier 60 </dev/null >/dev/null 2>&1 &)")
        try await Task.sleep(for: .seconds(5))
        let source = try await node2.run("pgrep -f ssi-dirtier | head -1").output
        try await node2.run("((\(ssi) migrate \(source) 3 > /tmp/source-migrate.out 2>&1) &)")
        var secondRound = false
        for _ in 0..<180 where !secondRound {
            secondRound = try await node2.run("grep -c 'sending the images of \(source) to node 3 (pre-copy round 2' /run/ssi/proc-agent.log",
                                              expectStatus: nil).output != "0"
            if !secondRound { try await Task.sleep(for: .milliseconds(500)) }
        }
        // (Nothing is run on node 3 meanwhile: its slowed link is
        // full, and its NFS root would answer after the round.)
        #expect(secondRound, "the first round was sent, the second began")
        node2.kill()
        // Node 3 sees the connection die (keepalive, about 11 s; at
        // worst its 120 s receive timeout) or node 2 leave (the token
        // timeout, then the agents' 10 s departure grace), logs the drop and removes the rounds (in the
        // agent's own view of the images' tmpfs, which a shell here
        // does not see: the log is what tells).
        var dropped = ""
        for _ in 0..<150 where !dropped.contains(" dropped: ") {
            try await Task.sleep(for: .seconds(1))
            dropped = try await node3.run("grep 'pre-copy of 2-\(source)-' /run/ssi/proc-agent.log", expectStatus: nil).output
        }
        log("source death, node 3: \(dropped)")
        // The process that ran on node 2 for its parent on node 1 is lost
        // with node 2: its deputy ends as killed, and the parent sees it.
        #expect(try await parentSaw("c", seconds: 120) == "status=137", "the parent saw it killed (SIGKILL) when its node died")
        #expect(dropped.contains(": round 1 from node 2") && dropped.contains(" dropped: "),
                "node 3 had received the first round, and dropped the rounds: \(dropped)")
        #expect(try await node3.run("test -e /proc/\(source)", expectStatus: nil).status != 0, "nothing runs twice: node 3 never restored it")

        // The target dies in the middle of the transfer (its first
        // pre-copy round): the process goes on running on node 1.
        try await node1.run("rm -f /root/hog.log; (ssi-hog 80 </dev/null >/dev/null 2>&1 &)")
        try await Task.sleep(for: .seconds(5))
        let hog = try await node1.run("pgrep -f ssi-hog | head -1").output
        try await node1.run("((\(ssi) migrate \(hog) 3 > /tmp/hog-migrate.out 2>&1; echo rc=$? >> /tmp/hog-migrate.out) &)")
        var sending = false
        for _ in 0..<120 where !sending {
            sending = try await node1.run("grep -c 'sending the images of \(hog)' /run/ssi/proc-agent.log", expectStatus: nil).output != "0"
            if !sending { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(sending, "the transfer began")
        node3.kill()
        let early = try await node1.run("cat /tmp/hog-migrate.out").output
        #expect(!early.contains("rc="), "the move was over before node 3 died: \(early)")
        var out = ""
        for _ in 0..<150 where !out.contains("rc=") {
            try await Task.sleep(for: .seconds(1))
            out = try await node1.run("cat /tmp/hog-migrate.out").output
        }
        log("target death: \(out)")
        #expect(out.contains("rc=1") && out.contains("goes on running on node 1"), "\(out)")
        let state = try await node1.run("awk '{print $3}' /proc/\(hog)/stat").output
        #expect(state == "S" || state == "R", "the process runs on node 1 again (state \(state))")
        let before = try await node1.run("wc -l < /root/hog.log").output
        try await Task.sleep(for: .seconds(3))
        let after = try await node1.run("wc -l < /root/hog.log").output
        #expect((Int(after) ?? 0) > (Int(before) ?? 0), "it goes on writing: \(before) -> \(after)")
    }
}
