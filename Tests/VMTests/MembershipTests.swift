// Cluster membership in the initramfs: three qemu nodes on a test-made
// network boot one image built from one cluster configuration, form a
// quorate corosync cluster before their roots are mounted, and keep it
// after the hand-off. One boot of the cluster, many assertions.

import Foundation
import SSIVMHarness
import Testing

let clusterSkipReason: String? = VMHost.skipReason

/// The example CFS configuration (configs/cfs-3node.conf) with the test's
/// key, and one configured agent: a busybox shell that says it started in
/// /run and then stays. Without its `[tunnel]`: these boots test membership
/// on the plain cluster network, with images that carry the key and no
/// node identities (the tunnel is tested in the CFS and tools boots).
func testClusterConfig(_ vm: VMTest, authkey: String) throws -> String {
    var text = try String(contentsOfFile: VMHost.packageRoot + "/configs/cfs-3node.conf", encoding: .utf8)
    text = text.replacingOccurrences(of: "authkey = \"/etc/ssi/authkey\"", with: "authkey = \"\(authkey)\"")
    guard let start = text.range(of: "\n[tunnel]\n"), let end = text.range(of: "\n[[node]]", range: start.upperBound..<text.endIndex) else {
        throw HarnessError("configs/cfs-3node.conf has no [tunnel] section before its nodes to take out")
    }
    text.removeSubrange(start.lowerBound..<end.lowerBound)
    text += """

        [[agent]]
        name = "probe"
        command = ["/usr/bin/busybox", "sh", "-c", "echo $SSI_AGENT up > /run/ssi-agent-probe; while :; do /usr/bin/busybox sleep 3600; done"]

        """
    let path = vm.path("cluster.conf")
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// `ssi cluster ...` inside a booted test root: the root is busybox only,
/// so the command runs in the daemons' root that ssi-init prepared.
func ssiCluster(_ guest: Guest, _ args: String, expectStatus: Int32? = 0) async throws -> ShellResult {
    try await guest.run("chroot /run/ssi/root /usr/bin/ssi cluster \(args)", timeout: .seconds(60), expectStatus: expectStatus)
}

/// Polls `ssi cluster status` on `guest` until `line` (node N ... STATE)
/// appears; returns the seconds it took.
func waitForStatus(_ guest: Guest, node: Int, state: String, timeout: Double) async throws -> Double {
    let started = ContinuousClock.now
    while true {
        let out = try await ssiCluster(guest, "status", expectStatus: nil).output
        let row = out.split(separator: "\n").first { $0.split(separator: " ").first.map { $0.hasPrefix("\(node)") } == true }
        if let row, row.split(separator: " ").contains(Substring(state)) {
            let d = ContinuousClock.now - started
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        if ContinuousClock.now - started > .seconds(timeout) {
            Issue.record("node \(node) not \(state) on \(guest.name) after \(timeout) s:\n\(out)")
            return timeout
        }
        try await Task.sleep(for: .seconds(1))
    }
}

extension VM {
    @Suite struct MembershipTests {
        @Test("three nodes form a quorate cluster before their roots; a dead node is seen gone and rejoins; a wrong key stays out",
              .enabled(if: clusterSkipReason == nil, Comment(rawValue: clusterSkipReason ?? "")),
              .timeLimit(.minutes(15)))
        func threeNodes() async throws {
            let ssi = try SSIBinary.require()
            try await VMTest.run("membership") { vm in
                let key = vm.path("authkey"), otherKey = vm.path("authkey.other")
                try Command.run([ssi, "cluster", "keygen", "-o", key])
                try Command.run([ssi, "cluster", "keygen", "-o", otherKey])
                let conf = try testClusterConfig(vm, authkey: key)
                let kver = VMHost.kernel!.version
                let good = vm.path("node.img"), wrong = vm.path("wrongkey.img")
                let built = try Command.run([ssi, "mkinitrd", "--config", conf, "--kver", kver, "-o", good], timeout: .seconds(300))
                #expect(built.stdout.contains("holds the cluster key"), "\(built.stdout)")
                let mode = try FileManager.default.attributesOfItem(atPath: good)[.posixPermissions] as? Int
                #expect(mode == 0o600, "an image with the key is not world-readable")
                try Command.run([ssi, "mkinitrd", "--config", conf, "--authkey", otherKey, "--kver", kver, "-o", wrong, "-q"],
                                timeout: .seconds(300))

                let roots = try (1...3).map { try vm.rootDisk(name: "root\($0)", label: "node\($0)") }
                let cluster = try Cluster(in: vm, nodes: 3) { n, c in
                    c.initrd = good
                    c.disks = [Disk(roots[n - 1].path)]
                    c.kernelArguments = [roots[n - 1].rootByUUID, "ro", RootDisk.Marker.shellArgument]
                }
                // Each node found itself by MAC, configured its interface,
                // and was quorate before it mounted its root.
                let network = try await cluster.waitAll(for: SSIInit.step("network", "this is node"), timeout: .seconds(240),
                                                        failOn: SSIInit.failFast)
                for n in 1...3 {
                    #expect(network[n - 1].contains("node \(n) (node\(n), by MAC)"), "\(network[n - 1])")
                    #expect(network[n - 1].contains("10.77.0.\(n)/24"))
                }
                try await cluster.waitAll(for: SSIInit.step("membership", "quorate"), timeout: .seconds(240), failOn: SSIInit.failFast)
                try await cluster.waitAll(for: SSIInit.step("root", "mounted"), timeout: .seconds(60), failOn: SSIInit.failFast)
                try await cluster.waitAll(for: .exactly(RootDisk.Marker.shell), timeout: .seconds(60))

                // After the hand-off: corosync and the agent still run, and
                // every node sees the same quorate 3-node view.
                for n in 1...3 {
                    let g = cluster.node(n)
                    let status = try await ssiCluster(g, "status").output
                    #expect(status.contains("Cluster ssi: 3 nodes, 3 members, quorate"), "node\(n):\n\(status)")
                    #expect(status.contains("expected votes 3"), "\(status)")
                    let _ = try await waitForStatus(g, node: n, state: "UP", timeout: 30)
                    #expect(try await ssiCluster(g, "node-num").output == "\(n)")
                    #expect(try await g.run("hostname").output == "node\(n)")
                    let procs = try await g.run("for p in /proc/[0-9]*; do cat $p/cmdline; echo; done | tr '\\0' ' '",
                                                expectStatus: nil).output
                    #expect(procs.contains("@/usr/sbin/corosync -f") && procs.contains("@/usr/bin/ssi cluster agent"), "\(procs)")
                    // The configured agent started in the initramfs and
                    // survived the hand-off.
                    #expect(procs.contains("@/usr/bin/busybox sh -c"), "\(procs)")
                    #expect(try await g.run("cat /run/ssi-agent-probe").output == "probe up")
                }
                // qemu's serial log file has doubled a byte now and then
                // on a loaded host ("name"::"node3" broke a fresh-clone CI
                // run's parse; the guest printed it once): read again, up to 3
                // times, saying so, before the parse's error counts.
                var json = "", parsed: [String: Any]?
                for attempt in 1...3 {
                    json = try await ssiCluster(cluster.node(1), "status --json").output
                    do {
                        parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
                        break
                    } catch where attempt < 3 {
                        log("status --json did not parse as read from the serial log (\(error)); reading it again: \(json)")
                    }
                }
                #expect(parsed?["quorate"] as? Bool == true)
                let states = (parsed?["nodes"] as? [[String: Any]])?.compactMap { $0["state"] as? String }
                #expect(states == ["UP", "UP", "UP"], "\(json)")
                #expect((parsed?["nodes"] as? [[String: Any]])?.first?["role"] as? String == "init")

                // Hooks run in the system's root when nodes come and go.
                let node1 = cluster.node(1)
                try await node1.run("mount -t tmpfs tmpfs /etc && mkdir -p /etc/ssi/hooks.d && "
                    + "printf '#!/bin/busybox sh\\necho \"$1 $2 $SSI_NODE_NAME\" >> /run/hooks.log\\n' > /etc/ssi/hooks.d/10-log && "
                    + "chmod +x /etc/ssi/hooks.d/10-log")

                // Node 3 dies: the others see it gone within corosync's
                // token timeout (3 s, plus consensus) and keep quorum.
                cluster.node(3).kill()
                let noticed = try await waitForStatus(node1, node: 3, state: "DOWN", timeout: 30)
                log("node 3 seen DOWN on node1 \(noticed) s after it was killed (token timeout 3 s)")
                #expect(noticed < 15)
                let after = try await ssiCluster(node1, "status").output
                #expect(after.contains("2 members, quorate"), "\(after)")
                #expect(try await node1.run("cat /run/hooks.log").output.contains("down 3 node3"))

                // Node 3 with another key: it cannot decrypt the cluster's
                // traffic, stays alone, says why, and nobody sees it.
                var bad = cluster.node(3).config
                bad.name = "node3-wrongkey"
                bad.initrd = wrong
                bad.kernelArguments += ["ssi.quorum_wait=25"]
                let intruder = try vm.start(bad)
                let refused = try await intruder.waitFor(SSIInit.error("membership", "no quorum after 25 s"), timeout: .seconds(240))
                #expect(refused.contains("members: node3 (3)"), "\(refused)")
                #expect(refused.contains("authkey"), "the message names the likely cause: \(refused)")
                // In the initramfs's emergency shell, ssi-cluster shows where
                // this node is stuck.
                try await intruder.waitFor(SSIInit.step("emergency"), timeout: .seconds(30))
                let stuck = try await intruder.run("ssi cluster status", timeout: .seconds(60)).output
                #expect(stuck.contains("1 members, NOT quorate"), "\(stuck)")
                #expect(stuck.split(separator: "\n").contains { $0.contains("3*") && $0.contains("COMINGUP") && $0.contains("membership") },
                        "\(stuck)")
                let meanwhile = try await ssiCluster(node1, "status").output
                #expect(meanwhile.contains("2 members, quorate"), "\(meanwhile)")
                intruder.kill()

                // Node 3 again with the right key: it rejoins.
                var again = cluster.node(3).config
                again.name = "node3-again"
                let back = try vm.start(again)
                try await back.waitFor(SSIInit.step("membership", "quorate"), timeout: .seconds(240), failOn: SSIInit.failFast)
                let rejoined = try await waitForStatus(node1, node: 3, state: "UP", timeout: 90)
                log("node 3 UP again on node1 after \(rejoined) s")
                #expect(try await ssiCluster(node1, "status").output.contains("3 members, quorate"))
                #expect(try await node1.run("cat /run/hooks.log").output.contains("up 3 node3"))
            }
        }

        @Test("ssi-mkinitrd refuses an invalid cluster configuration, naming file, line and field",
              .enabled(if: bootSkipReason == nil, Comment(rawValue: bootSkipReason ?? "")))
        func invalidConfigRefused() throws {
            let ssi = try SSIBinary.require()
            let dir = NSTemporaryDirectory() + "ssi-badconf-\(getpid())"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            var text = try String(contentsOfFile: VMHost.packageRoot + "/configs/cfs-3node.conf", encoding: .utf8)
            text = text.replacingOccurrences(of: "mac = \"52:54:00:00:00:03\"", with: "mac = \"52:54:00:00:00:02\"")
            let conf = dir + "/cluster.conf"
            try text.write(toFile: conf, atomically: true, encoding: .utf8)
            let out = dir + "/img"
            let r = try Command.run([ssi, "mkinitrd", "--config", conf, "--kver", VMHost.kernel!.version, "-o", out],
                                    timeout: .seconds(120), check: false)
            #expect(r.status != 0)
            // The duplicate is node 3's line; the message names it and node 2.
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let dup = lines.indices.filter { lines[$0].hasPrefix("mac = \"52:54:00:00:00:02\"") }.last! + 1
            #expect(r.stderr.contains("\(conf):\(dup):"), "names file and line \(dup): \(r.stderr)")
            #expect(r.stderr.contains("mac"), "\(r.stderr)")
            #expect(r.stderr.contains("node2") || r.stderr.contains("node 2"), "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "no image is written")
        }
    }
}

extension VM.MembershipTests {
    @Test("the hand-off to systemd: the CFS init node goes on alone, a late node joins; corosync and the agent survive the hand-off, the distro's corosync.service stays off, the cluster view works in the booted Debian",
          .enabled(if: clusterSkipReason == nil, Comment(rawValue: clusterSkipReason ?? "")),
          .timeLimit(.minutes(20)))
    func handOffToSystemd() async throws {
        let ssi = try SSIBinary.require()
        try await VMTest.run("systemd") { vm in
            let key = vm.path("authkey")
            try Command.run([ssi, "cluster", "keygen", "-o", key])
            let conf = try testClusterConfig(vm, authkey: key)
            let image = vm.path("node.img")
            try Command.run([ssi, "mkinitrd", "--config", conf, "--kver", VMHost.kernel!.version, "-o", image, "-q"],
                            timeout: .seconds(300))
            // A Debian 12 root with systemd and the distro's own corosync
            // package enabled (built once, cached in /var/cache/ssi-test).
            let debian = vm.path("debian.img")
            let uuid = "0de0de0d-1111-4222-8333-444455556666"
            try Command.run([VMHost.packageRoot + "/initramfs/testroot/mkdebian.sh", debian, "--uuid", uuid],
                            timeout: .seconds(900))
            // Node 1 (the CFS init node) boots alone: after a short quorum
            // wait it goes on without quorum, by the CFS policy. Node 2
            // joins later; with 2 of 3 votes both are quorate.
            func configure(_ c: inout GuestConfig) {
                c.initrd = image
                c.memoryMB = 512
                c.disks = [Disk(debian, snapshot: true)]
                c.kernelArguments = ["root=UUID=\(uuid)", "rw"]
                c.timeLimit = .seconds(1200)
            }
            let cluster = try Cluster(in: vm, nodes: 1) { _, c in
                configure(&c)
                c.kernelArguments += ["ssi.quorum_wait=5"]
            }
            let node1 = cluster.node(1)
            let alone = try await node1.waitFor(.containsInOrder("ssi-init:", "membership:", "WARNING:", "no quorum after 5 s"),
                                                timeout: .seconds(300), failOn: SSIInit.failFast)
            #expect(alone.contains("going on without quorum (on_timeout = continue for node1)"), "\(alone)")
            try await node1.waitFor(SSIInit.step("switch-root", "handing off"), timeout: .seconds(120), failOn: SSIInit.failFast)
            var second = GuestConfig(name: "node2")
            configure(&second)
            second.nics = [try cluster.network.addNIC(mac: Cluster.mac(node: 2))]
            let node2 = try vm.start(second)
            try await node2.waitFor(SSIInit.step("membership", "quorate"), timeout: .seconds(300), failOn: SSIInit.failFast)
            let nodes = [node1, node2]
            for g in nodes {
                let reached = try await g.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(900))
                log("\(g.name): \(reached)")
                try await g.waitForAnywhere("ABSOLUTELY NO WARRANTY")
            }

            for (i, g) in nodes.enumerated() {
                let n = i + 1
                #expect(try await g.run("hostname", timeout: .seconds(60)).output == "node\(n)")
                // The distro's corosync.service is masked for this boot; the
                // one corosync is ours, started in the initramfs.
                #expect(try await g.run("systemctl is-enabled corosync.service", expectStatus: nil).output == "masked-runtime")
                #expect(try await g.run("systemctl is-active corosync.service", expectStatus: nil).output == "inactive")
                let corosyncs = try await g.run("ps -o args= -C corosync", expectStatus: nil).output
                #expect(corosyncs == "@/usr/sbin/corosync -f", "exactly our corosync runs: \(corosyncs)")
                let agent = try await g.run("ps -o args= -C ssi", expectStatus: nil).output
                #expect(agent.contains("@/usr/bin/ssi cluster agent"), "\(agent)")
                let status = try await g.run("chroot /run/ssi/root /usr/bin/ssi cluster status", timeout: .seconds(60)).output
                #expect(status.contains("Cluster ssi: 3 nodes, 2 members, quorate"), "node\(n):\n\(status)")
                #expect(status.contains("init") && status.contains("diskless"), "roles from the configuration:\n\(status)")
                let members = try await g.run("grep '^node' /run/ssi/members").output
                #expect(members.contains("node 1 UP") && members.contains("node 2 UP"), "\(members)")
            }
            // A clean power-off of node 2 with the daemons still running
            // (systemd spares "@" processes); node 1 sees it leave.
            try node2.send("systemctl poweroff\n")
            #expect(try await node2.waitForExit(timeout: .seconds(300)) == 0)
            let _ = try await waitForStatus(node1, node: 2, state: "DOWN", timeout: 60)
        }
    }
}
