// The harness proves itself, independent of ssi: Debian's own initramfs
// boots the test root (markers, power-off), and two guests on a test
// network namespace reach each other and a host-side address in it.

import Foundation
import SSIVMHarness
import Testing

/// Every VM test sits in this suite so that guests do not compete for the
/// runner's cores (TCG takes one core per guest; timeouts assume that).
/// Two chains side by side were tried (DESIGN-NOTES, "The VM tests' time"):
/// the guests' boots took three times as long and timed out.
@Suite(.serialized)
struct VM {}

/// Debian's initramfs-tools image for the harness kernel, when installed.
let debianInitrd: String? = {
    guard let kernel = VMHost.kernel else { return nil }
    let path = "/boot/initrd.img-\(kernel.version)"
    return FileManager.default.isReadableFile(atPath: path) ? path : nil
}()

let noDebianInitrd = debianInitrd == nil
    ? "no /boot/initrd.img-\(VMHost.kernel?.version ?? "?") (Debian's initramfs-tools image) to boot the test root with" : nil

/// Why the harness cannot boot the test root with Debian's initramfs here.
let debianBootSkipReason: String? = VMHost.bootSkipReason ?? noDebianInitrd

/// ... and why it cannot do so on a test network.
let harnessSkipReason: String? = VMHost.skipReason ?? noDebianInitrd

func log(_ text: String) {
    FileHandle.standardError.write(Data(("[vm \(VMHost.timeOfDay())] " + text + "\n").utf8))
}

extension VM {
    @Suite struct HarnessTests {
        @Test("the test root boots under Debian's own initramfs and reports its markers",
              .enabled(if: debianBootSkipReason == nil, Comment(rawValue: debianBootSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func debianInitramfsBootsTestRoot() async throws {
            try await VMTest.run("debian-boot") { vm in
                let root = try vm.rootDisk(label: "harness-root")
                var config = GuestConfig(name: "deb", initrd: debianInitrd, kernelArguments: [root.rootByUUID, "ro"])
                config.disks = [Disk(root.path)]
                let guest = try vm.start(config)

                try await guest.waitFor(.exactly(RootDisk.Marker.realInitPID1), timeout: .seconds(120))
                log("debian initramfs: real init after \(Guest.seconds(guest.elapsed))")
                try await guest.waitFor(.exactly(RootDisk.Marker.procYes), timeout: .seconds(10))
                try await guest.waitFor(.exactly(RootDisk.Marker.devConsoleYes), timeout: .seconds(10))
                let mount = try await guest.waitFor(.contains(RootDisk.Marker.rootMount), timeout: .seconds(10))
                #expect(mount.contains("=/dev/vda / ext4 ro"), "root mount line: \(mount)")
                let uptime = try await guest.waitFor(.contains(RootDisk.Marker.uptime), timeout: .seconds(10))
                log("debian initramfs: guest \(uptime)")
                let cmdline = try await guest.waitFor(.contains(RootDisk.Marker.cmdline), timeout: .seconds(10))
                #expect(cmdline.contains(root.rootByUUID))
                try await guest.waitFor(.exactly(RootDisk.Marker.poweroff), timeout: .seconds(10))
                let status = try await guest.waitForExit(timeout: .seconds(30))
                #expect(status == 0)
                log("debian initramfs: powered off after \(Guest.seconds(guest.elapsed))")
                // Debian's initramfs found the disk through virtio_blk and ext4 modules.
                #expect(guest.log.contains("virtio_blk"))
            }
        }

        @Test("two guests on a test network reach each other and the bridge, and the console shell runs commands",
              .enabled(if: harnessSkipReason == nil, Comment(rawValue: harnessSkipReason ?? "")),
              .timeLimit(.minutes(6)))
        func twoGuestsOnATestNetwork() async throws {
            try await VMTest.run("two-guests") { vm in
                let network = try vm.network(hostAddress: "10.77.0.254/24")
                let cluster = try Cluster(in: vm, nodes: 2, network: network) { n, config in
                    let root = try vm.rootDisk(name: "root\(n)", label: "node\(n)")
                    config.initrd = debianInitrd
                    config.kernelArguments = [root.rootByUUID, "ro", RootDisk.Marker.shellArgument]
                    config.disks = [Disk(root.path)]
                }
                try await cluster.waitAll(for: .exactly(RootDisk.Marker.shell), timeout: .seconds(240))
                log("two guests: both shells up after \(Guest.seconds(cluster.node(2).elapsed))")

                // The console plumbing: output, exit status, no final newline.
                let node1 = cluster.node(1)
                #expect(try await node1.run("echo hello-$((1+1))").output == "hello-2")
                #expect(try await node1.run("false", expectStatus: nil).status == 1)
                #expect(try await node1.run("printf no-newline").output == "no-newline")
                #expect(try await node1.run("echo a; echo b").output == "a\nb")
                // A console copy held for 3 s (as a busy host's scheduler
                // may hold it): qemu's side of the socket fills, and every
                // byte still arrives once, in order. qemu's own logfile=
                // doubled a byte here (SerialConnection).
                node1.holdConsole(for: .seconds(3))
                let counted = try await node1.run("seq 1 3000", timeout: .seconds(120)).output
                #expect(counted == (1...3000).map(String.init).joined(separator: "\n"),
                        "the first difference: \(zip(counted.split(separator: "\n"), 1...3000).first { $0.0 != "\($0.1)" }.map { "\($0.0) for \($0.1)" } ?? "a count of \(counted.split(separator: "\n").count) lines")")

                for n in 1...2 {
                    let guest = cluster.node(n)
                    let mac = Cluster.mac(node: n)
                    // The NIC's name depends on the initramfs (udev may rename it); find it by MAC.
                    let ifname = try await guest.run(
                        "for i in /sys/class/net/*; do [ \"$(cat $i/address)\" = \(mac) ] && echo ${i##*/}; done; true"
                    ).output
                    try #require(!ifname.isEmpty, "node\(n) has no NIC with MAC \(mac)")
                    try await guest.run("ip addr add 10.77.0.\(n)/24 dev \(ifname) && ip link set \(ifname) up")
                    let link = try await guest.run("ip link show \(ifname)").output
                    #expect(link.contains(mac))
                }
                // Bounded pings, all inside the namespace.
                let ping = try await node1.run("ping -c 3 -W 2 10.77.0.2", timeout: .seconds(60))
                #expect(ping.output.contains("3 packets received"), "\(ping)")
                try await cluster.node(2).run("ping -c 2 -W 2 10.77.0.254", timeout: .seconds(60))
                // And from the namespace's side (the address on br0) to a guest.
                try network.exec(["busybox", "ping", "-c", "2", "-W", "2", "10.77.0.1"], timeout: .seconds(30))
                cluster.shutdown()
            }
        }

        @Test("a wait that times out says what the guest printed, and the per-guest time limit stops qemu",
              .enabled(if: VMHost.bootSkipReason == nil, Comment(rawValue: VMHost.bootSkipReason ?? "")),
              .timeLimit(.minutes(2)))
        func timeoutsAreBounded() async throws {
            try await VMTest.run("limits") { vm in
                // No initrd, no disk: the kernel would panic (and exit) once it
                // finds no root; the time limit comes first.
                var config = GuestConfig(name: "limit", kernelArguments: ["rootdelay=600"])
                // 20 s: on a loaded 2-core host the kernel took 7 s to say
                // "Linux version", and the 1 s wait below ran into an 8 s limit.
                config.timeLimit = .seconds(20)
                let guest = try vm.start(config)
                try await guest.waitFor("Linux version", timeout: .seconds(60))
                do {
                    try await guest.waitFor("a line no kernel prints", timeout: .seconds(1))
                    Issue.record("waitFor did not time out")
                } catch let error as HarnessError {
                    #expect(error.message.contains("timed out after"))
                    #expect(error.message.contains(guest.serialLogPath))
                    let quoted = error.message.split(separator: "\n").filter { $0.hasPrefix("  | ") }.map { String($0.dropFirst(4)) }
                    let lines = guest.lines
                    // The last quoted line may have been unfinished when the
                    // error was made (the kernel still printing): then it
                    // is the start of a line the log has now (CI once saw
                    // the completed line differ from the quoted half).
                    let whole = quoted.dropLast().allSatisfy(lines.contains)
                    let last = quoted.last.map { q in lines.contains { $0.hasPrefix(q) } } ?? false
                    #expect(!quoted.isEmpty && whole && last, "the error quotes the serial log: \(quoted.suffix(3))")
                    // And the host's view of its qemu: each thread's state,
                    // CPU time and wchan (HostView), for a guest stalled from outside.
                    let host = error.message.components(separatedBy: "host view of limit's processes:\n").last ?? ""
                    #expect(host.contains("qemu-system-x86_64 ") && host.contains("state ") && host.contains(", cpu ")
                            && host.contains("load: "), "\(host)")
                }
                let status = try await guest.waitForExit(timeout: .seconds(30))
                #expect(status == 124, "timeout(1) ends qemu at the guest's time limit")
                log("time limit: qemu stopped after \(Guest.seconds(guest.elapsed)) (limit 20 s)")
            }
        }
    }

    /// Quick checks of harness pieces that need no VM.
    @Suite struct HarnessUnitTests {
        @Test("a departure in corosync's console log: heard (its leave), timed out, or not yet; a later stall does not count")
        func corosyncDeparture() {
            // Node 4's console in the GFS2 test's CI run of 2026-12-07:
            // node 3 left at once, then node 1 stalled for 30 s.
            let leftThenStall = [
                "Dec 07 10:38:37 notice  [QUORUM] Sync left[1]: 3",
                "Dec 07 10:38:37 notice  [TOTEM ] A new membership (1.21) was formed. Members left: 3",
                "Dec 07 10:39:01 notice  [TOTEM ] Token has not been received in 23476 ms ",
                "Dec 07 10:39:11 notice  [TOTEM ] A processor failed, forming new configuration: token timed out (31300ms), waiting 37560ms for consensus.",
                "Dec 07 10:39:18 notice  [TOTEM ] A new membership (1.25) was formed. Members",
            ]
            #expect(CorosyncLog.departure(of: 3, in: leftThenStall) == .left)
            let silent = [
                "Dec 07 10:39:11 notice  [TOTEM ] A processor failed, forming new configuration: token timed out (31300ms), waiting 37560ms for consensus.",
                "Dec 07 10:39:50 notice  [TOTEM ] A new membership (1.29) was formed. Members left: 2 3",
            ]
            #expect(CorosyncLog.departure(of: 3, in: silent) == .timedOut(silent[0]))
            #expect(CorosyncLog.departure(of: 1, in: silent) == .notYet, "node 1 is not among those left")
            #expect(CorosyncLog.departure(of: 3, in: ["Members left: 13"]) == .notYet, "13 is not 3")
            #expect(CorosyncLog.departure(of: 3, in: [String]()) == .notYet)
        }

        @Test("the secret search: a needle anywhere (also at the ends, and after a false start), a seed line only whole")
        func secretSearch() {
            let key = Data([0, 7, 7, 9])
            #expect(VMHost.firstOffset(of: key, in: Data([1, 0, 7, 0, 7, 7, 9])) { _ in true } == 3)
            #expect(VMHost.firstOffset(of: key, in: Data([0, 7, 7, 9])) { _ in true } == 0)
            #expect(VMHost.firstOffset(of: key, in: Data([0, 7, 7])) { _ in true } == nil)
            #expect(VMHost.firstOffset(of: Data([5]), in: Data([5, 1, 5])) { $0 > 0 } == 2, "the first one accepted")
            let value = String(repeating: "Ab+/", count: 10) + "xyz"
            #expect(VMHost.holdsSeedLine(Data("ssi node identity v1\nseed \(value)=\n".utf8)))
            #expect(VMHost.holdsSeedLine(Data("seed the format\nseed \(value)=\n".utf8)), "after a false start")
            #expect(!VMHost.holdsSeedLine(Data("seed \(value)=".utf8)), "no newline")
            #expect(!VMHost.holdsSeedLine(Data("seed \(value.dropLast())=\n".utf8)), "42 characters")
            #expect(!VMHost.holdsSeedLine(Data("seed \(value.dropLast())-=\n".utf8)), "not base64")
            #expect(!VMHost.holdsSeedLine(Data("the seed line's words: seed BASE64\n".utf8)))
        }

        @Test("a command gets stdin, stdout and stderr only: a descriptor of the runner without O_CLOEXEC stays out")
        func spawnClosesTheRunnersDescriptors() throws {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            defer { close(fds[0]); close(fds[1]) }
            let seen = try Command.run(["/bin/sh", "-c", "ls /proc/$$/fd; test -e /proc/$$/fd/\(fds[1]) && echo inherited; true"]).stdout
            #expect(!seen.contains("inherited"), "fd \(fds[1]) reached the child: \(seen)")
            #expect(seen.split(separator: "\n").contains("2"), "its own three are there: \(seen)")
        }

        @Test("a command's start marker is found with one byte doubled by the console, and only its own")
        func markerWithADoubledByte() {
            let m = "__S_6283x14x249077899"
            #expect(LineMatch.startsWithMarker("__S_6283x14x249077899", m))
            #expect(LineMatch.startsWithMarker("__S_6283x144x249077899", m), "CI's console doubled the 4")
            #expect(LineMatch.startsWithMarker("__S__6283x14x249077899 tail", m))
            #expect(!LineMatch.startsWithMarker("__S_6283x15x249077899", m))
            #expect(!LineMatch.startsWithMarker("__S_6283x154x249077899", m), "an inserted byte that doubles nothing")
            #expect(!LineMatch.startsWithMarker("__S_6283x1", m))
            #expect(!LineMatch.startsWithMarker("", m))
            let status = "Cluster ssi: 3 nodes\n(* = this node)\nGFS22 ssi:root mounted on node1, node2, node3"
            #expect(LineMatch.consoleText(status, contains: "GFS2 ssi:root mounted on node1, node2, node3"), "CI's node 2")
            #expect(!LineMatch.consoleText(status, contains: "GFS2 ssi:other mounted"))
            #expect(!LineMatch.consoleText("GFS3 ssi:root", contains: "GFS2 ssi:root"))
        }

        @Test("a wait that follows progress: console lines and NIC bytes each count; neither for `stalled` is stuck")
        func progressWatch() {
            let t0 = ContinuousClock.now
            var w = ProgressWatch(stalled: .seconds(60), bytes: 100, now: t0)
            w.console(lines: 10, partial: nil, now: t0)
            #expect(!w.isStuck(now: t0 + .seconds(59)))
            #expect(w.isStuck(now: t0 + .seconds(60)), "nothing new for 60 s")
            w.network(bytes: 100, at: t0 + .seconds(50))
            #expect(w.isStuck(now: t0 + .seconds(61)), "the same byte count is no progress")
            w.network(bytes: 5000, at: t0 + .seconds(55))
            #expect(!w.isStuck(now: t0 + .seconds(100)), "NFS traffic while systemd prints nothing is progress")
            w.console(lines: 10, partial: "[  OK  ] Sta", now: t0 + .seconds(110))
            #expect(!w.isStuck(now: t0 + .seconds(160)), "a longer unfinished line is progress")
            w.console(lines: 10, partial: "[  OK  ] Sta", now: t0 + .seconds(120))
            #expect(w.isStuck(now: t0 + .seconds(171)))
            w.console(lines: 11, partial: nil, now: t0 + .seconds(171))
            #expect(!w.isStuck(now: t0 + .seconds(200)))
        }

        @Test("a line without its newline matches only once it stops growing (a prompt), or when the guest has exited")
        func partialLineSettles() {
            let t0 = ContinuousClock.now
            var w = PartialLineWatch(settle: .seconds(1))
            let cut = "ssi-init: ERROR: no quorum after 25 s; check that the othe"
            let r1 = w.settled(cut, exited: false, now: t0)
            #expect(!r1, "just seen: the rest may be on its way")
            let r2 = w.settled(cut, exited: false, now: t0 + .milliseconds(900))
            #expect(!r2)
            let r3 = w.settled(cut + "r nodes", exited: false, now: t0 + .milliseconds(950))
            #expect(!r3, "it grew: the second starts again")
            let r4 = w.settled(cut + "r nodes", exited: false, now: t0 + .milliseconds(1900))
            #expect(!r4)
            let r5 = w.settled(cut + "r nodes", exited: false, now: t0 + .milliseconds(1950))
            #expect(r5, "a second unchanged: a prompt")
            var gone = PartialLineWatch()
            let r6 = gone.settled("login: ", exited: true, now: t0)
            #expect(r6, "an exited guest prints no more")
        }

        @Test func kernelVersionsSortNumerically() {
            #expect(VMHost.versionLess("6.1.0-10-amd64", "6.1.0-56-amd64"))
            #expect(VMHost.versionLess("6.1.0-9-amd64", "6.1.0-10-amd64"))
            #expect(VMHost.versionLess("6.1", "6.12"))
            #expect(!VMHost.versionLess("6.12.0", "6.1.0"))
        }

        @Test func staleNamespaceNames() {
            #expect(TestNetwork.runnerPID(of: "ssi-t123-4") == 123)
            #expect(TestNetwork.runnerPID(of: "ssi-t123") == nil)
            #expect(TestNetwork.runnerPID(of: "other-1-2") == nil)
            #expect(TestNetwork.runnerPID(of: "ssi-tx-1") == nil)
        }

        @Test func kernelMessagesAreRecognized() {
            #expect(Guest.isKernelMessage("[    1.234567] virtio_blk virtio1: [vda] 131072 512-byte"))
            #expect(!Guest.isKernelMessage("ssi-init: [    1.234] start"))
            #expect(!Guest.isKernelMessage("hello"))
        }

        @Test("daemons' console lines (corosync's, the membership agent's) are told from a command's output")
        func daemonConsoleLines() {
            #expect(Guest.isDaemonConsoleLine("Dec 05 18:05:01 info    [KNET  ] link: host: 3 link: 0 is down"))
            #expect(Guest.isDaemonConsoleLine("Dec 05 18:05:07 notice  [TOTEM ] A new membership (1.29) was formed."))
            #expect(Guest.isDaemonConsoleLine("ssi-cluster: agent: node 2 left"))
            #expect(!Guest.isDaemonConsoleLine("1"), "node-num's output")
            #expect(!Guest.isDaemonConsoleLine("ssi-cluster: root create: /dev/vdb is the GFS2 root"), "a command's own message")
            #expect(!Guest.isDaemonConsoleLine("Dec 05 18:05:01 hello [x]"), "not a level")
            #expect(!Guest.isDaemonConsoleLine("Cluster ssi: 3 nodes, 3 members, quorate"))
        }

        @Test func lineMatches() {
            let m: LineMatch = "root: found"
            #expect(m.matches("ssi-init: [ 1.0] root: found UUID=x"))
            #expect(LineMatch.containsInOrder("ssi-init:", "root:", "ERROR:").matches("ssi-init: [ 2.1] root: ERROR: x"))
            #expect(!LineMatch.containsInOrder("ERROR:", "root:").matches("ssi-init: [ 2.1] root: ERROR: x"))
            #expect(LineMatch.regex(#"pid=\d+$"#).matches("SSI-TEST real-init pid=1"))
            #expect(LineMatch.exactly("__S_1").matches("  __S_1 "))
        }

        @Test("mkroot.sh rejects bad usage with a clear message",
              .enabled(if: VMHost.bootSkipReason == nil, Comment(rawValue: VMHost.bootSkipReason ?? "")))
        func mkrootUsage() throws {
            let script = VMHost.testrootDirectory + "/mkroot.sh"
            let noImage = try Command.run([script], check: false)
            #expect(noImage.status == 2)
            #expect(noImage.stderr.contains("missing IMG"))
            let badUUID = try Command.run([script, "/nonexistent/x.img", "--uuid", "nope"], check: false)
            #expect(badUUID.status == 2)
            #expect(badUUID.stderr.contains("not a UUID"))
        }

        @Test("a disk boot and a network boot leave the kernel to the firmware, which prints on the serial console")
        func firmwareBootArguments() {
            let files = (log: "/t/g.log", socket: "/t/g.sock", pid: "/t/g.pid", out: "/t/g.out")
            var disk = GuestConfig(name: "g", kernel: "/k", initrd: "/i")
            disk.diskBoot = true
            disk.disks = [Disk("/t/disk.img")]
            let a = Guest.qemuArguments(disk, files: files)
            #expect(!a.contains("-kernel") && !a.contains("-initrd") && !a.contains("-append"), "\(a)")
            #expect(a.contains("q35,graphics=off"))
            #expect(a.firstIndex(of: "-boot").map { a[$0 + 1] } == "c")
            var net = GuestConfig(name: "g")
            net.networkBoot = true
            let n = Guest.qemuArguments(net, files: files)
            #expect(n.firstIndex(of: "-boot").map { n[$0 + 1] } == "n")
            let direct = Guest.qemuArguments(GuestConfig(name: "g", kernel: "/k", initrd: "/i"), files: files)
            #expect(direct.contains("-kernel") && !direct.contains("-boot") && direct.contains("q35"))
        }

        @Test("mkgrubdisk.sh rejects bad usage with a message naming what is missing",
              .enabled(if: VMHost.bootSkipReason == nil, Comment(rawValue: VMHost.bootSkipReason ?? "")))
        func mkgrubdiskUsage() throws {
            let script = VMHost.testrootDirectory + "/mkgrubdisk.sh"
            let noDisk = try Command.run([script], check: false)
            #expect(noDisk.status == 2 && noDisk.stderr.contains("missing DISK"), "\(noDisk.stderr)")
            let noKernel = try Command.run([script, "/nonexistent/d.img", "--kernel", "/nonexistent/vmlinuz"], check: false)
            #expect(noKernel.status == 2 && noKernel.stderr.contains("--kernel: no such file: '/nonexistent/vmlinuz'"), "\(noKernel.stderr)")
            let noVersion = try Command.run([script, "/nonexistent/d.img", "--kernel", script, "--image", script], check: false)
            #expect(noVersion.status == 2 && noVersion.stderr.contains("--version is needed"), "\(noVersion.stderr)")
        }

        @Test("the root disk gets its UUID and label; a non-executable init is possible",
              .enabled(if: VMHost.bootSkipReason == nil, Comment(rawValue: VMHost.bootSkipReason ?? "")))
        func rootDiskContent() async throws {
            try await VMTest.run("rootdisk") { vm in
                let root = try vm.rootDisk(uuid: "0a0b0c0d-1111-2222-3333-444455556666", label: "unit-root",
                                           initExecutable: false)
                let probe = try Command.run(["blkid", "-p", "-o", "export", root.path])
                #expect(probe.stdout.contains("UUID=0a0b0c0d-1111-2222-3333-444455556666"))
                #expect(probe.stdout.contains("LABEL=unit-root"))
                #expect(probe.stdout.contains("TYPE=ext4"))
                let stat = try Command.run(["debugfs", "-R", "stat /usr/sbin/init", root.path])
                #expect(stat.stdout.contains("Mode:  0644"), "\(stat.stdout)")
            }
        }
    }
}
