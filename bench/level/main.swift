// Load-leveling benchmark (not a test). On the tools' CFS cluster (node 1
// serves the root, nodes 2 and 3 network-boot; ToolsCluster), a parallel
// build of a real C tree (Lua 5.4.4, SourceTree.swift: `make -j6 linux`,
// 35 compiles and 3 links) in /root on the cluster root, started on node 1,
// each timed inside node 1 (date +%s%N around make), ROUNDS times:
//   - plain make on node 1 (the baseline);
//   - under ssi-ll with leveling off (the wrappers' overhead: every
//     compile asks its agent, and runs here);
//   - under ssi-ll with leveling on for nodes 1 and 2, then 1, 2 and 3.
// Every guest has one virtual CPU and qemu runs in TCG, so the ideal
// speed-up is bounded by the host's cores, not by the nodes: printed too.
//
//   swift run -c release ssi-bench-level [--ssi PATH] [--rounds N]

import Foundation
import SSIVMHarness

func fmt(_ v: Double, _ digits: Int = 1) -> String { Bench.format(v, digits) }

@main
struct LevelBench {
    static func main() async {
        var values = ["rounds": "2"]
        let ssi = Bench.arguments(usage: "ssi-bench-level [--ssi PATH] [--rounds N]", values: &values)
        let rounds = Bench.number(values, "rounds")
        await Bench.run { try await run(ssi: ssi, rounds: rounds) }
    }

    static func run(ssi: String, rounds: Int) async throws {
        try await VMTest.run("bench-level") { vm in
            let c = try await ToolsCluster.boot(in: vm, ssi: ssi, kernel: VMHost.kernel!)
            let node1 = c.node1
            let node2 = try c.startDiskless(2, in: vm, memoryMB: 1024)
            try await ToolsCluster.waitUp(node2)
            let node3 = try c.startDiskless(3, in: vm, memoryMB: 1024)
            try await ToolsCluster.waitUp(node3)
            let s = ToolsCluster.ssi
            try await node1.run("rm -rf /root/lua; cp -a \(SourceTree.luaInRoot) /root/lua; \(s) loadlevel -a off")
            // Every node's load published, the wrappers' links made.
            try await node1.run("for i in $(seq 30); do test $(wc -l < /run/ssi/loads) -ge 3 && test -e /run/ssi/ll/gcc && break; sleep 1; done",
                                timeout: .seconds(60))
            func build(_ make: String) async throws -> Double {
                let out = try await node1.run("cd /root/lua/src && make clean > /dev/null && sync && a=$(date +%s%N) && \(make) linux > /tmp/make.out 2>&1 "
                                              + "&& b=$(date +%s%N) && echo T $((b-a))", timeout: .seconds(1800)).output
                guard let r = out.range(of: "T "), let ns = Double(out[r.upperBound...].prefix { $0.isNumber }) else {
                    throw HarnessError("the build failed: \(out)")
                }
                return ns / 1e9
            }
            var results: [(String, [Double])] = []
            let ways: [(String, String, String)] = [
                ("plain make -j6, node 1", "\(s) loadlevel -a off", "make -j6"),
                ("ssi-ll make -j6, leveling off", "\(s) loadlevel -a off", "\(s) ll make -j6"),
                // The leveler on, with nowhere else to send a job: what its
                // placement asks and its rebalancing cost on one node.
                ("ssi-ll make -j6, leveling on node 1 only", "\(s) loadlevel -a off && \(s) loadlevel -n 1 on", "\(s) ll make -j6"),
                ("ssi-ll make -j6, leveling on nodes 1-2", "\(s) loadlevel -a off && \(s) loadlevel -n 1 on && \(s) loadlevel -n 2 on", "\(s) ll make -j6"),
                ("ssi-ll make -j6, leveling on nodes 1-3", "\(s) loadlevel -a on", "\(s) ll make -j6"),
            ]
            for (name, setting, make) in ways {
                try await node1.run(setting)
                try await Task.sleep(for: .seconds(3))
                var times: [Double] = []
                for _ in 0..<rounds {
                    let before = try await node1.run("grep -c 'placed a leveled' /run/ssi/proc-agent.log", expectStatus: nil).output
                    times.append(try await build(make))
                    let after = try await node1.run("grep -c 'placed a leveled' /run/ssi/proc-agent.log", expectStatus: nil).output
                    // What it built, against the plain build's files.
                    let same = try await node1.run("cd /root/lua/src && if test -e /root/plain.sums; then sha256sum -c /root/plain.sums 2>&1 | grep -v ': OK$' | tr '\\n' ' '; "
                                                   + "else sha256sum lua luac *.o > /root/plain.sums; fi", expectStatus: nil).output
                    print("\(name): \(fmt(times.last!)) s, \((Int(after) ?? 0) - (Int(before) ?? 0)) jobs placed on other nodes; "
                          + (same.isEmpty ? "the same files as the plain build" : "differs from the plain build: \(same)"))
                }
                results.append((name, times))
            }
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let base = Bench.median(results[0].1)
            print("")
            print("| Lua 5.4.4, make -j6 linux from node 1 (median of \(rounds), s) | time | speed-up over plain make | ideal |")
            print("|---|---|---|---|")
            for (i, (name, times)) in results.enumerated() {
                let nodes = i < 3 ? 1 : i - 1
                let ideal = Double(min(nodes, cores))
                print("| \(name) | \(fmt(Bench.median(times))) | \(fmt(base / Bench.median(times), 2)) | \(fmt(ideal, 1)) |")
            }
            print("")
            print("The host has \(cores) cores; each TCG guest uses one, so \(cores) nodes at most run at once: the ideal speed-up is min(nodes, \(cores)).")
        }
    }
}
