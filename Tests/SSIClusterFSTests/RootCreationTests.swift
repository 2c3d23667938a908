#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import SSITestSupport
import SSICore
import SSIConfig
@testable import SSILinux
@testable import SSIClusterFS

let gfs2Config = SampleConfigs.gfs2

/// A machine in memory for `ssi cluster root`: files with their kinds,
/// libblkid's answers, the mounts, the loop devices, the kernel's file
/// systems; every program run and every change is logged in order, and
/// each program's exit status is chosen by the test.
final class FakeRootHost {
    var configs: [String: String] = ["/etc/ssi/cluster.conf": gfs2Config]
    var files: [String: FileSystem.Status] = [:]
    var executables: Set<String> = ["/usr/sbin/mkfs.gfs2", "/usr/sbin/gfs2_jadd", "/usr/bin/tar", "/usr/sbin/modprobe"]
    var devices: [BlockDevice] = []
    var probes: [String: BlockDevice] = [:]
    var members: RootDiskSystem.MountedBy? = nil
    var loops: [(device: String, file: String)] = []
    var mounts: [Mount.Entry] = []
    var filesystems = "nodev\tproc\n\text4\nnodev\tgfs2\n"
    var exits: [String: SSILinux.Process.Exit] = [:]   // by program name
    var mountError: Int32? = nil
    var unmountError: Int32? = nil
    var copyError: Int32? = nil
    var jindex: [String] = ["journal0", "journal1", "per_node", "journalx"]
    var clock = 100.0
    var log: [String] = []
    var output: [String] = []
    var warnings: [String] = []
    /// Runs when a program is run (after it is logged).
    var onRun: [String: () -> Void] = [:]

    init() {
        files["/dev/vdb"] = Self.status(.blockDevice, rdev: (254, 16))
        files["/srv/tree"] = Self.status(.directory)
        files["/srv/tree.tar.zst"] = Self.status(.regular, size: 300 << 20)
        files["/srv/root.img"] = Self.status(.regular, size: 4 << 30)
        devices = [BlockDevice(name: "vda", path: "/dev/vda", type: "ext4", label: "boot"),
                   BlockDevice(name: "vdb", path: "/dev/vdb")]
    }

    static func status(_ kind: FileSystem.Kind, size: Int = 0, rdev: (UInt32, UInt32) = (0, 0)) -> FileSystem.Status {
        FileSystem.Status(kind: kind, mode: 0o644, size: size, device: 2049, rdevMajor: rdev.0, rdevMinor: rdev.1)
    }

    var system: RootDiskSystem {
        RootDiskSystem(
            loadConfig: { [unowned self] path throws(SSIError) in
                guard let text = self.configs[path] else { throw SSIError("config", "\(path): no such file") }
                return try ClusterConfig.parse(text: text, file: path)
            },
            status: { [unowned self] in self.files[$0] },
            realPath: { $0 == "/srv/current.img" ? "/srv/root.img" : $0 },
            isExecutableFile: { [unowned self] in self.executables.contains($0) },
            blockDevices: { [unowned self] in self.devices },
            probe: { [unowned self] p in self.probes[p] ?? (self.files[p] != nil ? BlockDevice(name: "", path: p) : nil) },
            membersMounting: { [unowned self] _ in self.members },
            loopDevices: { [unowned self] in self.loops },
            mounts: { [unowned self] in self.mounts },
            filesystems: { [unowned self] in self.filesystems },
            kernelRelease: { "6.1.0-test" },
            execute: { [unowned self] path, args throws(SystemCallError) in
                self.log.append(([path] + args).joined(separator: " "))
                let name = String(path.split(separator: "/").last ?? "")
                self.onRun[name]?()
                return self.exits[name] ?? .exited(0)
            },
            makeTemporaryDirectory: { [unowned self] prefix throws(SSIError) in
                self.log.append("mkdtemp \(prefix)")
                return "/run/\(prefix).X"
            },
            removeDirectory: { [unowned self] in self.log.append("rmdir \($0)") },
            attachLoop: { [unowned self] file throws(SystemCallError) in
                self.log.append("attach \(file) to /dev/loop7")
                return .init(path: "/dev/loop7", holder: LoopHolder { self.log.append("detach /dev/loop7") })
            },
            mount: { [unowned self] source, target, type, data throws(SystemCallError) in
                self.log.append("mount \(source) on \(target) (\(type)) \(data ?? "-")")
                if let e = self.mountError { throw SystemCallError("mount \(source) on \(target) (\(type))", errno: e) }
            },
            unmount: { [unowned self] target throws(SystemCallError) in
                self.log.append("umount \(target)")
                if let e = self.unmountError { throw SystemCallError("umount \(target)", errno: e) }
            },
            copyTree: { [unowned self] source, destination throws(SystemCallError) in
                self.log.append("copy \(source) to \(destination)")
                if let e = self.copyError { throw SystemCallError("open \(source)/etc/shadow", errno: e) }
                self.clock += 1.25
                return 1234
            },
            list: { [unowned self] dir in dir.hasSuffix("/jindex") ? self.jindex : nil },
            sync: { [unowned self] in self.log.append("sync") },
            now: { [unowned self] in self.clock },
            print: { [unowned self] in self.output.append($0) },
            warn: { [unowned self] in self.warnings.append($0.description) })
    }

    func creation(_ options: RootCreation.Options) -> RootCreation { RootCreation(options, system: system) }
}

/// Logs when released: the loop device's detach.
final class LoopHolder {
    let released: () -> Void
    init(_ released: @escaping () -> Void) { self.released = released }
    deinit { released() }
}

@Suite struct RootCreationTests {
    static let dev = RootCreation.Options(device: "/dev/vdb", source: "/srv/tree")

    @Test("the plan: mkfs.gfs2 with lock_dlm, the cluster's lock table, one journal per node plus the spares, the journal size")
    func planIsExact() throws {
        let host = FakeRootHost()
        let plan = try host.creation(Self.dev).plan()
        #expect(plan.mkfs == ["/usr/sbin/mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", "ssi:root", "-j", "4", "-J", "64", "/dev/vdb"])
        #expect(plan.target == .init(path: "/dev/vdb", isFile: false))
        #expect(plan.source == .directory)
        #expect(plan.journals == 4 && plan.nodes == 3 && plan.lockTable == "ssi:root" && plan.clusterName == "ssi")

        var o = Self.dev
        o.spareJournals = 0
        o.journalMiB = 8
        o.device = "LABEL=boot"   // resolved through libblkid's list
        o.force = true
        host.probes["/dev/vda"] = BlockDevice(name: "vda", path: "/dev/vda", type: "ext4", label: "boot")
        host.files["/dev/vda"] = FakeRootHost.status(.blockDevice, rdev: (254, 0))
        #expect(try host.creation(o).plan().mkfs
                == ["/usr/sbin/mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", "ssi:root", "-j", "3", "-J", "8", "/dev/vda"])

        o = Self.dev
        o.device = "/srv/current.img"   // an image file, by a link: its real path
        host.files["/srv/current.img"] = FakeRootHost.status(.regular, size: 1 << 30)
        o.spareJournals = 64
        let p = try host.creation(o).plan()
        #expect(p.target == .init(path: "/srv/root.img", isFile: true))
        #expect(p.mkfs.suffix(5) == ["-j", "67", "-J", "64", "/srv/root.img"])
        #expect(host.log == [])   // planning writes nothing
    }

    @Test("create on a block device: mkfs, a lock_nolock mount, the copy, sync, unmount, and one line saying what it made")
    func createOnABlockDevice() throws {
        let host = FakeRootHost()
        try host.creation(Self.dev).create()
        #expect(host.log == [
            "mkdtemp ssi-root-create",
            "/usr/sbin/mkfs.gfs2 -O -p lock_dlm -t ssi:root -j 4 -J 64 /dev/vdb",
            "mount /dev/vdb on /run/ssi-root-create.X (gfs2) lockproto=lock_nolock",
            "copy /srv/tree to /run/ssi-root-create.X",
            "sync",
            "umount /run/ssi-root-create.X",
            "rmdir /run/ssi-root-create.X",
        ])
        #expect(host.output == ["ssi-cluster root create: /dev/vdb is the GFS2 root of cluster ssi: lock table ssi:root, "
                                + "4 journals of 64 MiB (3 nodes + 1 spare), 1234 entries copied from /srv/tree in 1.2 s"])
    }

    @Test("create on an image file from a tarball: the file on a loop device, tar into the mount, detached after the unmount")
    func createOnAnImageFromATarball() throws {
        let host = FakeRootHost()
        try host.creation(.init(device: "/srv/root.img", source: "/srv/tree.tar.zst", spareJournals: 2, journalMiB: 32)).create()
        #expect(host.log == [
            "mkdtemp ssi-root-create",
            "/usr/sbin/mkfs.gfs2 -O -p lock_dlm -t ssi:root -j 5 -J 32 /srv/root.img",
            "attach /srv/root.img to /dev/loop7",
            "mount /dev/loop7 on /run/ssi-root-create.X (gfs2) lockproto=lock_nolock",
            "/usr/bin/tar -x -p --numeric-owner -f /srv/tree.tar.zst -C /run/ssi-root-create.X",
            "sync",
            "umount /run/ssi-root-create.X",
            "detach /dev/loop7",
            "rmdir /run/ssi-root-create.X",
        ])
        #expect(host.output == ["ssi-cluster root create: /srv/root.img is the GFS2 root of cluster ssi: lock table ssi:root, "
                                + "5 journals of 32 MiB (3 nodes + 2 spare), unpacked /srv/tree.tar.zst in 0.0 s"])
    }

    /// The refusal of `options` on `host`, checking that nothing was written.
    func refusal(_ host: FakeRootHost, _ options: RootCreation.Options = dev) -> String? {
        let error = #expect(throws: SSIError.self) { try host.creation(options).create() }
        #expect(!host.log.contains { $0.hasPrefix("/usr/sbin/mkfs.gfs2") || $0.hasPrefix("mkdtemp") }, "\(host.log)")
        #expect(host.output == [])
        return error?.description
    }

    @Test("a disk a cluster member has mounted is refused, with --force too, naming the members")
    func refusesADiskAMemberHasMounted() {
        let host = FakeRootHost()
        host.probes["/dev/vdb"] = BlockDevice(name: "vdb", path: "/dev/vdb", type: "gfs2", label: "ssi:root")
        host.members = .init(clusterName: "ssi", members: [("node1", 1), ("", 3)])
        var o = Self.dev
        o.force = true
        #expect(refusal(host, o) == "root: /dev/vdb holds the GFS2 file system ssi:root, mounted on node1 (1), node (3) in cluster ssi; "
                + "formatting it would destroy it under them (--force does not override this); "
                + "unmount it on every node first (for a cluster root: stop the cluster)")
    }

    @Test("a GFS2 disk no member has mounted needs --force; off the cluster --force warns that nobody could be asked")
    func existingFileSystemNeedsForce() throws {
        let host = FakeRootHost()
        host.probes["/dev/vdb"] = BlockDevice(name: "vdb", path: "/dev/vdb", type: "gfs2", label: "ssi:root")
        host.members = .init(clusterName: "ssi", members: [])
        #expect(refusal(host) == "root: /dev/vdb holds a gfs2 file system labelled \"ssi:root\"; formatting it destroys it; "
                + "check that it is the right disk, then pass --force")
        #expect(host.warnings == [])

        host.members = nil   // not a running cluster member
        var o = Self.dev
        o.force = true
        try host.creation(o).create()
        #expect(host.warnings == ["root: warning: this machine is not a running cluster member, so the members cannot be asked "
                                  + "whether they have ssi:root mounted; make sure no node does"])
        #expect(host.log.contains("/usr/sbin/mkfs.gfs2 -O -p lock_dlm -t ssi:root -j 4 -J 64 /dev/vdb"))
    }

    @Test("a disk mounted here is refused: a block device by its number, an image file through its loop device")
    func refusesADiskMountedHere() {
        let host = FakeRootHost()
        host.mounts = [Mount.Entry(device: "254:16", mountPoint: "/mnt", type: "gfs2"),
                       Mount.Entry(device: "254:1", mountPoint: "/", type: "ext4")]
        var o = Self.dev
        o.force = true
        #expect(refusal(host, o) == "root: /dev/vdb is mounted on /mnt here; unmount it first; never format a disk a node uses")

        host.loops = [(device: "7:3", file: "/srv/other.img"), (device: "7:4", file: "/srv/root.img")]
        host.mounts.append(Mount.Entry(device: "7:4", mountPoint: "/srv/mnt", type: "ext4"))
        o.device = "/srv/root.img"
        #expect(refusal(host, o) == "root: /srv/root.img is mounted on /srv/mnt here; unmount it first; never format a disk a node uses")
    }

    @Test("neither a block device nor an image file, too small, not there, not found by label: refused")
    func refusesWhatIsNotADisk() {
        let host = FakeRootHost()
        host.files["/dev/ttyS0"] = FakeRootHost.status(.characterDevice)
        host.files["/srv/small.img"] = FakeRootHost.status(.regular, size: 100 << 20)
        var o = Self.dev
        o.device = "/dev/ttyS0"
        #expect(refusal(host, o) == "root: --gfs2 /dev/ttyS0 is neither a block device nor a disk image file")
        o.device = "/srv/small.img"
        #expect(refusal(host, o) == "root: --gfs2 /srv/small.img is 100 MiB; a GFS2 root needs at least 256 MiB plus the tree; "
                + "grow it (truncate -s 2G /srv/small.img)")
        o.device = "/dev/vdz"
        #expect(refusal(host, o) == "root: --gfs2 /dev/vdz: no such device or file")
        o.device = "LABEL=ssi:root"
        #expect(refusal(host, o) == "root: no block device is LABEL=ssi:root (seen: vda (ext4, LABEL=boot), vdb (no file system)); "
                + "check the disk is attached to this machine (lsblk), or give its path: --gfs2 /dev/NAME")
    }

    @Test("the tree: a missing source and one that is neither a folder nor a tarball are refused")
    func refusesABadSource() {
        let host = FakeRootHost()
        host.files["/srv/fifo"] = FakeRootHost.status(.fifo)
        var o = Self.dev
        o.source = "/srv/none"
        #expect(refusal(host, o) == "root: --from /srv/none: no such file or folder")
        o.source = "/srv/fifo"
        #expect(refusal(host, o) == "root: --from /srv/fifo is neither a folder nor a tarball")
    }

    @Test("the configuration: a cfs root, a lock table of another cluster, bad journal counts and sizes are refused")
    func refusesTheConfiguration() throws {
        let host = FakeRootHost()
        host.configs["/etc/cfs.conf"] = """
            [cluster]
            name = "ssi"

            [network]
            prefix = "10.77.0.0/24"

            [root]
            type = "cfs"
            server = 1

            [[node]]
            number = 1
            mac = "52:54:00:00:00:01"
            address = "10.77.0.1"
            role = "init"

            """
        var o = Self.dev
        o.config = "/etc/cfs.conf"
        #expect(refusal(host, o) == "root: /etc/cfs.conf: the root is cfs, not gfs2; set [root] type = \"gfs2\" with device and lock_table")

        // dlm refuses a mount whose lock table names another cluster: the
        // configuration is refused before any disk is looked at.
        host.configs["/etc/other.conf"] = gfs2Config.replacingOccurrences(of: "lock_table = \"ssi:root\"", with: "lock_table = \"other:root\"")
        o.config = "/etc/other.conf"
        let mismatch = try #require(refusal(host, o))
        #expect(mismatch.contains("root.lock_table: the lock table's cluster \"other\" is not the cluster name \"ssi\": dlm would refuse the mount"), "\(mismatch)")
        #expect(mismatch.contains("use lock_table = \"ssi:root\" (tunegfs2 -o locktable=ssi:root DEVICE changes it on the disk)"), "\(mismatch)")

        o = Self.dev
        o.spareJournals = 65
        #expect(refusal(host, o) == "root: --spare-journals 65 is not 0...64")
        o.spareJournals = -1
        #expect(refusal(host, o) == "root: --spare-journals -1 is not 0...64")
        o = Self.dev
        o.journalMiB = 4
        #expect(refusal(host, o) == "root: --journal-size 4 is not 8...1024 MiB")
        o.journalMiB = 1025
        #expect(refusal(host, o) == "root: --journal-size 1025 is not 8...1024 MiB")
    }

    @Test("missing tools: mkfs.gfs2 and tar name their package; a kernel without gfs2 (after modprobe) is refused before mkfs")
    func refusesMissingTools() throws {
        let host = FakeRootHost()
        host.executables.remove("/usr/sbin/mkfs.gfs2")
        #expect(refusal(host) == "root: mkfs.gfs2 is not installed; apt-get install gfs2-utils")

        let noDriver = FakeRootHost()
        noDriver.filesystems = "nodev\tproc\n\text4\n"
        #expect(refusal(noDriver) == "root: this kernel (6.1.0-test) has no gfs2 driver: the tree could not be copied onto the new file system; "
                + "nothing was written; run the command on a machine whose kernel has GFS2 (Debian's has it as a module), such as a cluster node")
        #expect(noDriver.log == ["/usr/sbin/modprobe -q gfs2"])

        // modprobe loads it: on with the creation.
        let module = FakeRootHost()
        module.filesystems = "nodev\tproc\n"
        module.onRun["modprobe"] = { module.filesystems += "nodev\tgfs2\n" }
        _ = try module.creation(Self.dev).plan()
        #expect(module.log == ["/usr/sbin/modprobe -q gfs2"])

        // tar is looked for only for a tarball, after mkfs: the disk is
        // then left half made, and the message says so.
        let noTar = FakeRootHost()
        noTar.executables.remove("/usr/bin/tar")
        let error = #expect(throws: SSIError.self) {
            try noTar.creation(.init(device: "/dev/vdb", source: "/srv/tree.tar.zst")).create()
        }
        #expect(error?.description == "root: tar is not installed; /dev/vdb now holds an empty or partly filled GFS2 root; "
                + "fix the cause and run this again with --force; apt-get install tar")
        #expect(noTar.log.suffix(3) == ["sync", "umount /run/ssi-root-create.X", "rmdir /run/ssi-root-create.X"])
    }

    @Test("after mkfs: a failed mkfs, mount, copy or unmount says what state the disk is in; the mount point is always removed")
    func failuresAfterMkfs() {
        let mkfs = FakeRootHost()
        mkfs.exits["mkfs.gfs2"] = .exited(1)
        let e1 = #expect(throws: SSIError.self) { try mkfs.creation(Self.dev).create() }
        #expect(e1?.description == "root: mkfs.gfs2 failed (exit status 1); its messages are above")
        #expect(mkfs.log.last == "rmdir /run/ssi-root-create.X")

        let mount = FakeRootHost()
        mount.mountError = ENODEV
        let e2 = #expect(throws: SSIError.self) { try mount.creation(Self.dev).create() }
        #expect(e2?.message == "\(SystemCallError("mount /dev/vdb on /run/ssi-root-create.X (gfs2)", errno: ENODEV).description); "
                + "/dev/vdb now holds an empty or partly filled GFS2 root; fix the cause and run this again with --force")
        #expect(e2?.hint == "this kernel has no gfs2 driver (modprobe gfs2): run the command on a machine whose kernel has it, such as a cluster node")
        #expect(mount.log.last == "rmdir /run/ssi-root-create.X")

        let copy = FakeRootHost()
        copy.copyError = EACCES
        let e3 = #expect(throws: SSIError.self) { try copy.creation(Self.dev).create() }
        #expect(e3?.message == "copying /srv/tree: \(SystemCallError("open /srv/tree/etc/shadow", errno: EACCES).description); "
                + "/dev/vdb now holds an empty or partly filled GFS2 root; fix the cause and run this again with --force")
        #expect(copy.log.suffix(3) == ["sync", "umount /run/ssi-root-create.X", "rmdir /run/ssi-root-create.X"])

        let umount = FakeRootHost()
        umount.unmountError = EBUSY
        let e4 = #expect(throws: SSIError.self) { try umount.creation(Self.dev).create() }
        #expect(e4?.description == "root: \(SystemCallError("umount /run/ssi-root-create.X", errno: EBUSY).description): "
                + "the tree was copied, but the disk is still mounted on /run/ssi-root-create.X; "
                + "umount /run/ssi-root-create.X before any node boots from it")
        #expect(umount.output == [])
    }
}

@Suite struct JournalAdditionTests {
    @Test("how many: --count when given, else the configured nodes beyond the journals there, never negative")
    func wanted() {
        #expect(JournalAddition.wanted(count: nil, nodes: 5, have: 3) == 2)
        #expect(JournalAddition.wanted(count: nil, nodes: 3, have: 4) == 0)
        #expect(JournalAddition.wanted(count: nil, nodes: 3, have: 3) == 0)
        #expect(JournalAddition.wanted(count: 7, nodes: 3, have: 4) == 7)
        #expect(JournalAddition.wanted(count: 0, nodes: 9, have: 1) == 0)
    }

    @Test("journals are the journalN files of the jindex")
    func countsJournalFiles() {
        #expect(GFS2Journals.journals(in: ["journal0", "journal1", "journal12", "per_node", "journalx", "journal", "jour1"]) == 3)
        #expect(GFS2Journals.journals(in: []) == 0)
    }

    func mountedHost() -> FakeRootHost {
        let host = FakeRootHost()
        host.mounts = [Mount.Entry(device: "254:16", mountPoint: "/", type: "gfs2")]
        return host
    }

    @Test("add-journal with 2 journals for 3 nodes: gfs2_jadd -j 1, counted again through gfs2meta")
    func addsWhatTheNodesNeed() throws {
        let host = mountedHost()
        host.onRun["gfs2_jadd"] = { host.jindex.append("journal2") }
        try JournalAddition(.init(), system: host.system).add()
        let meta = [
            "mkdtemp ssi-gfs2meta",
            "mount / on /run/ssi-gfs2meta.X (gfs2meta) -",
            "umount /run/ssi-gfs2meta.X",
            "rmdir /run/ssi-gfs2meta.X",
        ]
        #expect(host.log == meta + ["/usr/sbin/gfs2_jadd -j 1 -J 64 /"] + meta)
        #expect(host.output.first == "ssi-cluster root add-journal: / had 2 journals, now 3 (for 3 configured nodes)")
        #expect(host.output.count == 2 && host.output[1].hasPrefix("  note: the nodes that have it mounted now learn of the new journals"))
    }

    @Test("add-journal --count and --journal-size go to gfs2_jadd as given")
    func countAndSizeAsGiven() throws {
        let host = FakeRootHost()
        host.mounts = [Mount.Entry(device: "254:16", mountPoint: "/srv/root", type: "gfs2")]
        try JournalAddition(.init(count: 5, journalMiB: 128, mountPoint: "/srv/root"), system: host.system).add()
        #expect(host.log.contains("/usr/sbin/gfs2_jadd -j 5 -J 128 /srv/root"))
    }

    @Test("nothing to add: said, and gfs2_jadd not run")
    func nothingToAdd() throws {
        let host = mountedHost()
        host.jindex = ["journal0", "journal1", "journal2"]
        try JournalAddition(.init(), system: host.system).add()
        #expect(!host.log.contains { $0.contains("gfs2_jadd") })
        #expect(host.output == ["ssi-cluster root add-journal: 3 journals for 3 configured nodes: nothing to add"])
    }

    @Test("refused: not a GFS2 mount (the last mount at the place counts), a bad journal size, no gfs2_jadd, a failed gfs2meta mount")
    func refusals() {
        func refusal(_ host: FakeRootHost, _ o: JournalAddition.Options = .init()) -> String? {
            let error = #expect(throws: SSIError.self) { try JournalAddition(o, system: host.system).add() }
            #expect(!host.log.contains { $0.contains("gfs2_jadd") })
            return error?.description
        }
        let covered = mountedHost()
        covered.mounts.append(Mount.Entry(device: "0:40", mountPoint: "/", type: "overlay"))
        #expect(refusal(covered) == "root: / is not a GFS2 file system; give the GFS2 root's mount point with --mount-point")
        #expect(covered.log == [])
        #expect(refusal(mountedHost(), .init(journalMiB: 2048)) == "root: --journal-size 2048 is not 8...1024 MiB")
        let noJadd = mountedHost()
        noJadd.executables.remove("/usr/sbin/gfs2_jadd")
        #expect(refusal(noJadd) == "root: gfs2_jadd is not installed; apt-get install gfs2-utils")
        let noMeta = mountedHost()
        noMeta.mountError = ENODEV
        #expect(refusal(noMeta) == "root: reading the journal index: \(SystemCallError("mount / on /run/ssi-gfs2meta.X (gfs2meta)", errno: ENODEV).description)")
        #expect(noMeta.log.last == "rmdir /run/ssi-gfs2meta.X")
    }
}

/// mkfs.gfs2 for real, on a sparse file in /tmp: the plan's command line is
/// one that gfs2-utils accepts and makes what the plan says.
@Suite struct RootCreationHostTests {
    static let mkfsSkip: String? = FileSystem.isExecutableFile("/usr/sbin/mkfs.gfs2") && FileSystem.isExecutableFile("/usr/sbin/gfs2_edit")
        ? nil : "mkfs.gfs2 or gfs2_edit is not installed (apt-get install gfs2-utils)"

    /// A program's output (stdout and stderr), for checking what mkfs made.
    static func output(_ path: String, _ args: [String]) throws -> String {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test("the planned mkfs.gfs2 on a sparse image: lock_dlm, the lock table, 4 journals; libblkid then sees it and create refuses it without --force",
          .enabled(if: mkfsSkip == nil, Comment(rawValue: mkfsSkip ?? "")), .timeLimit(.minutes(1)))
    func mkfsOnASparseFile() throws {
        let image = "/tmp/ssi-root-create-test-\(getpid()).img"
        unlink(image)
        let fd = open(image, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        try #require(fd >= 0)
        defer { unlink(image) }
        #expect(ftruncate(fd, 300 << 20) == 0)
        close(fd)

        // The host's system but for the configuration and the kernel's
        // file systems (this kernel may have no gfs2; mkfs needs none).
        var system = RootDiskSystem.host(membersMounting: { _ in nil }, warn: { _ in })
        system.loadConfig = { path throws(SSIError) in try ClusterConfig.parse(text: gfs2Config, file: path) }
        system.filesystems = { "nodev\tgfs2\n" }
        let creation = RootCreation(.init(device: image, source: "/tmp", spareJournals: 1, journalMiB: 8), system: system)
        let plan = try creation.plan()
        #expect(plan.mkfs == ["/usr/sbin/mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", "ssi:root", "-j", "4", "-J", "8", image])
        try HostTools.run(plan.mkfs[0], Array(plan.mkfs.dropFirst()), what: "mkfs.gfs2", execute: system.execute)

        let seen = try #require(BlockDevices.probe(image))
        #expect(seen.type == "gfs2" && seen.label == "ssi:root")
        let sb = try Self.output("/usr/sbin/gfs2_edit", ["-p", "sb", image])
        #expect(sb.contains("lock_dlm"), "\(sb)")
        let jindex = try Self.output("/usr/sbin/gfs2_edit", ["-p", "jindex", image])
        let names = jindex.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        #expect(GFS2Journals.journals(in: names) == 4, "\(jindex)")

        // Made once: a second create needs --force, and with a member
        // that has it mounted is refused outright.
        let again = #expect(throws: SSIError.self) { try creation.plan() }
        #expect(again?.message == "\(image) holds a gfs2 file system labelled \"ssi:root\"; formatting it destroys it")
        system.membersMounting = { _ in .init(clusterName: "ssi", members: [("node2", 2)]) }
        let used = #expect(throws: SSIError.self) {
            try RootCreation(.init(device: image, source: "/tmp", force: true), system: system).plan()
        }
        #expect(used?.message.hasPrefix("\(image) holds the GFS2 file system ssi:root, mounted on node2 (2) in cluster ssi") == true)
    }
}
