// ssi-mount, ssi-umount, ssi-swapon and ssi-fsck in a real CFS cluster
// (ToolsCluster: node 1 boots its disk and serves the root; every node has
// three swap disks and one shared ext4 disk, node 1 alone the "data"
// disk): node 2 network-boots, both make cluster mounts, then node 3 boots
// late and must find them. One boot, many assertions; the migration
// scenarios (MigrationTests.swift) then run on the same boot.

import Foundation
import SSIVMHarness
import Testing

extension VM {
    @Suite struct ToolsTests {
        /// The package's binary when the root has it installed (SSI_DEB),
        /// else the one ssi-init left in the daemons' root.
        static let ssi = packageSkipReason == nil ? "/usr/sbin/ssi" : ToolsCluster.ssi

        @Test("ssi-mount/umount/swapon/fsck: node=1 device seen over NFS on every node, node=* tmpfs on each, a late joiner replays both, umount everywhere, util-linux's errors with nothing mounted anywhere, each node's own swap, another's refused, fsck refused while mounted elsewhere and serialized across nodes; then, on the same boot, migration: a counter with a pipe home moves 1 -> 2 -> 3 without a gap, a tty program and a TCP client keep their terminal and connection, onnode runs there with stdio and status back, refusals say why, a pre-copy move of a process rewriting its 64 MB keeps every byte and line, a socketpair inside a tree moves with it, a source dying after a round leaves nothing at the target, a target dying mid-transfer leaves the process running at home",
              .enabled(if: clusterSkipReason == nil, Comment(rawValue: clusterSkipReason ?? "")),
              .timeLimit(.minutes(60)))
        func clusterTools() async throws {
            let ssiHost = try SSIBinary.require()
            try await VMTest.run("tools") { vm in
                // 1 GB for node 1, 1.5 GB for node 2 and 768 MB for node
                // 3: the migration part moves a 200 MB process to node 2,
                // whose tmpfs holds its pre-copy rounds while it is
                // restored (1 GB ran out after the tools' part on one boot).
                let cluster = try await ToolsCluster.boot(in: vm, ssi: ssiHost, kernel: VMHost.kernel!,
                                                          deb: packageSkipReason == nil ? packageDeb : nil,
                                                          files: MigrationPrograms.all, memoryMB: 1024)
                let node1 = cluster.node1
                let node2 = try cluster.startDiskless(2, in: vm, memoryMB: 1536)
                try await node2.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600), failOn: SSIInit.failFast)
                try await node2.waitForAnywhere("ABSOLUTELY NO WARRANTY")

                // Wrong command lines fail as util-linux's do.
                let usage = try await node1.run("\(Self.ssi) mount --bogus 2>&1", expectStatus: 1).output
                #expect(usage.contains("unrecognized option '--bogus'") && usage.contains("Try 'ssi-mount --help'"), "\(usage)")

                // A local block device without node=: node=1. Node 1 mounts
                // and exports it; node 2 sees it at the same path.
                let m = try await node1.run("\(Self.ssi) mount LABEL=ssi-data /mnt/data", timeout: .seconds(120)).output
                #expect(m.contains("mounted on every member (node=1)") && m.contains("node 1: mounted") && m.contains("node 2: mounted"), "\(m)")
                #expect(try await node1.run("findmnt -n -o FSTYPE /mnt/data").output == "ext4")
                #expect(try await node2.run("findmnt -n -o FSTYPE /mnt/data").output == "nfs4")
                #expect(try await node2.run("findmnt -n -o SOURCE /mnt/data").output == "10.78.0.1:/mnt/data", "through the tunnel")
                try await node2.run("echo from-node2 > /mnt/data/f2")
                #expect(try await node1.run("cat /mnt/data/f2").output == "from-node2")
                try await node1.run("echo from-node1 > /mnt/data/f1")
                #expect(try await node2.run("cat /mnt/data/f1").output == "from-node1")

                // node=*: every node mounts its own.
                let t = try await node2.run("\(Self.ssi) mount -t tmpfs -o size=8m,node='*' scratch /mnt/scratch", timeout: .seconds(120)).output
                #expect(t.contains("(node=*)"), "\(t)")
                for g in [node1, node2] {
                    #expect(try await g.run("findmnt -n -o FSTYPE /mnt/scratch").output == "tmpfs", "\(g.name)")
                }
                try await node1.run("echo node1 > /mnt/scratch/who")
                #expect(try await node2.run("test -e /mnt/scratch/who", expectStatus: nil).status == 1, "each node has its own tmpfs")

                // Bad input: util-linux's message and code, nothing mounted
                // on any node, the table unchanged.
                let badType = try await node1.run("\(Self.ssi) mount -t nosuchfs LABEL=ssi-shared /mnt/bad 2>&1", timeout: .seconds(120),
                                                  expectStatus: 32).output
                #expect(badType.contains("unknown filesystem type 'nosuchfs'") && badType.contains("not mounted on any node"), "\(badType)")
                let badOpt = try await node2.run("\(Self.ssi) mount -t tmpfs -o node='*',nosuchoption x /mnt/bad 2>&1",
                                                 timeout: .seconds(120), expectStatus: 32).output
                #expect(badOpt.contains("node 1:") && badOpt.contains("node 2:") && badOpt.contains("bad option"), "\(badOpt)")
                let noDev = try await node1.run("\(Self.ssi) mount /dev/nosuch /mnt 2>&1", expectStatus: 32).output
                #expect(noDev.contains("special device /dev/nosuch does not exist"), "\(noDev)")
                for g in [node1, node2] {
                    #expect(try await g.run("test -e /mnt/bad", expectStatus: nil).status != 0, "\(g.name): no /mnt/bad left behind")
                    #expect(try await g.run("wc -l < /run/ssi/cluster-mounts").output == "2", "\(g.name): two cluster mounts")
                }

                // A late joiner: node 3 boots now and finds both mounts:
                // mounted by its ssi-init before the hand-off when the
                // table came in time (the other agents send it when they
                // see it join), else by its agent right after (on a busy
                // host a CI run saw the table come after ssi-init's step).
                let node3 = try cluster.startDiskless(3, in: vm, memoryMB: 768)
                let replayed = try await node3.waitFor(anyOf: [SSIInit.step("cluster-mounts", "mounted /mnt/data"), SSIInit.step("switch-root")],
                                                       timeout: .seconds(600), failOn: SSIInit.failFast)
                log("node3: \(replayed.index == 0 ? "before the hand-off" : "not before the hand-off"): \(replayed.line)")
                try await node3.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600))
                try await node3.waitForAnywhere("ABSOLUTELY NO WARRANTY")
                #expect(try await node3.run("for i in $(seq 120); do findmnt /mnt/data > /dev/null && break; sleep 1; done; findmnt -n -o FSTYPE /mnt/data",
                                            timeout: .seconds(180)).output == "nfs4", "node 3 has the node=1 mount")
                #expect(try await node3.run("cat /mnt/data/f2").output == "from-node2")
                #expect(try await node3.run("for i in $(seq 60); do findmnt /mnt/scratch > /dev/null && break; sleep 1; done; findmnt -n -o FSTYPE /mnt/scratch",
                                            timeout: .seconds(120)).output == "tmpfs")

                // Swap: each node its own (ssi-init, from cluster.conf).
                for (n, g) in [(1, node1), (2, node2), (3, node3)] {
                    let mine = try await g.run("grep -c \"^$(readlink -f /dev/disk/by-label/ssi-swap-\(n)) \" /proc/swaps").output
                    #expect(mine == "1", "node\(n) swaps on ssi-swap-\(n)")
                    #expect(try await g.run("tail -n +2 /proc/swaps | wc -l").output == "1", "node\(n): only its own")
                }
                try await Task.sleep(for: .seconds(3))  // the agents' device lists travel once a second
                let other = try await node2.run("\(Self.ssi) swapon LABEL=ssi-swap-1 2>&1", expectStatus: 255).output
                #expect(other.contains("node 1 (node1)"), "\(other)")
                let third = try await node2.run("\(Self.ssi) swapon LABEL=ssi-swap-3 2>&1", expectStatus: 255).output
                #expect(third.contains("node 3 (node3)"), "\(third)")
                #expect(try await node2.run("tail -n +2 /proc/swaps | wc -l").output == "1", "nothing more turned on")
                let notSwap = try await node2.run("\(Self.ssi) swapon LABEL=ssi-shared 2>&1", expectStatus: 255).output
                #expect(notSwap.contains("read swap header failed"), "\(notSwap)")

                // fsck: refused while another member has it mounted.
                try await node1.run("\(Self.ssi) mount -o node=1 LABEL=ssi-shared /mnt/shared", timeout: .seconds(120))
                try await Task.sleep(for: .seconds(3))
                let refused = try await node2.run("\(Self.ssi) fsck -n LABEL=ssi-shared 2>&1", expectStatus: 8).output
                #expect(refused.contains("mounted on node 1 (node1)"), "\(refused)")
                let gone = try await node3.run("\(Self.ssi) umount /mnt/shared", timeout: .seconds(120)).output
                #expect(gone.contains("unmounted on every member"), "\(gone)")
                for g in [node1, node2, node3] {
                    #expect(try await g.run("mountpoint -q /mnt/shared", expectStatus: nil).status != 0, "\(g.name): /mnt/shared gone")
                }
                try await Task.sleep(for: .seconds(3))

                // Two nodes check one device at once: one waits for the other.
                // The slow checker is the fstab line's type: as util-linux,
                // -t names the checker only when neither fstab nor blkid does.
                for g in [node2, node3] {
                    try await g.run("echo 'LABEL=ssi-shared /mnt/shared slow noauto 0 0' > /tmp/fstab-slow")
                    try await g.run("sh -c '(FSTAB_FILE=/tmp/fstab-slow \(Self.ssi) fsck -n LABEL=ssi-shared > /tmp/fsck.out 2>&1; "
                                    + "echo FSCK-$((6*7))-EXIT-$? > /dev/console) >/dev/null 2>&1 &'")
                }
                for g in [node2, node3] {
                    let done = try await g.waitFor(.contains("FSCK-42-EXIT-"), timeout: .seconds(120))
                    #expect(done.contains("FSCK-42-EXIT-0"), "\(g.name): \(done)")
                }
                let order = try await node1.run("cat /root/fsck-order").output.split(separator: "\n").map(String.init)
                #expect(order.count == 4 && order[0].hasSuffix(" start") && order[1] == order[0].replacingOccurrences(of: "start", with: "end")
                        && order[2].hasSuffix(" start") && order[3] == order[2].replacingOccurrences(of: "start", with: "end"),
                        "the checks did not overlap: \(order)")
                let waited = try await node2.run("cat /tmp/fsck.out").output + (try await node3.run("cat /tmp/fsck.out").output)
                #expect(waited.contains("waiting for the cluster lock fsck:"), "\(waited)")

                // umount removes a mount everywhere; node 1 stops exporting.
                let u1 = try await node3.run("\(Self.ssi) umount /mnt/scratch", timeout: .seconds(120)).output
                #expect(u1.contains("node 1: unmounted") && u1.contains("node 3: unmounted"), "\(u1)")
                let u2 = try await node2.run("\(Self.ssi) umount /mnt/data", timeout: .seconds(120)).output
                #expect(u2.contains("unmounted on every member"), "\(u2)")
                for g in [node1, node2, node3] {
                    // One findmnt per mount point: `findmnt A B` looks for
                    // source A on target B, which never matches, so it
                    // proved nothing (a no-op umount passed it).
                    let left = try await g.run("findmnt -n -M /mnt/scratch; findmnt -n -M /mnt/data", expectStatus: nil).output
                    #expect(left.isEmpty, "\(g.name): none left: \(left)")
                    #expect(try await g.run("cat /run/ssi/cluster-mounts").output.isEmpty, "\(g.name): an empty table")
                }
                #expect(!(try await node1.run("exportfs -v").output.contains("/mnt/data")), "no export left")
                #expect(try await node1.run("test -e /mnt/data/f1", expectStatus: nil).status == 1, "node 1's disk unmounted")

                // The package in the booted cluster: its command names, and
                // opting in makes them the system's mount and umount (the
                // shared /usr: every node at once); opting out gives
                // util-linux's back.
                if let why = packageSkipReason {
                    log("the package part is skipped: \(why)")
                } else {
                    try await Self.packageDivert(node1: node1, node2: node2, node3: node3)
                }

                try await Self.migration(cluster: cluster, node1: node1, node2: node2, node3: node3)
            }
        }

        /// The package in the booted cluster: its command names, and opting
        /// in makes them the system's mount and umount (the shared /usr:
        /// every node at once); opting out gives util-linux's back.
        static func packageDivert(node1: Guest, node2: Guest, node3: Guest) async throws {
            let named = try await node2.run("ssi-mount -t tmpfs -o size=4m,node='*' pkg /mnt/pkg", timeout: .seconds(120)).output
            #expect(named.contains("mounted on every member (node=*)"), "\(named)")
            try await node1.run("ssi divert enable", timeout: .seconds(60))
            // The diversion changes the shared /usr, which the diskless
            // nodes cache for [root] cache_seconds (10 s): seen within it.
            let diverted = Date()
            let link = try await node2.runUntil("readlink /usr/bin/mount", timeout: .seconds(30)) { $0.output == "/usr/sbin/ssi" }
            #expect(link.output == "/usr/sbin/ssi", "node2 sees the diversion within the cache bound: \(link.output)")
            let version = try await node3.runUntil("mount --version", timeout: .seconds(30)) { $0.output.contains("from ssi") }
            #expect(version.output.contains("from ssi"), "\(version.output)")
            log("the diversion reached the diskless nodes after \(Int(Date().timeIntervalSince(diverted))) s (cache bound 10 s)")
            let plain = try await node3.run("umount /mnt/pkg", timeout: .seconds(120)).output
            #expect(plain.contains("unmounted on every member"), "the system's umount is ssi's: \(plain)")
            for g in [node1, node2, node3] {
                #expect(try await g.run("mountpoint -q /mnt/pkg", expectStatus: nil).status != 0, "\(g.name): /mnt/pkg gone")
            }
            try await node1.run("ssi divert disable", timeout: .seconds(60))
            let back = try await node2.runUntil("mount --version", timeout: .seconds(30)) { $0.output.contains("util-linux") }
            #expect(back.output.contains("util-linux"), "\(back.output)")
        }
    }
}
