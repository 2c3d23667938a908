// The GFS2 root, for real: one raw disk attached to three qemu guests
// (locking off, shared writes on). A fourth guest, booted from a local
// Debian disk, makes the shared root with `ssi cluster root create`; then
// the three nodes boot from it with corosync, dlm_controld and lock_dlm,
// and a fence switch in the test namespace cuts off the node the survivors
// fence. One boot of the cluster, many assertions.

import Foundation
import SSIVMHarness
import Testing

extension VM {
    @Suite struct GFS2Tests {
        @Test("GFS2: a shared root made by ssi cluster root create; three nodes boot from it to multi-user; coherence and concurrent appends; a partitioned node is fenced (its qemu killed by the fence switch), its journal replayed, and it boots back in; a wrong key, a wrong lock table and a missing journal are refused with their cause; the file system checks clean",
              .enabled(if: clusterSkipReason == nil, Comment(rawValue: clusterSkipReason ?? "")),
              .timeLimit(.minutes(35)))
        func sharedDiskCluster() async throws {
            let ssi = try SSIBinary.require()
            let kernel = VMHost.kernel!
            try await VMTest.run("gfs2") { vm in
                let key = vm.path("authkey")
                try Command.run([ssi, "cluster", "keygen", "-o", key])
                let conf = try vm.exampleGFS2Config(authkey: key)
                let image = vm.path("cluster.img")
                try Command.run([ssi, "mkinitrd", "--config", conf, "--kver", kernel.version, "-o", image], timeout: .seconds(300))
                let listing = try Command.run([ssi, "mkinitrd", "--list", image], timeout: .seconds(60)).stdout
                for f in ["usr/sbin/dlm_controld", "usr/sbin/dlm_tool", "etc/dlm/dlm.conf", "usr/sbin/fence_ssi -> ../bin/ssi", "gfs2.ko"] {
                    #expect(listing.contains(f), "the image carries \(f)")
                }
                // The maker: Debian on its own disk, with ssi and the
                // cluster's configuration, the gfs2 module loaded by its
                // initramfs (the test root has no kernel package).
                let maker = vm.path("maker.img")
                try Command.run([ssi, "mkinitrd", "--kver", kernel.version, "-o", maker, "--force-modules", "gfs2"], timeout: .seconds(300))
                let etc = vm.path("etc-ssi")
                try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: key, toPath: etc + "/authkey")
                try String(contentsOfFile: conf, encoding: .utf8)
                    .replacingOccurrences(of: "authkey = \"\(key)\"", with: "authkey = \"/etc/ssi/authkey\"")
                    .write(toFile: etc + "/cluster.conf", atomically: true, encoding: .utf8)
                let debian = vm.path("debian.img")
                let uuid = "0de0de0d-5555-4222-8333-444455556666"
                try Command.run([VMHost.packageRoot + "/initramfs/testroot/mkdebian.sh", debian, "--uuid", uuid, "--size", "1500M",
                                 "--copy", ssi + ":/usr/local/sbin/ssi", "--copy", etc + ":/etc/ssi"], timeout: .seconds(900))
                let shared = try vm.blankDisk(name: "shared", megabytes: 2048)

                let network = try vm.network(hostAddress: "10.77.0.254/24")
                let fence = try FenceSwitch(network: network, address: "10.77.0.254", port: 7070)
                defer { fence.stop() }

                var m = GuestConfig(name: "maker", initrd: maker, kernelArguments: ["root=UUID=\(uuid)", "ro"])
                m.memoryMB = 640
                m.disks = [Disk(debian, snapshot: true), Disk(shared, shared: true)]
                let makerGuest = try vm.start(m)
                try await makerGuest.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600))
                try await makerGuest.waitForAnywhere("ABSOLUTELY NO WARRANTY")
                // --spare-journals 0: three journals, so that a fourth node
                // finds none until one is added.
                let created = try await makerGuest.run("ssi cluster root create --gfs2 /dev/vdb --from / --spare-journals 0 --journal-size 32 2>&1",
                                                       timeout: .seconds(1200)).output
                log("root create: \(created.split(separator: "\n").last ?? "")")
                #expect(created.contains("is the GFS2 root of cluster ssi: lock table ssi:root, 3 journals of 32 MiB"), "\(created)")
                let again = try await makerGuest.run("ssi cluster root create --gfs2 /dev/vdb --from / 2>&1", timeout: .seconds(60), expectStatus: 1).output
                #expect(again.contains("holds a gfs2 file system labelled \"ssi:root\"") && again.contains("--force"), "\(again)")
                try await makerGuest.run("sync")
                makerGuest.kill()

                // The cluster: the shared disk is each node's only disk.
                var nodes: [Guest] = []
                for n in 1...3 {
                    var c = GuestConfig(name: "node\(n)", initrd: image, kernelArguments: ["ssi.quorum_wait=300"])
                    c.memoryMB = 512
                    c.timeLimit = .seconds(2100)
                    c.nics = [try network.addNIC(mac: Cluster.mac(node: n))]
                    c.disks = [Disk(shared, shared: true)]
                    let g = try vm.start(c)
                    fence.attach(node: n, g)
                    nodes.append(g)
                }
                let (node1, node2, node3) = (nodes[0], nodes[1], nodes[2])
                for g in nodes {
                    try await g.waitFor(SSIInit.step("dlm", "dlm_controld ready"), timeout: .seconds(600), failOn: SSIInit.failFast)
                    let mounted = try await g.waitFor(SSIInit.step("root", "mounted /dev/vda (ssi:root)"), timeout: .seconds(300), failOn: SSIInit.failFast)
                    #expect(mounted.contains("lockproto=lock_dlm"), "\(mounted)")
                    try await g.waitFor(SSIInit.step("private"), timeout: .seconds(120), failOn: SSIInit.failFast)
                }
                for g in nodes {
                    let reached = try await g.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(900))
                    log("\(g.name): \(reached)")
                    try await g.waitForAnywhere("ABSOLUTELY NO WARRANTY")
                }
                var machineIDs: Set<String> = []
                for (n, g) in [(1, node1), (2, node2), (3, node3)] {
                    #expect(try await g.run("hostname", timeout: .seconds(60)).output == "node\(n)")
                    #expect(try await g.run("findmnt -n -o FSTYPE /").output == "gfs2")
                    machineIDs.insert(try await g.run("cat /etc/machine-id").output)
                    let status = try await g.run("ssi cluster status", timeout: .seconds(60)).output
                    #expect(status.contains("Cluster ssi: 3 nodes, 3 members, quorate"), "node\(n):\n\(status)")
                    let procs = try await g.run("ps -o args= -C corosync,dlm_controld", expectStatus: nil).output
                    #expect(procs.contains("@/usr/sbin/corosync -f") && procs.contains("@/usr/sbin/dlm_controld"), "\(procs)")
                    let failed = try await g.run("systemctl --failed --no-legend --plain", expectStatus: nil).output
                    #expect(failed.isEmpty, "node\(n): no failed units:\n\(failed)")
                }
                #expect(machineIDs.count == 3, "three different machine ids")
                let lockspaces = try await node1.run("/run/ssi/root/usr/sbin/dlm_tool ls", expectStatus: nil).output
                #expect(lockspaces.contains("name          root") || lockspaces.contains("name root"), "\(lockspaces)")

                // Coherence: what one node writes the others read at once.
                for round in 1...3 {
                    try await node1.run("echo round-\(round) > /root/coherent")
                    #expect(try await node2.run("cat /root/coherent").output == "round-\(round)")
                    #expect(try await node3.run("cat /root/coherent").output == "round-\(round)")
                }
                // Private /var on the shared root.
                try await node2.run("echo node2 > /var/tmp/owner")
                #expect(try await node3.run("cat /var/tmp/owner", expectStatus: nil).status != 0, "node 3 has its own /var")
                // Concurrent appends from all three to one file: no line lost.
                for (n, g) in [(1, node1), (2, node2), (3, node3)] {
                    try await g.run("sh -c '(for i in $(seq 1 300); do echo node\(n) $i >> /root/appends; done; echo APPENDS-$((40+2))-DONE > /dev/console) >/dev/null 2>&1 &'")
                }
                for g in nodes { try await g.waitFor(.contains("APPENDS-42-DONE"), timeout: .seconds(600)) }
                #expect(try await node2.run("wc -l < /root/appends").output == "900")
                for n in 1...3 {
                    #expect(try await node1.run("grep '^node\(n) ' /root/appends | cut -d' ' -f2 | cmp - <(seq 1 300) && echo ordered",
                                                expectStatus: nil).output.hasSuffix("ordered"), "node \(n)'s 300 lines, in order")
                }

                // Node 3 is cut off the network in the middle of a write
                // loop: the survivors keep quorum, dlm fences it (the switch
                // kills its qemu), its journal is replayed, and they write again.
                try await node3.run("sh -c '(i=0; while true; do i=$((i+1)); echo $i >> /root/loop3; done) >/dev/null 2>&1 &'")
                try await Task.sleep(for: .seconds(3))
                try network.exec(["ip", "link", "set", "tap2", "down"])
                let cut = ContinuousClock.now
                var waited = 0
                while !fence.fencedNodes.contains(3) && waited < 240 {
                    try await Task.sleep(for: .seconds(1))
                    waited += 1
                }
                #expect(fence.fencedNodes == [3], "the switch was asked to cut node 3 off: \(fence.events)")
                #expect(!node3.isRunning, "node 3's qemu is gone")
                try await node1.run("timeout 300 sh -c 'echo after-fence > /root/after-fence'", timeout: .seconds(320))
                log("node 1 writes again \(Guest.seconds(ContinuousClock.now - cut)) after node 3 was cut off")
                #expect(try await node2.run("cat /root/after-fence", timeout: .seconds(120)).output == "after-fence")
                let recovered = try await node1.run("dmesg | grep -E 'jid=2: (Done|Journal replayed)' ; dmesg -c >/dev/null; true", expectStatus: nil).output
                    + (try await node2.run("dmesg | grep -E 'jid=2: (Done|Journal replayed)'; true", expectStatus: nil).output)
                #expect(recovered.contains("jid=2"), "a survivor replayed node 3's journal (jid 2): \(recovered)")
                let loop = try await node2.run("tail -n 2 /root/loop3 | head -n 1; wc -l < /root/loop3").output
                log("node 3's loop file after recovery: \(loop)")

                // A node with another key: no quorum, no mount, and it says why.
                let key2 = vm.path("authkey2")
                try Command.run([ssi, "cluster", "keygen", "-o", key2])
                let badKey = vm.path("badkey.img")
                try Command.run([ssi, "mkinitrd", "--config", conf, "--authkey", key2, "--kver", kernel.version, "-o", badKey], timeout: .seconds(300))
                var bk = GuestConfig(name: "node3-badkey", initrd: badKey, kernelArguments: ["ssi.quorum_wait=20"])
                bk.memoryMB = 512
                bk.nics = [try network.addNIC(mac: Cluster.mac(node: 3))]
                bk.disks = [Disk(shared, shared: true)]
                let badKeyNode = try vm.start(bk)
                fence.attach(node: 3, badKeyNode)
                let noQuorum = try await badKeyNode.waitFor(SSIInit.error("membership", "no quorum after 20 s"), timeout: .seconds(300))
                #expect(noQuorum.contains("authkey"), "\(noQuorum)")
                try await badKeyNode.waitFor(SSIInit.step("emergency"), timeout: .seconds(30))
                #expect(!((try? String(contentsOfFile: badKeyNode.serialLogPath, encoding: .utf8)) ?? "").contains("root: mounted"), "no mount without quorum")
                badKeyNode.kill()

                // A node whose configuration names another lock table: it
                // joins, but does not mount the disk, and says which table.
                let otherTable = try vm.exampleGFS2Config(authkey: key, name: "other-table.conf") {
                    $0.replacingOccurrences(of: "lock_table = \"ssi:root\"", with: "lock_table = \"ssi:other\"")
                }
                let tableImage = vm.path("table.img")
                try Command.run([ssi, "mkinitrd", "--config", otherTable, "--kver", kernel.version, "-o", tableImage], timeout: .seconds(300))
                var wt = GuestConfig(name: "node3-table", initrd: tableImage, kernelArguments: ["ssi.quorum_wait=120"])
                wt.memoryMB = 512
                wt.nics = [try network.addNIC(mac: Cluster.mac(node: 3))]
                wt.disks = [Disk(shared, shared: true)]
                let tableNode = try vm.start(wt)
                fence.attach(node: 3, tableNode)
                let refused = try await tableNode.waitFor(SSIInit.error("root", "belongs to lock table \"ssi:root\""), timeout: .seconds(300))
                #expect(refused.contains("\"ssi:other\"") && refused.contains("tunegfs2"), "\(refused)")
                tableNode.kill()
                #expect(try await node1.run("echo still > /root/still && cat /root/still", timeout: .seconds(120)).output == "still",
                        "the others are unaffected")

                // Node 3 boots back in and rejoins.
                var back = GuestConfig(name: "node3-back", initrd: image, kernelArguments: ["ssi.quorum_wait=120"])
                back.memoryMB = 512
                back.timeLimit = .seconds(1500)
                back.nics = [try network.addNIC(mac: Cluster.mac(node: 3))]
                back.disks = [Disk(shared, shared: true)]
                let node3b = try vm.start(back)
                fence.attach(node: 3, node3b)
                try await node3b.waitFor(SSIInit.step("root", "mounted /dev/vda"), timeout: .seconds(600), failOn: SSIInit.failFast)
                try await node3b.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(900))
                try await node3b.waitForAnywhere("ABSOLUTELY NO WARRANTY")
                #expect(try await node3b.run("cat /root/after-fence", timeout: .seconds(60)).output == "after-fence")
                #expect(try await node3b.run("ssi cluster status", timeout: .seconds(60)).output.contains("3 nodes, 3 members, quorate"))

                // Node 4: added to the configuration and given to the
                // members with reload; the disk has no journal for it yet.
                let node4Text = "\n[[node]]\nnumber = 4\nname = \"node4\"\nmac = \"52:54:00:00:00:04\"\naddress = \"10.77.0.4\"\n"
                let conf4 = try vm.exampleGFS2Config(authkey: key, name: "cluster4.conf") { $0 + node4Text }
                let image4 = vm.path("node4.img")
                try Command.run([ssi, "mkinitrd", "--config", conf4, "--kver", kernel.version, "-o", image4], timeout: .seconds(300))
                try await node1.run("printf '\(node4Text.replacingOccurrences(of: "\n", with: "\\n"))' >> /etc/ssi/cluster.conf")
                let reloaded = try await node2.run("ssi cluster reload", timeout: .seconds(120)).output
                #expect(reloaded.contains("applied on 3 members"), "\(reloaded)")
                var c4 = GuestConfig(name: "node4", initrd: image4, kernelArguments: ["ssi.quorum_wait=120"])
                c4.memoryMB = 512
                c4.nics = [try network.addNIC(mac: Cluster.mac(node: 4))]
                c4.disks = [Disk(shared, shared: true)]
                let node4 = try vm.start(c4)
                fence.attach(node: 4, node4)
                let noJournal = try await node4.waitFor(SSIInit.error("root"), timeout: .seconds(600))
                log("node 4 without a journal: \(noJournal)")
                #expect(noJournal.contains("journal"), "\(noJournal)")
                let added = try await node1.run("ssi cluster root add-journal --journal-size 32 2>&1", timeout: .seconds(300)).output
                #expect(added.contains("had 3 journals, now 4"), "\(added)")
                try await node4.waitFor(SSIInit.step("emergency"), timeout: .seconds(60))
                try node4.send("exit\n")
                try await node4.waitFor(SSIInit.step("root", "mounted /dev/vda"), timeout: .seconds(300), failOn: SSIInit.failFast)
                try await node4.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(900))
                #expect(try await node1.run("ssi cluster status", timeout: .seconds(60)).output.contains("4 nodes, 4 members, quorate"))

                // The cluster stops, one node at a time (each leaves its
                // journal clean on the way down); then the disk checks clean.
                for g in [node4, node3b, node2, node1] {
                    try g.send("poweroff\n")
                    let status = try? await g.waitForExit(timeout: .seconds(300))
                    log("\(g.name) powered off: \(status.map(String.init) ?? "still running, killed")")
                    g.kill()
                }
                let fsck = try Command.run(["fsck.gfs2", "-n", shared], timeout: .seconds(600), check: false)
                #expect(fsck.status == 0, "fsck.gfs2 -n: status \(fsck.status)\n\(fsck.stdout)\n\(fsck.stderr)")
            }
        }
    }
}
