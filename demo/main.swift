// The demo behind scripts/demo: what ssi is for, on this machine, in qemu
// (TCG) on a network namespace made for it.
//
// The default shows the whole mission: the ssi package installed in a
// Debian root; an init node that boots it from its disk and serves it;
// two diskless nodes that PXE-boot from it into the cluster, their boot
// stages shown as they come; a cluster mount done on one node and seen on
// all; a process moved to another node with its pipe still at home; then
// one node killed and the cluster going on. `--membership` is the short
// demo: N nodes, each with its own small disk, join one cluster from one
// image and hand off.
//
//   swift run ssi-demo [--ssi PATH] [--deb PATH] [--keep]
//   swift run ssi-demo --membership [--nodes N] [--ssi PATH] [--keep]
//
// Built on the VM test harness: the namespace, taps, guests and scratch
// files are removed at the end (--keep, or SSI_KEEP_VM=1, keeps them).

import Foundation
import SSIVMHarness

func say(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }

/// "[3/7] ..." with the time since the demo started and since the last
/// step, so that a newcomer sees where the minutes go.
final class Progress: @unchecked Sendable {
    let total: Int
    let started = ContinuousClock.now
    var stepStarted = ContinuousClock.now
    var step = 0
    var timings: [(String, Duration)] = []
    var current = ""

    init(total: Int) { self.total = total }

    func next(_ what: String) {
        finishStep()
        step += 1
        current = what
        stepStarted = ContinuousClock.now
        say("\n[\(step)/\(total)] \(what)   (at \(Self.format(ContinuousClock.now - started)))")
    }

    func finishStep() {
        if step > 0 { timings.append((current, ContinuousClock.now - stepStarted)) }
    }

    static func format(_ d: Duration) -> String {
        let s = Int(d.components.seconds)
        return s >= 60 ? "\(s / 60) min \(s % 60) s" : "\(s) s"
    }
}

@main
struct Demo {
    static func main() async {
        var nodes = 3
        var membershipOnly = false
        var ssi = VMHost.packageRoot + "/.build/release/ssi"
        var deb: String?
        var args = CommandLine.arguments.dropFirst()
        let usage = "usage: ssi-demo [--ssi PATH] [--deb PATH] [--keep]\n       ssi-demo --membership [--nodes N] [--ssi PATH] [--keep]"
        while let a = args.popFirst() {
            switch a {
            case "--nodes": nodes = Int(args.popFirst() ?? "") ?? 0
            case "--membership": membershipOnly = true
            case "--ssi": ssi = args.popFirst() ?? ssi
            case "--deb": deb = args.popFirst()
            case "--keep": setenv("SSI_KEEP_VM", "1", 1)
            case "-h", "--help": say(usage); exit(0)
            default:
                say("ssi-demo: unknown argument '\(a)'\n\(usage)")
                exit(2)
            }
        }
        guard (2...9).contains(nodes) else { say("ssi-demo: --nodes must be 2...9"); exit(2) }
        if let reason = VMHost.skipReason { say("ssi-demo: cannot run: \(reason)"); exit(2) }
        guard FileManager.default.isExecutableFile(atPath: ssi) else { say("ssi-demo: no ssi binary at \(ssi): run scripts/build"); exit(2) }
        if let deb, !FileManager.default.isReadableFile(atPath: deb) {
            say("ssi-demo: --deb \(deb): no such file (scripts/build-deb makes it)")
            exit(2)
        }
        do {
            if membershipOnly {
                try await membership(nodes: nodes, ssi: ssi)
            } else {
                try await mission(ssi: ssi, deb: deb)
            }
        } catch {
            say("ssi-demo: failed: \(error)")
            exit(1)
        }
    }

    // MARK: The whole mission

    static func mission(ssi: String, deb: String?) async throws {
        let p = Progress(total: 7)
        let inDistro = ToolsCluster.ssi
        try await VMTest.run("demo") { vm in
            p.next("the cluster's image and netboot folder, the init node's Debian disk"
                   + (deb != nil ? " with the ssi package installed in it" : "") + ", and node1's boot from it")
            if !FileManager.default.fileExists(atPath: "/var/cache/ssi-test/debian-root") {
                say("      first run: debootstrap builds a Debian 12 root from the archive and caches it in /var/cache/ssi-test (several minutes, once)")
            }
            say("      scratch folder and serial logs: \(vm.directory)")
            let cluster = try await ToolsCluster.boot(in: vm, ssi: ssi, kernel: VMHost.kernel!, deb: deb,
                                                      files: MigrationPrograms.all, memoryMB: 1024)
            let node1 = cluster.node1
            p.next("node1, the init node, is in the cluster and serves the root (NFSv4) and PXE")
            for line in node1.lines where line.hasPrefix("ssi-init:") && (line.contains("] cfs-server:") || line.contains("] membership:")) {
                say("      " + line)
            }
            say(try await node1.run("\(inDistro) cluster status", timeout: .seconds(60)).output.indented)

            p.next("node2 and node3 boot from the network, diskless; their stages as node1 sees them")
            let node2 = try cluster.startDiskless(2, in: vm)
            let node3 = try cluster.startDiskless(3, in: vm)
            var shown = 0
            let deadline = ContinuousClock.now + .seconds(900)
            while ContinuousClock.now < deadline {
                let log = try await node1.run("cat /run/ssi/stages.log 2>/dev/null", timeout: .seconds(60), expectStatus: nil).output
                let lines = log.split(separator: "\n").map(String.init)
                // "UPTIME node N STATE STAGE", as node1's agent logs them.
                for line in lines.dropFirst(shown) where line.contains(" node 2 ") || line.contains(" node 3 ") {
                    say("      " + line)
                }
                shown = lines.count
                if node2.lines.contains(where: { $0.contains("SSI-TEST multi-user") })
                    && node3.lines.contains(where: { $0.contains("SSI-TEST multi-user") }) { break }
                try await Task.sleep(for: .seconds(5))
            }
            try await ToolsCluster.waitUp(node2)
            try await ToolsCluster.waitUp(node3)
            say(try await node1.run("\(inDistro) cluster status", timeout: .seconds(60)).output.indented)

            p.next("a cluster mount: node1's data disk mounted once, seen on every node")
            say("      node1# ssi mount LABEL=ssi-data /mnt/data")
            say(try await node1.run("\(inDistro) mount LABEL=ssi-data /mnt/data", timeout: .seconds(120)).output.indented)
            try await node2.run("echo written-on-node2 > /mnt/data/hello")
            for g in [node1, node2, node3] {
                let fs = try await g.run("findmnt -n -o SOURCE,FSTYPE /mnt/data").output
                let text = try await g.run("cat /mnt/data/hello").output
                say("      \(g.name): /mnt/data is \(fs); hello says \(text)")
            }

            p.next("a process moves from node1 to node2; its output pipe stays at home on node1")
            try await node1.run("rm -f /root/counter.log; (ssi-counter </dev/null 2>/dev/null | cat > /tmp/reader.out &)")
            try await Task.sleep(for: .seconds(3))
            let counter = try await node1.run("pgrep -f ssi-counter | head -1").output
            say("      ssi-counter is PID \(counter), on node \(try await node1.run("\(inDistro) where_pid \(counter)", timeout: .seconds(30)).output)")
            say("      node1# ssi migrate -t \(counter) 2")
            let moved = try await node1.run("\(inDistro) migrate -t \(counter) 2 2>&1", timeout: .seconds(300), expectStatus: nil)
            say(moved.output.indented)
            guard moved.status == 0 else { throw DemoError("the migration failed (exit \(moved.status))") }
            try await Task.sleep(for: .seconds(4))
            say("      now on node \(try await node1.run("\(inDistro) where_pid \(counter)", timeout: .seconds(30)).output); "
                + "node2 runs it: \(try await node2.run("cat /proc/\(counter)/comm").output)")
            let before = try await node1.run("tail -n 1 /tmp/reader.out").output
            try await Task.sleep(for: .seconds(3))
            let after = try await node1.run("tail -n 1 /tmp/reader.out").output
            say("      node1's reader of its pipe: '\(before)', 3 s later '\(after)'")
            say("      where each count was made (the counter writes its node): "
                + (try await node1.run("tail -n 2 /root/counter.log | tr '\\n' ' '").output))
            try await node2.run("kill \(counter)")

            p.next("node3 is killed (its qemu ends); the cluster goes on")
            node3.kill()
            var status = ""
            for _ in 0..<60 {
                status = try await node1.run("\(inDistro) cluster status", timeout: .seconds(60)).output
                if status.contains("2 members") { break }
                try await Task.sleep(for: .seconds(2))
            }
            say(status.indented)
            try await node1.run("echo still-here > /mnt/data/after")
            say("      node2 reads what node1 wrote after the loss: \(try await node2.run("cat /mnt/data/after").output)")

            p.next("stopping the nodes' qemu, the diskless node first, the init node last; cleaning up")
            node2.kill()
            node1.kill()
            p.finishStep()
            say("\n== done in \(Progress.format(ContinuousClock.now - p.started)): where the time went")
            for (what, d) in p.timings {
                say("   \(Progress.format(d).padding(toLength: 12, withPad: " ", startingAt: 0)) \(what)")
            }
            say("   (qemu runs in software emulation here; on KVM the boots take seconds)")
        }
    }

    // MARK: The short membership demo

    static func membership(nodes: Int, ssi: String) async throws {
        try await VMTest.run("demo") { vm in
            let kver = VMHost.kernel!.version
            let key = vm.path("authkey")
            try Command.run([ssi, "cluster", "keygen", "-o", key])
            var conf = """
                [cluster]
                name = "demo"
                authkey = "\(key)"

                [network]
                prefix = "10.77.0.0/24"

                [root]
                type = "cfs"
                server = 1

                """
            for n in 1...nodes {
                conf += "\n[[node]]\nnumber = \(n)\nname = \"node\(n)\"\nmac = \"\(Cluster.mac(node: n))\"\n"
                conf += "address = \"10.77.0.\(n)\"\nrole = \"\(n == 1 ? "init" : "member")\"\n"
            }
            let confPath = vm.path("cluster.conf")
            try conf.write(toFile: confPath, atomically: true, encoding: .utf8)
            say("== cluster configuration (\(confPath))")
            say(try Command.run([ssi, "cluster", "config", "check", confPath]).stdout.trimmingCharacters(in: .newlines))
            say("== ssi mkinitrd --config for \(kver)")
            let image = vm.path("initrd.img")
            say(try Command.run([ssi, "mkinitrd", "--config", confPath, "--kver", kver, "-o", image],
                                timeout: .seconds(300)).stdout.trimmingCharacters(in: .newlines))
            say("== booting \(nodes) nodes in qemu (TCG) on a bridge in network namespace; serial logs in \(vm.directory)")
            let roots = try (1...nodes).map { try vm.rootDisk(name: "root\($0)", label: "node\($0)") }
            let cluster = try Cluster(in: vm, nodes: nodes) { n, c in
                c.initrd = image
                c.disks = [Disk(roots[n - 1].path)]
                c.kernelArguments = [roots[n - 1].rootByUUID, "ro", "quiet", RootDisk.Marker.shellArgument]
            }
            try await cluster.waitAll(for: .exactly(RootDisk.Marker.shell), timeout: .seconds(300),
                                      failOn: Guest.defaultFailOn + [.containsInOrder("ssi-init:", "ERROR:")])
            for g in cluster.guests {
                say("-- \(g.name)")
                for line in g.lines where line.hasPrefix("ssi-init:") || line.hasPrefix("SSI-TEST real-init") {
                    say("   " + line)
                }
            }
            say("== node1: ssi cluster status")
            let status = try await cluster.node(1).run("chroot /run/ssi/root /usr/bin/ssi cluster status", timeout: .seconds(60))
            say(status.output)
            cluster.shutdown()
            say("== done: \(nodes) nodes joined one cluster from one ssi image, then handed off to their real init")
        }
    }
}

struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension String {
    /// Each line indented under a progress line.
    var indented: String {
        split(separator: "\n", omittingEmptySubsequences: false).map { "      " + $0 }.joined(separator: "\n")
    }
}
