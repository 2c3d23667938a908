// Process migration benchmark (not a test). On the tools' CFS cluster
// (node 1 serves the root, node 2 network-boots; both with 3 GB of RAM so
// that a 1 GB process and its images fit, and a 4 GB root disk for
// --through-root's images), all timed inside the guests:
//   - raw TCP between node 2 and node 1 (python3, one way, and 1-byte
//     round trips): the network every figure below is compared with;
//   - a first move of a small process, printed apart (node 2 reads criu
//     and its libraries from the NFS root on its first restore);
//   - migration of a process with 10, 100 and 1000 MB resident (python3,
//     touched), node 1 -> node 2: freeze time (dump start to the target
//     running it) and its parts (dump, transfer, the target's restore),
//     the pre-copy rounds and what they sent while it ran, and the total
//     time, as ssi-migrate prints them, for each way asked (--ways):
//     pre-copy on the agents' encrypted stream (the default), stop and
//     copy on the stream, pre-copy through the cluster root;
//   - a process that rewrites 10 MB/s of its memory (ssi-dirtier,
//     --writer MB), moved with pre-copy: the rounds and the freeze;
//   - deputies (--deputy N rounds, 0: none): a parent's kill(SIGTERM) of
//     its child until its waitpid returns, local and with the child moved
//     to node 2 (through its deputy), and the deputy's making at home;
//   - shipped pipes and sockets (unless --shipping 0): onnode 2 with its
//     stdout (or a socket) at home on node 1: throughput one way and
//     1-byte round trips, against a local pipe/socket and raw TCP;
//   - with --criu-lazy 1, criu's own post-copy (lazy pages, userfaultfd),
//     run by hand between the nodes over the cluster network, not through
//     ssi: what post-copy would give these guests (issue 17's choice);
//     with --criu-lazy 2 the same with criu's page server and lazy-pages
//     daemon each on a socketpair (--ps-socket) relayed by a script, the
//     shape of a relay by the agents.
// The ratios the issue sets are printed at the end.
//
//   swift run -c release ssi-bench-migrate [--ssi PATH] [--rounds N] [--sizes 10,100,1000]
//       [--ways precopy,stop,root] [--writer 200] [--shipping 1] [--deputy 3] [--criu-lazy 0|1|2]

import Foundation
import SSIVMHarness

func fmt(_ v: Double, _ digits: Int = 1) -> String { Bench.format(v, digits) }

@main
struct MigrateBench {
    /// A parent that forks a child, prints its PID, and once /root/dep.go
    /// exists times its kill(SIGTERM) of the child until waitpid returns.
    /// Its files are on the cluster root: the child that moves has the
    /// output open, and a node's own /tmp is not on the target (criu's
    /// restore there failed: "Can't open file tmp/dep.out").
    static let deputyBench = """
        #!/usr/bin/python3
        import os, signal, sys, time
        child = os.fork()
        if child == 0:
            while True:
                time.sleep(1000)
        print(child, flush=True)
        while not os.path.exists("/root/dep.go"):
            time.sleep(0.05)
        t = time.monotonic()
        os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)
        print("us %d" % ((time.monotonic() - t) * 1e6), flush=True)

        """

    /// criu's page server and lazy-pages daemon each on a socketpair given
    /// with --ps-socket, the other end relayed over one TCP connection by
    /// this script: the shape an agent relay would have (--criu-lazy 2).
    ///   ssi-ps-relay serve PORT -- criu dump ...    (node 1)
    ///   ssi-ps-relay connect HOST PORT -- criu lazy-pages ...   (node 2)
    /// "{fd}" in criu's arguments becomes the socketpair's end; the
    /// script exits with criu's status once both directions have ended.
    static let psRelay = """
        #!/usr/bin/python3
        import socket, subprocess, sys, threading
        mode = sys.argv[1]
        if mode == "serve":
            port = int(sys.argv[2]); cmd = sys.argv[4:]
            lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("0.0.0.0", port)); lst.listen(1)
        else:
            host, port = sys.argv[2], int(sys.argv[3]); cmd = sys.argv[5:]
        mine, criu = socket.socketpair()
        p = subprocess.Popen([a.replace("{fd}", str(criu.fileno())) for a in cmd], pass_fds=[criu.fileno()])
        criu.close()
        if mode == "serve":
            peer, _ = lst.accept()
        else:
            peer = socket.create_connection((host, port))
        peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        def pump(a, b):
            while True:
                data = a.recv(1 << 20)
                if not data:
                    break
                b.sendall(data)
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        t = [threading.Thread(target=pump, args=x, daemon=True) for x in ((mine, peer), (peer, mine))]
        for x in t: x.start()
        rc = p.wait()
        for x in t: x.join(30)
        sys.exit(rc)

        """

    static let netbench = """
        #!/usr/bin/python3
        # ssi-netbench recv PORT           count bytes from one connection, print MB/s
        # ssi-netbench send HOST PORT MB   send MB of zeros
        # ssi-netbench echo PORT           echo server (for round trips)
        # ssi-netbench rtt HOST PORT N     N 1-byte round trips to an echo server, print us each
        # ssi-netbench pipe-rtt N CMD...   N 1-byte round trips through CMD's stdin/stdout (pipes)
        # ssi-netbench sock-rtt N CMD...   the same with a socketpair as CMD's stdin and stdout
        import socket, subprocess, sys, time
        op = sys.argv[1]
        def rtt(send, recv, n):
            t = time.time()
            for _ in range(n):
                send(b"x")
                while not recv(1):
                    pass
            return (time.time() - t) / n * 1e6
        if op == "recv":
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(1)
            c, _ = s.accept(); total = 0; t = None
            while True:
                b = c.recv(1 << 20)
                if t is None: t = time.time()
                if not b: break
                total += len(b)
            print("MBps %.1f" % (total / (time.time() - t) / 1e6))
        elif op == "send":
            c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
            block = bytes(1 << 20)
            for _ in range(int(sys.argv[4])): c.sendall(block)
            c.close()
        elif op == "echo":
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(1)
            c, _ = s.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                b = c.recv(65536)
                if not b: break
                c.sendall(b)
        elif op == "rtt":
            c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            print("us %.0f" % rtt(c.sendall, c.recv, int(sys.argv[4])))
        elif op in ("pipe-rtt", "sock-rtt"):
            n = int(sys.argv[2]); cmd = sys.argv[3:]
            if op == "pipe-rtt":
                p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
                us = rtt(p.stdin.write, p.stdout.read, n)
                p.stdin.close()
            else:
                a, b = socket.socketpair()
                p = subprocess.Popen(cmd, stdin=b, stdout=b)
                b.close()
                us = rtt(a.sendall, a.recv, n)
                a.shutdown(socket.SHUT_WR)
            p.wait()
            print("us %.0f" % us)

        """

    static func main() async {
        var values = ["rounds": "3", "sizes": "10,100,1000", "ways": "precopy,stop", "writer": "200", "shipping": "1", "deputy": "3",
                      "criu-lazy": "0"]
        let ssi = Bench.arguments(usage: "ssi-bench-migrate [--ssi PATH] [--rounds N] [--sizes 10,100,1000] [--ways precopy,stop,root] [--writer MB] [--shipping 0|1] [--deputy N] [--criu-lazy 0|1|2]",
                                  values: &values)
        let rounds = Bench.number(values, "rounds")
        let sizes = values["sizes"]!.split(separator: ",").compactMap { Int($0) }
        let ways = values["ways"]!.split(separator: ",").map(String.init)
        guard ways.allSatisfy({ Way.all.keys.contains($0) }) else { Bench.fail("--ways: precopy, stop, root") }
        let writer = Bench.number(values, "writer", atLeast: 0, takes: "MB (0: none)")
        let deputy = Bench.number(values, "deputy", atLeast: 0, takes: "a number of rounds (0: none)")
        let criuLazy = Bench.number(values, "criu-lazy", atLeast: 0, takes: "0, 1 or 2")
        guard criuLazy <= 2 else { Bench.fail("--criu-lazy takes 0, 1 or 2") }
        let shipping = values["shipping"] != "0"
        await Bench.run {
            try await run(ssi: ssi, rounds: rounds, sizes: sizes, ways: ways, writer: writer, shipping: shipping,
                          deputy: deputy, criuLazy: criuLazy)
        }
    }

    static func median(_ v: [Double]) -> Double { Bench.median(v) }

    /// criu -v4 stamps each line "(SS.UUUUUU)": the time from the start to
    /// the first line of each phase we know, and the total.
    static func restorePhases(_ log: String) -> String {
        let marks = [("forking the tree", "Forking task"), ("files and sockets", "Opening fdinfo"),
                     ("memory (premapping pages)", "premap"), ("restorer blob", "Restore via sigreturn"),
                     ("restored", "Restore finished successfully")]
        var out: [(Double, String)] = []
        func stamp(_ line: Substring) -> Double? {
            guard let open = line.firstIndex(of: "("), let close = line.firstIndex(of: ")"), open < close else { return nil }
            return Double(line[line.index(after: open)..<close].trimmingCharacters(in: .whitespaces))
        }
        let lines = log.split(separator: "\n")
        for (name, key) in marks {
            if let l = lines.first(where: { $0.contains(key) }), let t = stamp(l) { out.append((t, "\(name) at \(fmt(t, 3)) s")) }
        }
        if let t = lines.last.flatMap(stamp) { out.append((t, "log ends at \(fmt(t, 3)) s")) }
        // In the order criu reached them.
        return out.isEmpty ? "(no restore log)" : out.sorted { $0.0 < $1.0 }.map(\.1).joined(separator: "; ")
    }

    static func number(_ text: String, after key: String) -> Double? {
        guard let r = text.range(of: key) else { return nil }
        return Double(text[r.upperBound...].prefix { $0.isNumber || $0 == "." })
    }

    /// The PID of the process matching `pattern` once `mb` MB of it are
    /// resident (up to two minutes: python3 fills memory slowly under TCG).
    static func residentPID(_ g: Guest, _ pattern: String, mb: Int) async throws -> String {
        var pid = ""
        for _ in 0..<120 {
            pid = try await g.run("pgrep -f '\(pattern)' | head -1").output
            let rss = try await g.run("awk '/VmRSS/ {print $2}' /proc/\(pid)/status 2>/dev/null", expectStatus: nil).output
            if (Int(rss) ?? 0) > mb * 1000 { break }
            try await Task.sleep(for: .seconds(1))
        }
        return pid
    }

    /// python3 takes seconds to start under TCG: wait (up to a minute)
    /// until the port listens.
    static func waitListening(_ g: Guest, _ port: Int) async throws {
        for _ in 0..<60 {
            if try await g.run("ss -ltnH 'sport = :\(port)' | grep -c LISTEN", expectStatus: nil).output != "0" { return }
            try await Task.sleep(for: .seconds(1))
        }
        throw HarnessError("\(g.name): nothing listens on port \(port) after a minute")
    }

    /// The ways a move is measured: ssi-migrate's options.
    enum Way {
        static let all = ["precopy": "", "stop": "--stop-and-copy ", "root": "--through-root "]
        static let names = ["precopy": "pre-copy, agents' stream", "stop": "stop and copy, agents' stream",
                            "root": "pre-copy, --through-root"]
    }

    /// One move as ssi-migrate printed it.
    struct Move {
        var freeze = 0.0, dump = 0.0, transfer = 0.0, restore = 0.0, total = 0.0
        var rounds = 0.0, sentMB = 0.0, frozenMB = 0.0

        init(_ out: String) {
            freeze = number(out, after: "frozen ") ?? 0
            dump = number(out, after: "(dump ") ?? 0
            transfer = number(out, after: "transfer ") ?? 0
            restore = number(out, after: "restore ") ?? 0
            total = number(out, after: "while it ran; ") ?? number(out, after: "stop and copy; ") ?? 0
            rounds = number(out, after: "; ") ?? 0
            sentMB = number(out, after: " sent ") ?? 0
            frozenMB = number(out, after: " ms of ") ?? 0
        }

        static func median(_ moves: [Move], _ key: KeyPath<Move, Double>) -> Double { Bench.median(moves.map { $0[keyPath: key] }) }
    }

    static func run(ssi: String, rounds: Int, sizes: [Int], ways: [String], writer: Int, shipping: Bool, deputy: Int,
                    criuLazy: Int) async throws {
        try await VMTest.run("bench-migrate") { vm in
            let hog = MigrationPrograms.hog
            let c = try await ToolsCluster.boot(in: vm, ssi: ssi, kernel: VMHost.kernel!,
                                                files: ["/usr/local/bin/ssi-netbench": netbench, "/usr/local/bin/ssi-hog": hog,
                                                        "/usr/local/bin/ssi-dirtier": MigrationPrograms.all["/usr/local/bin/ssi-dirtier"]!,
                                                        "/usr/local/bin/ssi-deputy-bench": deputyBench, "/usr/local/bin/ssi-ps-relay": psRelay],
                                                memoryMB: 3072, rootMB: 4000)
            let node1 = c.node1
            let node2 = try c.startDiskless(2, in: vm, memoryMB: 3072)
            try await ToolsCluster.waitUp(node2)
            let s = ToolsCluster.ssi
            let mb = 200

            // The network: raw TCP, node 2 -> node 1.
            var raw: [Double] = [], rawRTT: [Double] = []
            for i in 0..<rounds {
                try await node1.run("(ssi-netbench recv \(7100 + i) > /tmp/recv.out &)")
                try await waitListening(node1, 7100 + i)
                try await node2.run("ssi-netbench send 10.77.0.1 \(7100 + i) \(mb)", timeout: .seconds(300))
                try await Task.sleep(for: .seconds(1))
                raw.append(number(try await node1.run("cat /tmp/recv.out").output, after: "MBps ") ?? 0)
                try await node2.run("(ssi-netbench echo \(7200 + i) &)")
                try await waitListening(node2, 7200 + i)
                rawRTT.append(number(try await node1.run("ssi-netbench rtt 10.77.0.2 \(7200 + i) 200", timeout: .seconds(120)).output, after: "us ") ?? 0)
            }
            print("raw TCP node 2 -> node 1: \(raw.map { fmt($0) }) MB/s; round trip \(rawRTT.map { fmt($0, 0) }) us")

            // Shipped pipes and sockets against local ones.
            func seconds(_ g: Guest, _ cmd: String) async throws -> Double {
                let out = try await g.run("a=$(date +%s%N); \(cmd) > /dev/null; b=$(date +%s%N); echo T $((b-a))", timeout: .seconds(600)).output
                return (number(out, after: "T ") ?? 0) / 1e9
            }
            var local: [Double] = [], shippedOut: [Double] = [], shippedIn: [Double] = []
            var localRTT: [Double] = [], pipeRTT: [Double] = [], sockLocalRTT: [Double] = [], sockRTT: [Double] = []
            for _ in 0..<(shipping ? rounds : 0) {
                local.append(Double(mb) / (try await seconds(node1, "head -c \(mb)M /dev/zero | cat")))
                shippedOut.append(Double(mb) / (try await seconds(node1, "\(s) onnode 2 head -c \(mb)M /dev/zero | cat")))
                shippedIn.append(Double(mb) / (try await seconds(node1, "head -c \(mb)M /dev/zero | \(s) onnode 2 sh -c 'cat > /dev/null'")))
                localRTT.append(number(try await node1.run("ssi-netbench pipe-rtt 200 cat", timeout: .seconds(120)).output, after: "us ") ?? 0)
                pipeRTT.append(number(try await node1.run("ssi-netbench pipe-rtt 200 \(s) onnode 2 cat", timeout: .seconds(300)).output, after: "us ") ?? 0)
                sockLocalRTT.append(number(try await node1.run("ssi-netbench sock-rtt 200 cat", timeout: .seconds(120)).output, after: "us ") ?? 0)
                sockRTT.append(number(try await node1.run("ssi-netbench sock-rtt 200 \(s) onnode 2 cat", timeout: .seconds(300)).output, after: "us ") ?? 0)
            }
            print("local pipe \(local.map { fmt($0) }) MB/s; shipped out \(shippedOut.map { fmt($0) }); shipped in \(shippedIn.map { fmt($0) })")
            print("round trips (us): local pipe \(localRTT), shipped pipe \(pipeRTT), local socket \(sockLocalRTT), shipped socket \(sockRTT)")

            // A first move warms node 2's page cache with criu and its
            // libraries (read from the NFS root): measured apart, since the
            // first restore on a node pays for that.
            try await node1.run("(ssi-hog 1 </dev/null >/dev/null 2>&1 &); sleep 3")
            let warm = try await node1.run("pgrep -f 'ssi-hog 1$' | head -1").output
            let first = try await node1.run("\(s) migrate --stop-and-copy \(warm) 2 2>&1", timeout: .seconds(600)).output
            print("first move to node 2 (cold criu): \(first)")
            try await node2.run("kill \(warm)", expectStatus: nil)

            // Deputies: what a deputy adds to a signal's round trip (a
            // parent's kill(SIGTERM) of its child until its waitpid returns:
            // the child local, then moved to node 2, where the signal goes
            // through the deputy and the end comes back), and to a move (the
            // home agent's log: the injection and the deputy's start).
            var localKill: [Double] = [], deputyKill: [Double] = [], deputyMake: [Double] = []
            for moved in [false, true] {
                for _ in 0..<deputy {
                    try await node1.run("rm -f /root/dep.go /root/dep.out; (ssi-deputy-bench > /root/dep.out 2>&1 </dev/null &); sleep 2")
                    let child = try await node1.run("head -1 /root/dep.out").output
                    if moved {
                        let out = try await node1.run("\(s) migrate \(child) 2 2>&1", timeout: .seconds(600)).output
                        guard out.contains("moved to node 2") else { throw HarnessError("migration failed: \(out)") }
                        let made = try await node1.run("grep 'process \(child) left a deputy here in' /run/ssi/proc-agent.log | tail -1").output
                        deputyMake.append(number(made, after: "left a deputy here in ") ?? 0)
                    }
                    try await node1.run("touch /root/dep.go")
                    let out = try await node1.run("for i in $(seq 60); do grep -q '^us ' /root/dep.out && break; sleep 0.5; done; cat /root/dep.out",
                                                  timeout: .seconds(90)).output
                    let us = number(out, after: "us ") ?? 0
                    if moved { deputyKill.append(us) } else { localKill.append(us) }
                }
            }
            if deputy > 0 {
                print("kill(SIGTERM) to waitpid, us: local child \(localKill.map { fmt($0, 0) }); moved child, through its deputy \(deputyKill.map { fmt($0, 0) })")
                print("deputy made at the home (after the target's answer), ms: \(deputyMake.map { fmt($0, 0) })")
            }

            // Migrations: each size, each way.
            var moves: [String: [Move]] = [:]
            for size in sizes {
                for way in ways {
                    for _ in 0..<rounds {
                        try await node1.run("(ssi-hog \(size) </dev/null >/dev/null 2>&1 &); sleep 2")
                        let pid = try await residentPID(node1, "ssi-hog \(size)", mb: size)
                        let out = try await node1.run("\(s) migrate \(Way.all[way]!)\(pid) 2 2>&1", timeout: .seconds(1800)).output
                        print("\(size) MB, \(way): \(out)")
                        guard out.contains("moved to node 2") else { throw HarnessError("migration failed: \(out)") }
                        moves["\(size) \(way)", default: []].append(Move(out))
                        try await node2.run("kill \(pid)")
                    }
                }
            }
            // A process that rewrites 10 MB/s of its memory, with pre-copy.
            var writers: [Move] = []
            for _ in 0..<(writer > 0 ? rounds : 0) {
                try await node1.run("(ssi-dirtier \(writer) 10 </dev/null >/dev/null 2>&1 &)")
                let pid = try await residentPID(node1, "ssi-dirtier", mb: writer)
                try await Task.sleep(for: .seconds(3))
                let out = try await node1.run("\(s) migrate \(pid) 2 2>&1", timeout: .seconds(1800)).output
                print("\(writer) MB rewritten at 10 MB/s: \(out)")
                guard out.contains("moved to node 2") else { throw HarnessError("migration failed: \(out)") }
                writers.append(Move(out))
                try await node2.run("kill \(pid)")
            }
            let lazy = criuLazy > 0 ? try await criuPostCopy(node1: node1, node2: node2, sizes: sizes, rounds: rounds, relayed: criuLazy == 2) : []

            // What criu's restore spends its time on: the last restore's log
            // on node 2 (criu -v4 stamps every line with its time).
            let restoreLog = try await node2.run("cat /run/ssi/last-restore.log 2>/dev/null | tail -c 200000", expectStatus: nil).output
            print("criu restore phases (the last move's restore.log on node 2):")
            print(restorePhases(restoreLog))

            print("")
            print("| path (median of \(rounds), timed in the guests) | MB/s | x raw TCP | round trip us | x raw TCP |")
            print("|---|---|---|---|---|")
            let r = median(raw), rr = median(rawRTT)
            print("| raw TCP node 2 -> node 1 (python3) | \(fmt(r)) | 1.00 | \(fmt(rr, 0)) | 1.00 |")
            print("| local pipe (node 1) | \(fmt(median(local))) | \(fmt(median(local) / r, 2)) | \(fmt(median(localRTT), 0)) | \(fmt(median(localRTT) / rr, 2)) |")
            print("| shipped pipe, node 2 -> home (onnode 2 head \\| cat) | \(fmt(median(shippedOut))) | \(fmt(median(shippedOut) / r, 2)) | \(fmt(median(pipeRTT), 0)) | \(fmt(median(pipeRTT) / rr, 2)) |")
            print("| shipped pipe, home -> node 2 (head \\| onnode 2 cat) | \(fmt(median(shippedIn))) | \(fmt(median(shippedIn) / r, 2)) | | |")
            print("| local socketpair (node 1) | | | \(fmt(median(sockLocalRTT), 0)) | \(fmt(median(sockLocalRTT) / rr, 2)) |")
            print("| shipped socket (onnode 2 cat on a socketpair) | | | \(fmt(median(sockRTT), 0)) | \(fmt(median(sockRTT) / rr, 2)) |")
            print("")
            print("| process (resident MB), way | freeze ms | dump ms (MB) | transfer ms | restore ms | pre-copy rounds, MB sent while running | total ms |")
            print("|---|---|---|---|---|---|---|")
            for size in sizes {
                for way in ways {
                    let m = moves["\(size) \(way)"] ?? []
                    print("| \(size) MB, \(Way.names[way]!) | \(fmt(Move.median(m, \.freeze), 0)) | \(fmt(Move.median(m, \.dump), 0)) (\(fmt(Move.median(m, \.frozenMB), 0))) | \(fmt(Move.median(m, \.transfer), 0)) | \(fmt(Move.median(m, \.restore), 0)) | \(fmt(Move.median(m, \.rounds), 0)), \(fmt(Move.median(m, \.sentMB), 0)) | \(fmt(Move.median(m, \.total), 0)) |")
                }
            }
            if !writers.isEmpty {
                print("| \(writer) MB rewritten at 10 MB/s, pre-copy | \(fmt(Move.median(writers, \.freeze), 0)) | \(fmt(Move.median(writers, \.dump), 0)) (\(fmt(Move.median(writers, \.frozenMB), 0))) | \(fmt(Move.median(writers, \.transfer), 0)) | \(fmt(Move.median(writers, \.restore), 0)) | \(fmt(Move.median(writers, \.rounds), 0)), \(fmt(Move.median(writers, \.sentMB), 0)) | \(fmt(Move.median(writers, \.total), 0)) |")
            }
            if deputy > 0 {
                print("")
                print("| deputy (median of \(deputy), timed in the guests) | local | moved to node 2 | added |")
                print("|---|---|---|---|")
                print("| parent's kill(SIGTERM) until its waitpid returns, ms | \(fmt(median(localKill) / 1000, 2)) | \(fmt(median(deputyKill) / 1000, 2)) | \(fmt((median(deputyKill) - median(localKill)) / 1000, 2)) |")
                print("| the deputy made at home, in the move's commit, ms | | | \(fmt(median(deputyMake), 0)) |")
            }
            if !lazy.isEmpty {
                print("")
                print("| criu's own post-copy, by hand, not through ssi\(criuLazy == 2 ? ", its sockets relayed (--ps-socket)" : "") (median of \(rounds)) | frozen ms (host: dump start to restore's return) | dump ms (criu) | restore ms (criu) | all pages on node 2 ms (lazy-pages daemon) |")
                print("|---|---|---|---|---|")
                for size in sizes {
                    let m = lazy.filter { $0.size == size }
                    func med(_ k: KeyPath<LazyMove, Double>) -> String { fmt(Bench.median(m.map { $0[keyPath: k] }), 0) }
                    print("| \(size) MB | \(med(\.frozen)) | \(med(\.dump)) | \(med(\.restore)) | \(med(\.pages)) |")
                }
                let f = { (size: Int) in Bench.median(lazy.filter { $0.size == size }.map(\.frozen)) }
                if sizes.contains(10) && sizes.contains(1000) { print("criu post-copy: freeze 1000 MB / 10 MB = \(fmt(f(1000) / f(10), 2)) (goal <= 1.5)") }
                if sizes.contains(10) && sizes.contains(100) { print("criu post-copy: freeze 100 MB / 10 MB = \(fmt(f(100) / f(10), 2)) (goal <= 1.2)") }
            }
            print("")
            // The issue's ratios, for each way measured.
            for way in ways {
                let f = { (size: Int) in Move.median(moves["\(size) \(way)"] ?? [], \.freeze) }
                let t = { (size: Int) in Move.median(moves["\(size) \(way)"] ?? [], \.total) }
                var line = "\(Way.names[way]!):"
                if sizes.contains(10) && sizes.contains(1000) { line += " freeze 1000 MB / 10 MB = \(fmt(f(1000) / f(10), 2)) (goal <= 1.5);" }
                if sizes.contains(10) && sizes.contains(100) { line += " freeze 100 MB / 10 MB = \(fmt(f(100) / f(10), 2)) (goal <= 1.2);" }
                if let big = sizes.max(), r > 0 {
                    line += " total \(big) MB / (\(big) MB at raw TCP) = \(fmt(t(big) / 1000 / (Double(big) / r), 2)) (goal <= 1.3)"
                }
                print(line)
            }
        }
    }

    /// One post-copy move made with criu by hand.
    struct LazyMove { var size: Int; var frozen = 0.0, dump = 0.0, restore = 0.0, pages = 0.0 }

    /// The last "(SS.uuuuuu)" stamp of a criu -v4 log, in ms: how long that
    /// criu ran.
    /// With `at`, the stamp of the first line containing it.
    static func lastStamp(_ log: String, at marker: String? = nil) -> Double {
        var last = 0.0
        for line in log.split(separator: "\n") where line.hasPrefix("(") {
            if let close = line.firstIndex(of: ")"), let v = Double(line[line.index(after: line.startIndex)..<close].trimmingCharacters(in: .whitespaces)) {
                last = v * 1000
                if let marker, line.contains(marker) { return last }
            }
        }
        return last
    }

    /// criu's own post-copy between node 1 and node 2, by hand over the
    /// cluster network (criu's page server, unencrypted by criu; inside the
    /// tunnel when the cluster has one): `criu dump --lazy-pages` on node 1
    /// serves the pages it did not write, node 2 runs `criu lazy-pages` and
    /// `criu restore --lazy-pages`; the process runs on node 2 from the
    /// restore's return while its pages arrive. The images (without the
    /// lazy pages) go through the shared root. Frozen is timed on the host,
    /// from before the dump command to the restore's return, so it carries
    /// a few console round trips (the same for every size): the ratio of
    /// sizes is the figure; criu's own logs give the dump and restore.
    static func criuPostCopy(node1: Guest, node2: Guest, sizes: [Int], rounds: Int, relayed: Bool) async throws -> [LazyMove] {
        let check = try await node2.run("criu check --feature uffd-noncoop 2>&1 | tail -1", expectStatus: nil).output
        print("criu check --feature uffd-noncoop on node 2: \(check)")
        var moves: [LazyMove] = []
        var port = 7400
        for size in sizes {
            for i in 0..<rounds {
                port += 1
                try await node1.run("(ssi-hog \(size) </dev/null >/dev/null 2>&1 &); sleep 2")
                let pid = try await residentPID(node1, "ssi-hog \(size)", mb: size)
                let dir = "/root/lazy-\(size)-\(i)"
                try await node1.run("rm -rf \(dir) && mkdir -p \(dir)")
                let t0 = ContinuousClock.now
                // (Both in the background of a subshell: the console's framing
                // appends "; echo ..." to the line, which a trailing & breaks.)
                // With `relayed`, criu's page server is on a socketpair
                // (--ps-socket) and ssi-ps-relay listens on the port instead.
                let serve = relayed ? "ssi-ps-relay serve \(port) -- criu dump --ps-socket {fd}" : "criu dump --address 10.77.0.1 --port \(port)"
                try await node1.run("((\(serve) -t \(pid) -D \(dir) -o dump.log -v4 --shell-job --manage-cgroups=ignore --lazy-pages "
                                    + "</dev/null >/dev/null 2>&1; echo $? > \(dir)/dump.rc) &)")
                // The page server listens once the dump is written (the
                // relay listens at once: then the dump's log says when).
                let ready = relayed ? "grep -q 'Starting lazy pages server' \(dir)/dump.log 2>/dev/null && echo yes"
                                    : "ss -ltnH 'sport = :\(port)' | grep -q LISTEN && echo yes"
                var listening = false
                for _ in 0..<600 {
                    if try await node1.run(ready, expectStatus: nil).output == "yes" { listening = true; break }
                    if try await node1.run("cat \(dir)/dump.rc 2>/dev/null", expectStatus: nil).output != "" { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                guard listening else {
                    let log = try await node1.run("tail -5 \(dir)/dump.log", expectStatus: nil).output
                    throw HarnessError("criu dump --lazy-pages of \(size) MB did not serve its pages: \(log)")
                }
                // Their socket and logs in a node-local work directory, not on NFS.
                try await node2.run("rm -rf /tmp/lazy.rc /tmp/lw; mkdir /tmp/lw; ((\(relayed ? "ssi-ps-relay connect 10.77.0.1 \(port) -- criu lazy-pages --ps-socket {fd}" : "criu lazy-pages --address 10.77.0.1 --port \(port)") -D \(dir) -W /tmp/lw -o lazy.log -v4 --page-server "
                                    + "</dev/null >/dev/null 2>&1; echo $? > /tmp/lazy.rc) &)")
                // The restore connects to the daemon's socket: wait for it
                // (python3 takes seconds to start the relay under TCG).
                try await node2.run("for i in $(seq 600); do [ -S /tmp/lw/lazy-pages.socket ] && break; [ -s /tmp/lazy.rc ] && break; sleep 0.1; done",
                                    timeout: .seconds(90))
                let out = try await node2.run("criu restore -D \(dir) -W /tmp/lw -o restore.log -v4 --shell-job --manage-cgroups=ignore --lazy-pages -d 2>&1; echo rc=$?",
                                              timeout: .seconds(900), expectStatus: nil).output
                let frozen = ContinuousClock.now - t0
                guard out.contains("rc=0") else {
                    let log = try await node2.run("grep -i -E 'error|warn' /tmp/lw/restore.log | tail -5; tail -3 /tmp/lw/lazy.log", expectStatus: nil).output
                    throw HarnessError("criu restore --lazy-pages of \(size) MB: \(out) \(log)")
                }
                let done = try await node2.run("for i in $(seq 1800); do [ -s /tmp/lazy.rc ] && break; sleep 0.5; done; cat /tmp/lazy.rc",
                                               timeout: .seconds(960), expectStatus: nil).output
                guard done == "0" else { throw HarnessError("criu lazy-pages of \(size) MB ended with '\(done)'") }
                let dumpLog = try await node1.run("grep -m1 'Starting lazy pages server' \(dir)/dump.log", expectStatus: nil).output
                let restoreLog = try await node2.run("grep '^(' /tmp/lw/restore.log | tail -1", expectStatus: nil).output
                let lazyLog = try await node2.run("grep '^(' /tmp/lw/lazy.log | tail -1", expectStatus: nil).output
                // Still running, with every page: its log goes on.
                let alive = try await node2.run("kill -0 \(pid) && echo alive", expectStatus: nil).output
                guard alive == "alive" else { throw HarnessError("the \(size) MB process did not run on after its lazy restore") }
                let move = LazyMove(size: size, frozen: Bench.seconds(frozen) * 1000,
                                    dump: lastStamp(dumpLog, at: "Starting lazy pages server"), restore: lastStamp(restoreLog), pages: lastStamp(lazyLog))
                print("criu post-copy, \(size) MB: frozen \(fmt(move.frozen, 0)) ms on the host's clock; dump.log \(fmt(move.dump, 0)) ms "
                      + "to its page server, restore.log \(fmt(move.restore, 0)) ms, lazy-pages \(fmt(move.pages, 0)) ms")
                moves.append(move)
                try await node2.run("kill \(pid); rm -rf \(dir)", expectStatus: nil)
            }
        }
        return moves
    }
}
