// GFS2 benchmark (not a test). On three qemu guests sharing one raw disk:
//  - boot to systemd's multi-user.target from the GFS2 root (all three at
//    once, as a cluster starts), on the host clock from qemu's start, and
//    from the CFS root on the same three VMs (node 1 the init node booting
//    from a Debian disk, nodes 2 and 3 network-booted);
//  - a node's death to the survivors writing again: node 3 appends to a
//    file, node 1 makes a new file every 50 ms, node 3 is cut off the
//    network; the longest pause between node 1's files, and when the fence
//    switch was asked;
//  - metadata rates (create/stat/read/unlink) on the GFS2 root from one
//    node, then from all three at once (each in its own folder).
//
//   swift run -c release ssi-bench-gfs2 [--ssi PATH] [--files N]
//
// Needs root, qemu, a Debian kernel, debootstrap, gfs2-utils and
// dlm-controld (scripts/setup).

import Foundation
import SSIVMHarness

let seconds = Bench.seconds
func fmt(_ v: Double, _ digits: Int = 1) -> String { Bench.format(v, digits) }

@main
struct GFS2Bench {
    static func main() async {
        var values = ["files": "300"]
        let ssi = Bench.arguments(usage: "ssi-bench-gfs2 [--ssi PATH] [--files N]", values: &values)
        let files = Bench.number(values, "files")
        await Bench.run { try await run(ssi: ssi, files: files) }
    }

    /// For each guest, host seconds from its qemu start to multi-user.target
    /// and the guest's uptime then; the guests are watched at once, so each
    /// time is its own.
    static func bootTimes(_ guests: [Guest]) async throws -> [(host: Double, uptime: String)] {
        try await withThrowingTaskGroup(of: (Int, Double, String).self) { group in
            for (i, g) in guests.enumerated() {
                group.addTask {
                    let marker = try await g.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(900))
                    return (i, seconds(ContinuousClock.now - g.startedAt), String(marker.split(separator: " ").last ?? "?"))
                }
            }
            var out = [(host: Double, uptime: String)](repeating: (0, "?"), count: guests.count)
            for try await (i, host, uptime) in group { out[i] = (host, uptime) }
            return out
        }
    }

    static func run(ssi: String, files: Int) async throws {
        let kernel = VMHost.kernel!
        try await VMTest.run("bench-gfs2") { vm in
            let network = try vm.network(hostAddress: "10.77.0.254/24")
            let fence = try FenceSwitch(network: network, address: "10.77.0.254", port: 7070, password: try vm.gfs2FencePassword())
            defer { fence.stop() }
            let root = try await GFS2Root.make(in: vm, ssi: ssi, network: network)
            root.maker.kill()

            // GFS2: the three nodes start together.
            var nodes: [Guest] = []
            for n in 1...3 {
                let g = try vm.start(try root.nodeConfig(n, network: network))
                fence.attach(node: n, g)
                nodes.append(g)
            }
            let gfs2Boot = try await bootTimes(nodes)
            for g in nodes { try await g.waitForAnywhere("ABSOLUTELY NO WARRANTY") }
            for (n, b) in gfs2Boot.enumerated() { print("gfs2 node\(n + 1): multi-user \(fmt(b.host)) s after qemu started (uptime \(b.uptime) s)") }

            // Metadata rates, one node, then three at once.
            var rates: [(String, [String])] = []
            let one = try await nodes[0].run(FileRates.script(dir: "/root/bench-one", files: files), timeout: .seconds(900)).output
            rates.append(("GFS2 root, one node", one.split(separator: " ").map(String.init)))
            for (n, g) in nodes.enumerated() {
                try await g.run("sh -c '(\(FileRates.script(dir: "/root/bench-\(n + 1)", files: files).replacingOccurrences(of: "'", with: "'\\''")) > /tmp/rates 2>&1; echo RATES-$((40+2))-DONE > /dev/console) >/dev/null 2>&1 &'")
            }
            for g in nodes { try await g.waitFor(.contains("RATES-42-DONE"), timeout: .seconds(1800)) }
            for (n, g) in nodes.enumerated() {
                let r = try await g.run("cat /tmp/rates").output
                rates.append(("GFS2 root, node\(n + 1) of three at once", r.split(separator: " ").map(String.init)))
            }

            // A node's death: node 3 appends to a file; node 1 makes a new
            // file every 50 ms (each needs new cluster locks, which wait while
            // dlm and GFS2 recover). Node 3 is cut off; the longest pause
            // between node 1's files is the survivors' outage.
            try await nodes[2].run("sh -c '(while true; do echo node3 $(date +%s%N) >> /root/ticks; done) >/dev/null 2>&1 &'")
            try await nodes[0].run("mkdir -p /root/new && sh -c '(while true; do t=$(date +%s%N); echo $t > /root/new/$t; sleep 0.05; done) >/dev/null 2>&1 &'")
            try await nodes[0].run("timeout 120 sh -c 'until [ $(cat /root/ticks 2>/dev/null | wc -l) -gt 200 ]; do sleep 0.5; done'", timeout: .seconds(130))
            try await Task.sleep(for: .seconds(3))
            try network.exec(["ip", "link", "set", "tap2", "down"])
            let cut = ContinuousClock.now
            _ = try await fence.waitUntilFenced(node: 3, timeout: .seconds(300))
            let fencedAfter = fence.events.first { $0.request == "off 3" }.map { seconds($0.at - cut) }
            try await Task.sleep(for: .seconds(20))
            let gap = try await nodes[0].run("ls /root/new | sort -n | awk 'NR>1 { d=$1-p; if (d>m) m=d } { p=$1 } END { printf \"%.2f\", m/1e9 }'",
                                             timeout: .seconds(60)).output
            for g in nodes { g.kill() }

            // CFS on the same three VMs: node 1 serves its Debian disk, nodes
            // 2 and 3 boot from the network.
            // Its own identities: the GFS2 half's (the nodes' TPMs) and
            // its sealed key belong to the other cluster.
            for f in ["identities", "sealed-keys"] { try? FileManager.default.removeItem(atPath: vm.path(f)) }
            let cfsConf = try vm.exampleCFSConfig(authkey: root.authkey)
            let (netboot, own, etc) = try vm.cfsImages(ssi: ssi, config: cfsConf, authkey: root.authkey, kernel: kernel,
                                                       enrolled: [2, 3])
            let debian = vm.path("cfs-debian.img")
            let uuid = "0de0de0d-6666-4222-8333-444455556666"
            try Command.run([VMHost.packageRoot + "/initramfs/testroot/mkdebian.sh", debian, "--uuid", uuid,
                             "--size", "1500M", "--copy", netboot + ":/srv/ssi/netboot", "--copy", etc + ":/etc/ssi"],
                            timeout: .seconds(900))
            var c1 = GuestConfig(name: "cfs-node1", initrd: own, kernelArguments: ["root=UUID=\(uuid)", "ro", "ssi.quorum_wait=5"])
            c1.memoryMB = 640
            c1.disks = [Disk(debian, snapshot: true)]
            c1.nics = [try network.addNIC(mac: Cluster.mac(node: 1))]
            let init1 = try vm.start(c1)
            let initBoot = try await bootTimes([init1])
            var diskless: [Guest] = []
            for n in 2...3 {
                var c = GuestConfig(name: "cfs-node\(n)")
                c.networkBoot = true
                c.memoryMB = 512
                c.disks = [Disk(vm.identityDisk(node: n), snapshot: true)]
                c.nics = [try network.addNIC(mac: Cluster.mac(node: n))]
                diskless.append(try vm.start(c))
            }
            let disklessBoot = try await bootTimes(diskless)
            let cfsBoot = initBoot + disklessBoot

            print("\nGFS2 benchmark: qemu TCG guests (512 MB, 1 vCPU each; CFS init node 640 MB) on \(ProcessInfo.processInfo.activeProcessorCount) host cores; kernel \(kernel.version)\n")
            print("| boot to multi-user.target, host s from qemu start (guest uptime) | node1 | node2 | node3 |")
            print("|---|---|---|---|")
            func row(_ b: [(host: Double, uptime: String)]) -> String { b.map { "\(fmt($0.host)) (\($0.uptime))" }.joined(separator: " | ") }
            print("| GFS2 root, three nodes started together | \(row(gfs2Boot)) |")
            print("| CFS root: node1 serves its disk, then nodes 2 and 3 network-boot together | \(row(cfsBoot)) |")
            let gMean = gfs2Boot.map(\.host).reduce(0, +) / 3, cMean = cfsBoot.map(\.host).reduce(0, +) / 3
            print("| mean; GFS2 / CFS | \(fmt(gMean)) vs \(fmt(cMean)): \(fmt(gMean / cMean, 2))x | | |")
            let cfsCluster = initBoot[0].host + (disklessBoot.map(\.host).max() ?? 0)
            print("\nwhole cluster up (last node at multi-user, host s): GFS2 \(fmt(gfs2Boot.map(\.host).max() ?? 0)), CFS \(fmt(cfsCluster)) (the diskless nodes start once the init node is up)")
            print("\nnode 3 cut off the network while it appends to a file and node 1 makes a file every 50 ms: fence switch asked \(fencedAfter.map { fmt($0) + " s" } ?? "never") after the cut (corosync token 3000 ms + consensus, then dlm); node 1's longest pause between new files \(gap) s")
            print("\nfile rates, \(files) files of 100 bytes, operations per second (perl, one process per phase)")
            print("| where | create | stat | read | unlink |")
            print("|---|---|---|---|---|")
            for (k, v) in rates where v.count == 4 { print("| \(k) | \(v.joined(separator: " | ")) |") }
        }
    }
}
