#if canImport(Glibc)
import Glibc
#endif
import Testing
import SSICore
import SSILinux
import SSIConfig
@testable import SSIBoot

/// Which root a node mounts and how: RootPlan.decide and the checks and
/// messages around the mount, without a disk, a network or a kernel.
@Suite struct RootPlanTests {
    func decide(_ cmdline: String, _ cluster: NodeIdentity?) throws -> (plan: RootPlan, note: String?) {
        try RootPlan.decide(cluster: cluster, params: try BootTestConfigs.params(cmdline))
    }

    // MARK: no cluster configuration: the kernel's root=

    @Test func withoutAClusterTheKernelCommandLineIsTheWholePlan() throws {
        let (plan, note) = try decide("root=UUID=ABCD rootfstype=xfs rootflags=noatime rw rootdelay=5 rootwait=60", nil)
        #expect(plan == .local(.init(device: .uuid("abcd"), fsType: "xfs", flags: "noatime", readOnly: false,
                                     delaySeconds: 5, timeoutSeconds: 60)))
        #expect(note == nil)
    }

    @Test func withoutRootTheErrorIsLeftToTheMount() throws {
        // The mount step says "no root= on the kernel command line"; the
        // plan itself cannot fail for a plain local boot.
        let (plan, _) = try decide("console=ttyS0", nil)
        guard case .local(let root) = plan else { Issue.record("expected a local root, got \(plan)"); return }
        #expect(root.device == nil)
        #expect(root.readOnly)
        #expect(root.timeoutSeconds == 30)
    }

    @Test func rootDelayIsBoundedAgainBeforeTheSleep() {
        // BootParameters is public and settable by code: the sleep must not
        // overflow whatever it holds.
        var root = RootPlan.local(BootParameters())
        root.delaySeconds = Int.max / 2
        #expect(root.delayMilliseconds == 3_600_000)
        root.delaySeconds = -4
        #expect(root.delayMilliseconds == 0)
        root.delaySeconds = 7
        #expect(root.delayMilliseconds == 7000)
    }

    // MARK: CFS

    @Test func cfsInitNodeMountsItsConfiguredDeviceReadWrite() throws {
        let config = try BootTestConfigs.cfs()
        let (plan, note) = try decide("ro", try BootTestConfigs.identity(config, node: 1))
        guard case .cfsServer(let root) = plan else { Issue.record("expected the CFS server's root, got \(plan)"); return }
        #expect(root.device == .label("cluster-root"))
        #expect(!root.readOnly)
        // Told "ro": the step says it mounts read-write anyway.
        #expect(root.saysReadWrite)
        #expect(note == nil)
    }

    @Test func cfsInitNodeToldRWHasNothingToSay() throws {
        let config = try BootTestConfigs.cfs()
        let (plan, _) = try decide("rw", try BootTestConfigs.identity(config, node: 1))
        guard case .cfsServer(let root) = plan else { Issue.record("expected the CFS server's root, got \(plan)"); return }
        #expect(!root.saysReadWrite)
        #expect(!root.readOnly)
    }

    @Test func cfsInitNodeTakesRootFromTheCommandLineOverItsDevice() throws {
        // The server always serves; root= only says which of its disks.
        let config = try BootTestConfigs.cfs()
        let (plan, note) = try decide("root=/dev/vdb", try BootTestConfigs.identity(config, node: 1))
        guard case .cfsServer(let root) = plan else { Issue.record("expected the CFS server's root, got \(plan)"); return }
        #expect(root.device == .path("/dev/vdb"))
        #expect(note == nil)
    }

    @Test func cfsClientMountsTheInitNodesExport() throws {
        let config = try BootTestConfigs.cfs()
        let (plan, note) = try decide("console=ttyS0", try BootTestConfigs.identity(config, node: 2))
        guard case .cfsClient(let root) = plan else { Issue.record("expected a CFS client, got \(plan)"); return }
        #expect(root.server.number == 1)
        #expect(root.me.number == 2)
        #expect(root.source == "10.77.0.1:/")
        // The top level cached with /usr ([root] cached's default), the
        // other top-level directories coherent; nothing nested to cache.
        let cachedOptions = "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=10,lookupcache=all,addr=10.77.0.1,clientaddr=10.77.0.2"
        #expect(root.options == cachedOptions)
        #expect(root.coherent == .init(server: "10.77.0.1", options: ClusterConfig.CFS.defaultMountOptions + ",addr=10.77.0.1,clientaddr=10.77.0.2",
                                       skip: ["proc", "sys", "dev", "run", "usr", "var", "tmp"]))
        #expect(root.cached.isEmpty)
        let names = ["bin", "etc", "usr", "proc", "var", "tmp", "root", ".snapshot", "cluster", "lib", "vmlinuz", "home"]
        #expect(root.coherent?.directories(names) { !["bin", "lib", "vmlinuz"].contains($0) } == ["cluster", "etc", "home", "root"])
        #expect(root.waitSeconds == 120)
        #expect(root.network.description == "10.77.0.0/24")
        #expect(root.who == "the init node node1 (10.77.0.1)")
        #expect(note == nil)
    }

    @Test("[root] cached: a nested tree mounted cached over its coherent top-level directory; [] keeps one coherent root mount")
    func cfsClientCachedTrees() throws {
        let base = try BootTestConfigs.cfs()
        guard case .cfs(var cfs) = base.root else { Issue.record("not cfs"); return }
        var config = base
        cfs.cached = ["/usr", "/etc/systemd"]
        config.root = .cfs(cfs)
        var (plan, _) = try decide("", try BootTestConfigs.identity(config, node: 2))
        guard case .cfsClient(let nested) = plan else { Issue.record("expected a CFS client, got \(plan)"); return }
        #expect(nested.cached.map(\.target) == ["/sysroot/etc/systemd"])
        #expect(nested.cached.first?.options == nested.options)
        #expect(nested.coherent?.skip.contains("etc") == false)
        cfs.cached = []
        config.root = .cfs(cfs)
        (plan, _) = try decide("", try BootTestConfigs.identity(config, node: 2))
        guard case .cfsClient(let coherent) = plan else { Issue.record("expected a CFS client, got \(plan)"); return }
        #expect(coherent.options == ClusterConfig.CFS.defaultMountOptions + ",addr=10.77.0.1,clientaddr=10.77.0.2")
        #expect(coherent.coherent == nil && coherent.cached.isEmpty)
    }

    @Test func cfsClientWaitComesFromTheCommandLineFirst() throws {
        let config = try BootTestConfigs.cfs()
        let (plan, _) = try decide("ssi.root_wait=15", try BootTestConfigs.identity(config, node: 3))
        guard case .cfsClient(let root) = plan else { Issue.record("expected a CFS client, got \(plan)"); return }
        #expect(root.waitSeconds == 15)
    }

    @Test func cfsClientToldRootBootsThatDiskAndSaysSo() throws {
        let config = try BootTestConfigs.cfs()
        let (plan, note) = try decide("root=LABEL=rescue", try BootTestConfigs.identity(config, node: 2))
        guard case .local(let root) = plan else { Issue.record("expected a local root, got \(plan)"); return }
        #expect(root.device == .label("rescue"))
        #expect(root.readOnly)
        #expect(note == "root= is on the command line: mounting it rather than the CFS root from node 1")
    }

    // MARK: GFS2

    @Test func gfs2NodeMountsTheSharedDiskWithLockDLM() throws {
        let config = try BootTestConfigs.gfs2()
        let (plan, note) = try decide("ssi.timeout=45", try BootTestConfigs.identity(config, node: 2))
        guard case .gfs2(let root) = plan else { Issue.record("expected a gfs2 root, got \(plan)"); return }
        #expect(root.device == .label("ssi:root"))
        #expect(root.deviceText == "LABEL=ssi:root")
        #expect(root.lockTable == "ssi:root")
        #expect(root.options == "lockproto=lock_dlm")
        #expect(root.timeoutSeconds == 45)
        #expect(root.saysReadWrite)
        #expect(root.me.number == 2)
        #expect(note == nil)
    }

    @Test func gfs2OptionsFollowLockDLM() throws {
        let config = try BootTestConfigs.gfs2(rootLine: "options = \"noatime,quota=off\"")
        let (plan, _) = try decide("rw", try BootTestConfigs.identity(config, node: 1))
        guard case .gfs2(let root) = plan else { Issue.record("expected a gfs2 root, got \(plan)"); return }
        #expect(root.options == "lockproto=lock_dlm,noatime,quota=off")
        #expect(!root.saysReadWrite)
    }

    @Test func gfs2NodeToldRootBootsThatDiskAndSaysSo() throws {
        let config = try BootTestConfigs.gfs2()
        let (plan, note) = try decide("root=/dev/vda1", try BootTestConfigs.identity(config, node: 3))
        guard case .local(let root) = plan else { Issue.record("expected a local root, got \(plan)"); return }
        #expect(root.device == .path("/dev/vda1"))
        #expect(note == "root= is on the command line: mounting it rather than the GFS2 root LABEL=ssi:root")
    }

    // MARK: GFS2 prerequisites on the disk found

    func gfs2Root() throws -> RootPlan.GFS2Root {
        let config = try BootTestConfigs.gfs2()
        guard case .gfs2(let root) = try decide("", try BootTestConfigs.identity(config, node: 2)).plan else {
            throw SSIError("test", "no gfs2 plan")
        }
        return root
    }

    @Test func gfs2DiskOfThisLockTableIsAccepted() throws {
        let root = try gfs2Root()
        try root.check(BlockDevice(name: "vdb", path: "/dev/vdb", type: "gfs2", label: "ssi:root"))
        // libblkid may report no label: the type alone is checked then.
        try root.check(BlockDevice(name: "vdb", path: "/dev/vdb", type: "gfs2"))
    }

    @Test func anotherClustersDiskIsRefusedNamingBothTables() throws {
        let root = try gfs2Root()
        let error = #expect(throws: SSIError.self) {
            try root.check(BlockDevice(name: "vdb", path: "/dev/vdb", type: "gfs2", label: "other:root"))
        }
        #expect(error?.step == "root")
        #expect(error?.message == "/dev/vdb belongs to lock table \"other:root\", but this node's configuration says \"ssi:root\"; it does not mount another cluster's (or another file system's) disk")
        #expect(error?.hint?.hasSuffix("tunegfs2 -o locktable=ssi:root") == true)
    }

    @Test func aDiskThatIsNotGFS2IsRefusedSayingWhatItHolds() throws {
        let root = try gfs2Root()
        let ext4 = #expect(throws: SSIError.self) {
            try root.check(BlockDevice(name: "vdb", path: "/dev/vdb", type: "ext4", label: "ssi:root"))
        }
        #expect(ext4?.message == "LABEL=ssi:root (/dev/vdb) holds a ext4 file system, not gfs2")
        let blank = #expect(throws: SSIError.self) {
            try root.check(BlockDevice(name: "vdb", path: "/dev/vdb"))
        }
        #expect(blank?.message == "LABEL=ssi:root (/dev/vdb) holds no file system libblkid knows, not gfs2")
    }

    @Test func gfs2MountErrorsSayWhatToDo() throws {
        let root = try gfs2Root()
        let journals = root.mountError(errno: EUSERS, description: "mount: Too many users")
        #expect(journals.message == "no free journal on LABEL=ssi:root for node 2 (node2): every journal is in use, the disk has fewer journals than the nodes mounting it (mount: Too many users)")
        #expect(journals.hint?.contains("ssi cluster root add-journal") == true)
        let timeout = root.mountError(errno: ETIMEDOUT, description: "mount: timed out")
        #expect(timeout.message == "mount: timed out from LABEL=ssi:root")
        #expect(timeout.hint?.hasPrefix("the mount did not finish in 180 s") == true)
        #expect(root.mountError(errno: ENOTCONN, description: "x").hint == "the DLM has no connection to the cluster: check dlm_tool status")
        #expect(root.mountError(errno: EIO, description: "x").hint == "the kernel's gfs2 and dlm lines above say why")
        // The hint's 180 s is the bound the mount is given.
        #expect(RootPlan.GFS2Root.mountTimeoutMs == 180_000)
    }

    // MARK: local mount details

    @Test func fileSystemTypeIsRootFSTypeThenTheSuperblock() throws {
        var root = RootPlan.local(BootParameters())
        let ext4 = BlockDevice(name: "vda1", path: "/dev/vda1", type: "ext4")
        #expect(try root.fileSystemType(of: ext4) == "ext4")
        root.fsType = "ext2"
        #expect(try root.fileSystemType(of: ext4) == "ext2")
        root.fsType = nil
        let error = #expect(throws: SSIError.self) {
            try root.fileSystemType(of: BlockDevice(name: "vda2", path: "/dev/vda2"))
        }
        #expect(error?.message == "/dev/vda2 has no file system libblkid recognizes")
        #expect(error?.hint == "pass rootfstype= or check root=")
    }

    @Test func localMountLineAndHints() throws {
        var root = RootPlan.local(try BootTestConfigs.params("root=/dev/vda"))
        // VMTests grep "mounted /dev/vda": the line's shape is the contract.
        #expect(root.mountedLine(path: "/dev/vda", type: "ext4") == "mounted /dev/vda on /sysroot (ext4, ro)")
        root.readOnly = false
        root.flags = "discard"
        #expect(root.mountedLine(path: "/dev/vda", type: "ext4") == "mounted /dev/vda on /sysroot (ext4, rw, discard)")
        #expect(RootPlan.LocalRoot.mountHint(errno: ENODEV, type: "btrfs") == "the kernel has no btrfs driver: rebuild the image with --add-modules btrfs")
        #expect(RootPlan.LocalRoot.mountHint(errno: EINVAL, type: "btrfs") == "check rootfstype= and rootflags=")
    }

    @Test func cfsClientWaitWordsAndHints() throws {
        typealias C = RootPlan.CFSClientRoot
        #expect(C.describe(.refused) == "it is up but nothing listens on port 2049 (its NFS server is not running yet)")
        #expect(C.describe(.noAnswer("timed out")) == "no answer (timed out): it is down or unreachable")
        // A refusal comes back at once: the next probe waits longer.
        #expect(C.retryMilliseconds(after: .refused) == 500)
        #expect(C.retryMilliseconds(after: .noAnswer("x")) == 100)
        let network = try IPv4CIDR(parsingNetwork: "10.77.0.0/24")
        #expect(C.mountHint(errno: EACCES, network: network) == "check the export on the init node (exportfs -v): it must allow 10.77.0.0/24")
        #expect(C.mountHint(errno: EPERM, network: network) == C.mountHint(errno: EACCES, network: network))
        #expect(C.mountHint(errno: ETIMEDOUT, network: network) == "the init node's NFS server accepted the connection but did not answer the mount")
        #expect(C.mountHint(errno: EIO, network: network).hasPrefix("check the NFS server on the init node"))
    }

    // MARK: what follows the root

    @Test func whatFollowsEachRoot() {
        #expect(MountedRoot.cfsServer.after == .serveCFS)
        #expect(MountedRoot.cfsClient.after == .privatePaths)
        #expect(MountedRoot.gfs2.after == .privatePaths)
        #expect(MountedRoot.local.after == nil)
        // A root someone mounted in the shell is used as is.
        #expect(MountedRoot.alreadyMounted.after == nil)
    }
}

/// Which file system driver the root wait loads before the superblock is
/// read: the one disk file system the image carries, or none.
@Suite struct EarlyRootFileSystemTests {
    static func lookup(_ table: [String: ModuleLookup]) -> (String) -> ModuleLookup {
        { table[$0] ?? .notFound }
    }

    @Test("ext4's module serving ext2, ext3 and ext4 is one driver: ext4 is loaded early")
    func oneModuleForTheExtFamily() {
        let table: [String: ModuleLookup] = ["fs-ext4": .modules(["ext4"]), "fs-ext3": .modules(["ext4"]),
                                             "fs-ext2": .modules(["ext4"]), "fs-nfs4": .modules(["nfsv4"]),
                                             "fs-gfs2": .modules(["gfs2"]), "fs-vfat": .builtin]
        #expect(Boot.onlyDiskFileSystem(Self.lookup(table)) == "ext4")
    }

    @Test("two disk file systems carried: none is guessed; none carried: none")
    func severalOrNone() {
        #expect(Boot.onlyDiskFileSystem(Self.lookup(["fs-ext4": .modules(["ext4"]), "fs-xfs": .modules(["xfs"])])) == nil)
        #expect(Boot.onlyDiskFileSystem(Self.lookup(["fs-nfs4": .modules(["nfsv4"]), "fs-ext4": .builtin])) == nil)
        #expect(Boot.onlyDiskFileSystem(Self.lookup([:])) == nil)
    }

    @Test("only xfs carried: xfs")
    func onlyXFS() {
        #expect(Boot.onlyDiskFileSystem(Self.lookup(["fs-xfs": .modules(["xfs"]), "fs-gfs2": .modules(["gfs2"])])) == "xfs")
    }
}
