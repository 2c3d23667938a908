// The demo behind scripts/demo: one cluster configuration, one ssi image,
// N qemu nodes (TCG) on a network namespace made for the demo, each with
// its own small root disk. Every node finds itself by MAC, joins the
// corosync cluster in its initramfs, waits for quorum, mounts its root and
// hands off; then node 1 shows the cluster as `ssi cluster status` sees it.
//
//   swift run ssi-demo [--nodes N] [--ssi PATH] [--keep]
//
// Built on the VM test harness: the namespace, taps, guests and scratch
// files are removed at the end (--keep, or SSI_KEEP_VM=1, keeps them).

import Foundation
import SSIVMHarness

func say(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }

@main
struct Demo {
    static func main() async {
        var nodes = 3
        var ssi = VMHost.packageRoot + "/.build/release/ssi"
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            switch a {
            case "--nodes": nodes = Int(args.popFirst() ?? "") ?? 0
            case "--ssi": ssi = args.popFirst() ?? ssi
            case "--keep": setenv("SSI_KEEP_VM", "1", 1)
            default:
                say("usage: ssi-demo [--nodes N] [--ssi PATH] [--keep]")
                exit(2)
            }
        }
        guard (2...9).contains(nodes) else { say("ssi-demo: --nodes must be 2...9"); exit(2) }
        if let reason = VMHost.skipReason { say("ssi-demo: cannot run: \(reason)"); exit(2) }
        guard FileManager.default.isExecutableFile(atPath: ssi) else { say("ssi-demo: no ssi binary at \(ssi): run scripts/build"); exit(2) }
        do {
            try await run(nodes: nodes, ssi: ssi)
        } catch {
            say("ssi-demo: failed: \(error)")
            exit(1)
        }
    }

    static func run(nodes: Int, ssi: String) async throws {
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
