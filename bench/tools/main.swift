// Cluster mount benchmark (not a test). On the drop-in tools' CFS cluster
// (node 1 serves the root, nodes 2 and 3 network-boot; ToolsCluster), from
// node 1, each operation timed inside the guest (date +%s%N around the
// command, so the serial console's delay is not counted), ROUNDS times:
//   - util-linux mount/umount of a tmpfs on node 1 only (the baseline);
//   - ssi-mount/ssi-umount of the same, no node= (this node only: what
//     ssi-mount costs over util-linux's on its own);
//   - ssi-mount -o node=* of a tmpfs: every member mounts it (3 nodes);
//   - ssi-mount of node 1's ext4 disk (node=1): node 1 mounts and exports
//     it, nodes 2 and 3 mount the export over NFSv4.
// Prints medians and ratios to the baseline.
//
//   swift run -c release ssi-bench-tools [--ssi PATH] [--rounds N] [--trace yes]
//
// --trace yes: after the node=* case, each node's agent.log lines of its
// last round (uptime-stamped: where a cluster mount's time goes).

import Foundation
import SSIVMHarness

func fmt(_ v: Double, _ digits: Int = 1) -> String { Bench.format(v, digits) }

@main
struct ToolsBench {
    static func main() async {
        var values = ["rounds": "7", "trace": "no"]
        let ssi = Bench.arguments(usage: "ssi-bench-tools [--ssi PATH] [--rounds N] [--trace yes]", values: &values)
        let rounds = Bench.number(values, "rounds")
        let trace = values["trace"] == "yes"
        await Bench.run { try await run(ssi: ssi, rounds: rounds, trace: trace) }
    }

    static func median(_ v: [Double]) -> Double { Bench.median(v) }

    /// Runs `mount` then `umount` ROUNDS times in one guest shell loop;
    /// returns the milliseconds of each, per round.
    static func time(_ g: Guest, mount: String, umount: String, rounds: Int) async throws -> (mount: [Double], umount: [Double]) {
        let script = "for i in $(seq \(rounds)); do a=$(date +%s%N); \(mount) >/dev/null || echo FAIL; b=$(date +%s%N); "
            + "\(umount) >/dev/null || echo FAIL; c=$(date +%s%N); echo T $((b-a)) $((c-b)); done"
        let out = try await g.run(script, timeout: .seconds(60 * rounds + 60)).output
        guard !out.contains("FAIL") else { throw HarnessError("`\(mount)` or `\(umount)` failed:\n\(out)") }
        var m: [Double] = [], u: [Double] = []
        for line in out.split(separator: "\n") where line.hasPrefix("T ") {
            let f = line.split(separator: " ")
            m.append(Double(f[1])! / 1e6)
            u.append(Double(f[2])! / 1e6)
        }
        return (m, u)
    }

    static func run(ssi: String, rounds: Int, trace: Bool) async throws {
        try await VMTest.run("bench-tools") { vm in
            let c = try await ToolsCluster.boot(in: vm, ssi: ssi, kernel: VMHost.kernel!)
            let others = try [2, 3].map { try c.startDiskless($0, in: vm) }
            for g in others { try await ToolsCluster.waitUp(g) }
            let s = ToolsCluster.ssi
            let node1 = c.node1
            try await node1.run("mkdir -p /mnt/l /mnt/s")
            // (name, mount, umount, the mount point, the nodes that mount it)
            let all = [node1] + others
            let cases: [(String, String, String, String, [Guest])] = [
                ("util-linux mount, tmpfs, this node", "mount -t tmpfs t /mnt/l", "umount /mnt/l", "/mnt/l", [node1]),
                ("ssi-mount, tmpfs, no node= (this node)", "\(s) mount -t tmpfs t /mnt/s", "\(s) umount /mnt/s", "/mnt/s", [node1]),
                ("ssi-mount node=*, tmpfs, 3 nodes", "\(s) mount -t tmpfs -o node='*' t /mnt/all", "\(s) umount /mnt/all", "/mnt/all", all),
                ("ssi-mount node=1, ext4 + NFSv4 export, 3 nodes", "\(s) mount LABEL=ssi-data /mnt/data", "\(s) umount /mnt/data", "/mnt/data", all),
            ]
            // util-linux's own first rounds after the boot are 2-3x its
            // later ones (the guests still settle): one untimed round of
            // it first, so the baseline every ratio divides by is steady.
            _ = try await time(node1, mount: cases[0].1, umount: cases[0].2, rounds: rounds)
            var results: [(String, Double, Double)] = []
            for (name, m, u, target, nodes) in cases {
                // Each operation really happens: mounted on every node it
                // names, then gone from all (a no-op umount was once timed).
                try await node1.run("\(m) >/dev/null")
                for g in nodes {
                    guard try await !g.run("findmnt -n -M \(target)", expectStatus: nil).output.isEmpty else {
                        throw HarnessError("\(name): \(target) is not mounted on \(g.name) after `\(m)`")
                    }
                }
                try await node1.run("\(u) >/dev/null")
                for g in all {
                    let left = try await g.run("findmnt -n -M \(target)", expectStatus: nil).output
                    guard left.isEmpty else { throw HarnessError("\(name): \(target) still mounted on \(g.name) after `\(u)`: \(left)") }
                }
                let t = try await time(node1, mount: m, umount: u, rounds: rounds)
                results.append((name, median(t.mount), median(t.umount)))
                print("\(name): mount \(t.mount.map { fmt($0) }.joined(separator: " ")) ms; umount \(t.umount.map { fmt($0) }.joined(separator: " ")) ms")
                if trace && target == "/mnt/all" {
                    for g in all {
                        let lines = try await g.run("grep 'cluster mount' /run/ssi/agent.log | tail -n 12", expectStatus: nil).output
                        print("\(g.name) agent.log, the last round:\n\(lines)")
                    }
                }
            }
            let base = results[0]
            print("")
            print("| operation (median of \(rounds), ms, timed in node 1) | mount | x util-linux | umount | x util-linux |")
            print("|---|---|---|---|---|")
            for (name, m, u) in results {
                print("| \(name) | \(fmt(m)) | \(fmt(m / base.1, 2)) | \(fmt(u)) | \(fmt(u / base.2, 2)) |")
            }
        }
    }
}
