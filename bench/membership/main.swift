// Membership benchmark (not a test): boots N qemu nodes from one ssi image
// built with a cluster configuration and measures, on the host clock,
//  - from the last node's start to corosync's full N-member view on every
//    node ("[QUORUM] Members[N]:" on its console), and
//  - from killing the last node to the others' (N-1)-member view,
// beside the configured corosync token timeout.
//
//   swift run -c release ssi-bench-membership [--nodes 3,5] [--ssi PATH]
//
// Uses the VM test harness (test-made network namespace and bridge, serial
// logs, cleanup); needs root, qemu and a Debian kernel.

import Foundation
import SSIVMHarness

struct Result {
    var nodes: Int
    var fullView: [Double]      // per node, seconds after the last node started
    var quorate: [Double]       // per node: ssi-init's "membership: quorate"
    var deathNoticed: [Double]  // per surviving node, seconds after the kill
    var tokenMs: Int
}

let seconds = Bench.seconds

func config(nodes: Int, authkey: String, tokenMs: Int) -> String {
    var s = """
        [cluster]
        name = "bench"
        authkey = "\(authkey)"
        token_timeout_ms = \(tokenMs)

        [network]
        prefix = "10.77.0.0/24"

        [quorum]
        boot_wait_seconds = 300

        [root]
        type = "cfs"
        server = 1
        export = "/"

        """
    for n in 1...nodes {
        s += """

            [[node]]
            number = \(n)
            name = "node\(n)"
            mac = "\(Cluster.mac(node: n))"
            address = "10.77.0.\(n)"
            role = "\(n == 1 ? "init" : "diskless")"

            """
    }
    return s
}

func measure(nodes: Int, ssi: String, tokenMs: Int) async throws -> Result {
    try await VMTest.run("bench-membership-\(nodes)") { vm in
        let key = vm.path("authkey")
        try Command.run([ssi, "cluster", "keygen", "-o", key])
        let conf = vm.path("cluster.conf")
        try config(nodes: nodes, authkey: key, tokenMs: tokenMs).write(toFile: conf, atomically: true, encoding: .utf8)
        let image = vm.path("node.img")
        try Command.run([ssi, "mkinitrd", "--config", conf, "--kver", VMHost.kernel!.version, "-o", image, "-q"],
                        timeout: .seconds(300))
        let roots = try (1...nodes).map { try vm.rootDisk(name: "root\($0)", label: "node\($0)") }
        let cluster = try Cluster(in: vm, nodes: nodes) { n, c in
            c.initrd = image
            c.disks = [Disk(roots[n - 1].path)]
            c.kernelArguments = [roots[n - 1].rootByUUID, "ro", "quiet", RootDisk.Marker.shellArgument]
            c.timeLimit = .seconds(900)
        }
        let lastStart = cluster.guests.last!.startedAt
        // Every node at once, so each time is when its line appeared
        // (the harness polls the serial logs every 100 ms).
        func timesUntil(_ match: LineMatch, on guests: [Guest], from start: ContinuousClock.Instant) async throws -> [Double] {
            try await withThrowingTaskGroup(of: (Int, Double).self) { group in
                for (i, g) in guests.enumerated() {
                    group.addTask {
                        try await g.waitFor(match, timeout: .seconds(900))
                        return (i, seconds(ContinuousClock.now - start))
                    }
                }
                var out = [Double](repeating: 0, count: guests.count)
                for try await (i, t) in group { out[i] = t }
                return out
            }
        }
        async let quorate = timesUntil(.containsInOrder("ssi-init:", "membership:", "quorate"),
                                       on: cluster.guests, from: lastStart)
        let full = try await timesUntil(.contains("[QUORUM] Members[\(nodes)]:"), on: cluster.guests, from: lastStart)
        let q = try await quorate
        try await cluster.waitAll(for: .exactly(RootDisk.Marker.shell), timeout: .seconds(300))
        let victim = cluster.node(nodes)
        let survivors = Array(cluster.guests.dropLast())
        let killed = ContinuousClock.now
        victim.kill()
        let noticed = try await timesUntil(.contains("[QUORUM] Members[\(nodes - 1)]:"), on: survivors, from: killed)
        return Result(nodes: nodes, fullView: full, quorate: q, deathNoticed: noticed, tokenMs: tokenMs)
    }
}

func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

@main
struct MembershipBench {
    static func main() async {
        var values = ["nodes": "3", "token-ms": "3000"]
        let ssi = Bench.arguments(usage: "ssi-bench-membership [--nodes 3,5] [--ssi PATH] [--token-ms MS]", values: &values)
        let nodeCounts = values["nodes"]!.split(separator: ",").compactMap { Int($0) }
        guard !nodeCounts.isEmpty, let tokenMs = Int(values["token-ms"]!) else { Bench.fail("--nodes takes numbers, --token-ms a number") }
        var results: [Result] = []
        for n in nodeCounts where n >= 2 {
            print("== \(n) nodes")
            do {
                results.append(try await measure(nodes: n, ssi: ssi, tokenMs: tokenMs))
            } catch {
                print("   failed: \(error)")
            }
        }
        print("\nmembership benchmark: qemu TCG guests (384 MB, 1 vCPU each) on \(ProcessInfo.processInfo.activeProcessorCount) host cores; kernel \(VMHost.kernel?.version ?? "?")")
        print("times on the host clock, seconds; 'full view' = corosync's [QUORUM] Members[N] line on the node's console\n")
        print("| nodes | last start -> quorate (ssi-init), per node | last start -> full N-node view, per node | slowest | node killed -> survivors see N-1, per node | token timeout | noticed / token |")
        print("|---|---|---|---|---|---|---|")
        for r in results {
            let slow = r.fullView.max() ?? 0
            let dead = r.deathNoticed.max() ?? 0
            print("| \(r.nodes) | \(r.quorate.map(fmt).joined(separator: " ")) | \(r.fullView.map(fmt).joined(separator: " ")) | \(fmt(slow)) | \(r.deathNoticed.map(fmt).joined(separator: " ")) | \(fmt(Double(r.tokenMs) / 1000)) | \(String(format: "%.2f", dead / (Double(r.tokenMs) / 1000)))x |")
        }
    }
}
