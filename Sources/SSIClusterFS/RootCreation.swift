#if canImport(Glibc)
import Glibc
#endif
public import SSICore
public import SSILinux
public import SSIConfig

/// What `ssi cluster root create` and `add-journal` read and change on the
/// machine: the host's by default (`host`), replayed in memory by the tests.
public struct RootDiskSystem {
    /// The members of the running cluster that have a GFS2 file system
    /// (by lock table) mounted.
    public struct MountedBy: Sendable, Equatable {
        public var clusterName: String
        public var members: [(name: String, number: UInt32)]

        public init(clusterName: String, members: [(name: String, number: UInt32)]) {
            self.clusterName = clusterName
            self.members = members
        }

        public static func == (a: MountedBy, b: MountedBy) -> Bool {
            a.clusterName == b.clusterName && a.members.elementsEqual(b.members) { $0 == $1 }
        }
    }

    /// A loop device attached to a disk image file; detached (autoclear)
    /// once `holder` is released after the unmount.
    public struct Loop {
        public var path: String
        public var holder: AnyObject

        public init(path: String, holder: AnyObject) {
            self.path = path
            self.holder = holder
        }
    }

    public var loadConfig: (String) throws(SSIError) -> ClusterConfig
    /// stat(2), following links; nil when there is nothing there.
    public var status: (String) -> FileSystem.Status?
    public var realPath: (String) -> String?
    public var isExecutableFile: (String) -> Bool
    /// libblkid's view of every block device, and of one.
    public var blockDevices: () -> [BlockDevice]
    public var probe: (String) -> BlockDevice?
    /// nil: this machine is not a running cluster member (nobody to ask).
    public var membersMounting: (_ lockTable: String) -> MountedBy?
    /// Every loop device ("MAJOR:MINOR") with its backing file.
    public var loopDevices: () -> [(device: String, file: String)]
    /// This machine's mounts (/proc/self/mountinfo), in mount order.
    public var mounts: () -> [Mount.Entry]
    /// The text of /proc/filesystems.
    public var filesystems: () -> String
    public var kernelRelease: () -> String
    /// Runs a program (mkfs.gfs2, tar, modprobe, gfs2_jadd) to its end.
    public var execute: (_ path: String, _ args: [String]) throws(SystemCallError) -> Process.Exit
    /// A new empty folder for a temporary mount point, and its removal.
    public var makeTemporaryDirectory: (_ prefix: String) throws(SSIError) -> String
    public var removeDirectory: (String) -> Void
    public var attachLoop: (_ file: String) throws(SystemCallError) -> Loop
    public var mount: (_ source: String, _ target: String, _ type: String, _ data: String?) throws(SystemCallError) -> Void
    public var unmount: (String) throws(SystemCallError) -> Void
    /// Copies a tree into an existing folder; the number of entries.
    public var copyTree: (_ source: String, _ destination: String) throws(SystemCallError) -> Int
    public var list: (String) -> [String]?
    public var sync: () -> Void
    /// Monotonic seconds.
    public var now: () -> Double
    /// A line of the command's report (stdout), and a warning (stderr).
    public var print: (String) -> Void
    public var warn: (SSIError) -> Void

    public init(loadConfig: @escaping (String) throws(SSIError) -> ClusterConfig,
                status: @escaping (String) -> FileSystem.Status?,
                realPath: @escaping (String) -> String?,
                isExecutableFile: @escaping (String) -> Bool,
                blockDevices: @escaping () -> [BlockDevice],
                probe: @escaping (String) -> BlockDevice?,
                membersMounting: @escaping (_ lockTable: String) -> MountedBy?,
                loopDevices: @escaping () -> [(device: String, file: String)],
                mounts: @escaping () -> [Mount.Entry],
                filesystems: @escaping () -> String,
                kernelRelease: @escaping () -> String,
                execute: @escaping (_ path: String, _ args: [String]) throws(SystemCallError) -> Process.Exit,
                makeTemporaryDirectory: @escaping (_ prefix: String) throws(SSIError) -> String,
                removeDirectory: @escaping (String) -> Void,
                attachLoop: @escaping (_ file: String) throws(SystemCallError) -> Loop,
                mount: @escaping (_ source: String, _ target: String, _ type: String, _ data: String?) throws(SystemCallError) -> Void,
                unmount: @escaping (String) throws(SystemCallError) -> Void,
                copyTree: @escaping (_ source: String, _ destination: String) throws(SystemCallError) -> Int,
                list: @escaping (String) -> [String]?,
                sync: @escaping () -> Void,
                now: @escaping () -> Double,
                print: @escaping (String) -> Void,
                warn: @escaping (SSIError) -> Void) {
        self.loadConfig = loadConfig
        self.status = status
        self.realPath = realPath
        self.isExecutableFile = isExecutableFile
        self.blockDevices = blockDevices
        self.probe = probe
        self.membersMounting = membersMounting
        self.loopDevices = loopDevices
        self.mounts = mounts
        self.filesystems = filesystems
        self.kernelRelease = kernelRelease
        self.execute = execute
        self.makeTemporaryDirectory = makeTemporaryDirectory
        self.removeDirectory = removeDirectory
        self.attachLoop = attachLoop
        self.mount = mount
        self.unmount = unmount
        self.copyTree = copyTree
        self.list = list
        self.sync = sync
        self.now = now
        self.print = print
        self.warn = warn
    }

    /// This machine. The members' mounts come from the caller (the
    /// cluster view is the membership agent's), and so do warnings.
    public static func host(membersMounting: @escaping (_ lockTable: String) -> MountedBy?,
                            warn: @escaping (SSIError) -> Void) -> RootDiskSystem {
        RootDiskSystem(
            loadConfig: { path throws(SSIError) in try ClusterConfig.load(path: path) },
            status: { try? FileSystem.status($0, followSymlinks: true) },
            realPath: { try? FileSystem.realPath($0) },
            isExecutableFile: { FileSystem.isExecutableFile($0) },
            blockDevices: { BlockDevices.scan() },
            probe: { BlockDevices.probe($0) },
            membersMounting: membersMounting,
            loopDevices: {
                var out: [(device: String, file: String)] = []
                for loop in (try? FileSystem.list("/sys/block")) ?? [] where loop.hasPrefix("loop") {
                    if let backing = try? FileSystem.readText("/sys/block/\(loop)/loop/backing_file"),
                       let file = backing.lines().first.map(String.init),
                       let dev = try? FileSystem.readText("/sys/block/\(loop)/dev") {
                        out.append((String(dev.lines().first ?? ""), file))
                    }
                }
                return out
            },
            mounts: { Mount.entries() },
            filesystems: { (try? FileSystem.readText("/proc/filesystems")) ?? "" },
            kernelRelease: { Process.kernelRelease() },
            execute: { path, args throws(SystemCallError) in try HostTools.execute(path, args) },
            makeTemporaryDirectory: { prefix throws(SSIError) in try temporaryDirectory(prefix) },
            removeDirectory: { _ = rmdir($0) },
            attachLoop: { file throws(SystemCallError) in
                let loop = try LoopDevice(attaching: file)
                return Loop(path: loop.path, holder: loop)
            },
            mount: { source, target, type, data throws(SystemCallError) in
                try Mount.mount(source: source, target: target, type: type, data: data)
            },
            unmount: { target throws(SystemCallError) in try Mount.unmount(target) },
            copyTree: { source, destination throws(SystemCallError) in
                try FileSystem.copyTree(source, to: destination, intoExisting: true)
            },
            list: { try? FileSystem.list($0) },
            sync: { Glibc.sync() },
            now: { Process.now() },
            print: { Swift.print($0) },
            warn: warn)
    }

    /// A new empty folder in /run (a tmpfs, writable when / is read-only),
    /// for a temporary mount point.
    static func temporaryDirectory(_ prefix: String) throws(SSIError) -> String {
        var template = Array("/run/\(prefix).XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            let lastErrno = errno
            throw SSIError("root", "making a mount point in /run: \(errnoDescription(lastErrno))")
        }
        return String(cString: p)
    }
}

/// `ssi cluster root create`: formats a shared disk with GFS2 for the
/// configured cluster and fills it with a distro tree. `plan` makes every
/// check before anything is written (and refuses a disk in use); `create`
/// then runs mkfs.gfs2 and copies the tree onto it, mounted alone.
public struct RootCreation {
    public struct Options: Sendable {
        /// --gfs2: /dev/NAME, UUID=..., LABEL=..., or a disk image file.
        public var device: String
        /// --from: a folder or a tarball.
        public var source: String
        public var config: String
        public var spareJournals: Int
        public var journalMiB: Int
        public var force: Bool

        public init(device: String, source: String, config: String = ClusterConfig.defaultPath,
                    spareJournals: Int = 1, journalMiB: Int = 64, force: Bool = false) {
            self.device = device
            self.source = source
            self.config = config
            self.spareJournals = spareJournals
            self.journalMiB = journalMiB
            self.force = force
        }
    }

    public enum SourceKind: Sendable, Equatable { case directory, tarball }

    public struct Target: Sendable, Equatable {
        public var path: String
        public var isFile: Bool

        public init(path: String, isFile: Bool) {
            self.path = path
            self.isFile = isFile
        }
    }

    /// Everything decided before the disk is touched.
    public struct Plan: Sendable, Equatable {
        public var target: Target
        public var source: SourceKind
        public var clusterName: String
        public var lockTable: String
        public var nodes: Int
        /// One per configured node plus the spares.
        public var journals: Int
        /// mkfs.gfs2's path, then its arguments.
        public var mkfs: [String]
    }

    public var options: Options
    public var system: RootDiskSystem

    public init(_ options: Options, system: RootDiskSystem) {
        self.options = options
        self.system = system
    }

    public func plan() throws(SSIError) -> Plan {
        let config = options.config, spareJournals = options.spareJournals, journalMiB = options.journalMiB
        let cfg = try system.loadConfig(config)
        guard case .gfs2(let g) = cfg.root else {
            throw SSIError("root", "\(config): the root is \(cfg.root.type), not gfs2", hint: "set [root] type = \"gfs2\" with device and lock_table")
        }
        guard (0...64).contains(spareJournals) else { throw SSIError("root", "--spare-journals \(spareJournals) is not 0...64") }
        guard (8...1024).contains(journalMiB) else { throw SSIError("root", "--journal-size \(journalMiB) is not 8...1024 MiB") }
        let mkfs = try HostTools.find("mkfs.gfs2", package: "gfs2-utils", isExecutableFile: system.isExecutableFile)
        let sourceKind = try checkSource()
        let target = try resolveDevice()
        try refuseIfMountedByMembers(target)
        try refuseIfMounted(target)
        if let existing = system.probe(target.path)?.type, !options.force {
            let label = system.probe(target.path)?.label.map { " labelled \"\($0)\"" } ?? ""
            throw SSIError("root", "\(target.path) holds a \(existing) file system\(label); formatting it destroys it",
                           hint: "check that it is the right disk, then pass --force")
        }
        try requireGFS2Driver()
        let journals = cfg.nodes.count + spareJournals
        return Plan(target: target, source: sourceKind, clusterName: cfg.cluster.name, lockTable: g.lockTable,
                    nodes: cfg.nodes.count, journals: journals,
                    mkfs: [mkfs, "-O", "-p", "lock_dlm", "-t", g.lockTable, "-j", String(journals), "-J", String(journalMiB), target.path])
    }

    public func create() throws(SSIError) {
        let plan = try plan()
        let system = system, source = options.source, target = plan.target
        // /run: writable even when / is mounted read-only.
        let mnt = try system.makeTemporaryDirectory("ssi-root-create")
        defer { system.removeDirectory(mnt) }
        let started = system.now()
        try HostTools.run(plan.mkfs[0], Array(plan.mkfs.dropFirst()), what: "mkfs.gfs2", execute: system.execute)
        let incomplete = "\(target.path) now holds an empty or partly filled GFS2 root; fix the cause and run this again with --force"
        // The copy: mounted alone (lock_nolock), on a loop device for a file.
        var loop: RootDiskSystem.Loop? = nil
        var mountSource = target.path
        if target.isFile {
            do { loop = try system.attachLoop(target.path) } catch {
                throw SSIError("root", "\(error.description); \(incomplete)")
            }
            mountSource = loop!.path
        }
        do {
            try system.mount(mountSource, mnt, "gfs2", "lockproto=lock_nolock")
        } catch {
            let hint = error.errno == ENODEV ? "this kernel has no gfs2 driver (modprobe gfs2): run the command on a machine whose kernel has it, such as a cluster node" : nil
            throw SSIError("root", "\(error.description); \(incomplete)", hint: hint)
        }
        var entries = 0
        var copyError: SSIError? = nil
        do throws(SSIError) {
            switch plan.source {
            case .directory:
                do { entries = try system.copyTree(source, mnt) } catch {
                    throw SSIError("root", "copying \(source): \(error.description)")
                }
            case .tarball:
                let tar = try HostTools.find("tar", package: "tar", isExecutableFile: system.isExecutableFile)
                try HostTools.run(tar, ["-x", "-p", "--numeric-owner", "-f", source, "-C", mnt], what: "tar", execute: system.execute)
            }
        } catch {
            copyError = error
        }
        system.sync()
        var unmountError: String? = nil
        do { try system.unmount(mnt) } catch { unmountError = error.description }
        loop = nil  // detaches (autoclear) now that it is unmounted
        if let copyError {
            throw SSIError("root", "\(copyError.message); \(incomplete)", hint: copyError.hint)
        }
        if let unmountError {
            throw SSIError("root", "\(unmountError): the tree was copied, but the disk is still mounted on \(mnt)",
                           hint: "umount \(mnt) before any node boots from it")
        }
        let tenths = Int((system.now() - started) * 10)
        let what: String = plan.source == .directory ? "\(entries) entries copied from \(source)" : "unpacked \(source)"
        var line = "ssi-cluster root create: \(target.path) is the GFS2 root of cluster \(plan.clusterName): lock table \(plan.lockTable), "
        line += "\(plan.journals) journals of \(options.journalMiB) MiB (\(plan.nodes) nodes + \(options.spareJournals) spare), "
        line += "\(what) in \(tenths / 10).\(tenths % 10) s"
        system.print(line)
    }

    /// Checked before anything is written: the copy mounts the new file
    /// system, and a kernel without GFS2 would leave an empty one behind.
    func requireGFS2Driver() throws(SSIError) {
        func known() -> Bool {
            system.filesystems().lines().contains { $0.hasSuffix("\tgfs2") }
        }
        if known() { return }
        if let modprobe = try? HostTools.find("modprobe", package: "kmod", isExecutableFile: system.isExecutableFile) {
            try? HostTools.run(modprobe, ["-q", "gfs2"], what: "modprobe gfs2", execute: system.execute)
        }
        guard known() else {
            throw SSIError("root", "this kernel (\(system.kernelRelease())) has no gfs2 driver: the tree could not be copied onto the new file system; nothing was written",
                           hint: "run the command on a machine whose kernel has GFS2 (Debian's has it as a module), such as a cluster node")
        }
    }

    func checkSource() throws(SSIError) -> SourceKind {
        let source = options.source
        guard let st = system.status(source) else {
            throw SSIError("root", "--from \(source): no such file or folder")
        }
        if st.kind == .directory { return .directory }
        guard st.kind == .regular else { throw SSIError("root", "--from \(source) is neither a folder nor a tarball") }
        return .tarball
    }

    func resolveDevice() throws(SSIError) -> Target {
        let device = options.device
        var path: String
        if device.hasPrefix("/") {
            path = device
        } else {
            let spec = try DeviceSpec(parsing: device, field: "--gfs2")
            let seen = system.blockDevices()
            guard let found = seen.first(where: spec.matches) else {
                throw SSIError("root", "no block device is \(device) (seen: \(seen.map(\.description).joined(separator: ", ")))",
                               hint: "check the disk is attached to this machine (lsblk), or give its path: --gfs2 /dev/NAME")
            }
            path = found.path
        }
        guard let st = system.status(path) else {
            throw SSIError("root", "--gfs2 \(path): no such device or file")
        }
        switch st.kind {
        case .blockDevice: return Target(path: path, isFile: false)
        case .regular:
            guard st.size >= 256 << 20 else {
                throw SSIError("root", "--gfs2 \(path) is \(st.size >> 20) MiB; a GFS2 root needs at least 256 MiB plus the tree",
                               hint: "grow it (truncate -s 2G \(path))")
            }
            return Target(path: system.realPath(path) ?? path, isFile: true)
        default:
            throw SSIError("root", "--gfs2 \(path) is neither a block device nor a disk image file")
        }
    }

    /// A GFS2 disk any cluster member has mounted is never formatted:
    /// every member's agent tells the cluster which GFS2 file systems
    /// (lock tables, libblkid's label) it has mounted. Off the cluster
    /// nobody can be asked; a disk that holds a cluster's GFS2 then needs
    /// --force, with a warning.
    func refuseIfMountedByMembers(_ target: Target) throws(SSIError) {
        guard let probe = system.probe(target.path), probe.type == "gfs2", let table = probe.label else { return }
        guard let view = system.membersMounting(table) else {
            if options.force {
                system.warn(SSIError("root", "warning: this machine is not a running cluster member, so the members cannot be asked whether they have \(table) mounted; make sure no node does"))
            }
            return
        }
        guard view.members.isEmpty else {
            let names = view.members.map { "\($0.name.isEmpty ? "node" : $0.name) (\($0.number))" }.joined(separator: ", ")
            throw SSIError("root", "\(target.path) holds the GFS2 file system \(table), mounted on \(names) in cluster \(view.clusterName); "
                           + "formatting it would destroy it under them (--force does not override this)",
                           hint: "unmount it on every node first (for a cluster root: stop the cluster)")
        }
    }

    /// A disk mounted on this machine (directly or through a loop device
    /// for an image file) is never formatted.
    func refuseIfMounted(_ target: Target) throws(SSIError) {
        var devices: Set<String> = []
        if target.isFile {
            for loop in system.loopDevices() where loop.file == target.path {
                devices.insert(loop.device)
            }
        } else if let st = system.status(target.path) {
            devices.insert("\(st.rdevMajor):\(st.rdevMinor)")
        }
        if let m = system.mounts().first(where: { devices.contains($0.device) }) {
            throw SSIError("root", "\(target.path) is mounted on \(m.mountPoint) here", hint: "unmount it first; never format a disk a node uses")
        }
    }
}

/// `ssi cluster root add-journal`: gfs2_jadd on the mounted GFS2 root, as
/// many journals as the configured nodes need beyond those it has (or
/// `count`).
public struct JournalAddition {
    public struct Options: Sendable {
        public var config: String
        public var count: Int?
        public var journalMiB: Int
        public var mountPoint: String

        public init(config: String = ClusterConfig.defaultPath, count: Int? = nil, journalMiB: Int = 64, mountPoint: String = "/") {
            self.config = config
            self.count = count
            self.journalMiB = journalMiB
            self.mountPoint = mountPoint
        }
    }

    public var options: Options
    public var system: RootDiskSystem

    public init(_ options: Options, system: RootDiskSystem) {
        self.options = options
        self.system = system
    }

    /// How many to add: `count` when given, else one per configured node
    /// beyond the journals the file system has (never fewer than none).
    public static func wanted(count: Int?, nodes: Int, have: Int) -> Int {
        count ?? max(0, nodes - have)
    }

    public func add() throws(SSIError) {
        let mountPoint = options.mountPoint, journalMiB = options.journalMiB
        let cfg = try system.loadConfig(options.config)
        guard (8...1024).contains(journalMiB) else { throw SSIError("root", "--journal-size \(journalMiB) is not 8...1024 MiB") }
        let have = try GFS2Journals.count(mountPoint: mountPoint, system: system)
        let wanted = Self.wanted(count: options.count, nodes: cfg.nodes.count, have: have)
        if wanted == 0 {
            system.print("ssi-cluster root add-journal: \(have) journals for \(cfg.nodes.count) configured nodes: nothing to add")
            return
        }
        let jadd = try HostTools.find("gfs2_jadd", package: "gfs2-utils", isExecutableFile: system.isExecutableFile)
        try HostTools.run(jadd, ["-j", String(wanted), "-J", String(journalMiB), mountPoint], what: "gfs2_jadd", execute: system.execute)
        let now = try GFS2Journals.count(mountPoint: mountPoint, system: system)
        system.print("ssi-cluster root add-journal: \(mountPoint) had \(have) journals, now \(now) (for \(cfg.nodes.count) configured nodes)")
        system.print("  note: the nodes that have it mounted now learn of the new journals only when they mount it again (GFS2 reads its journal index at mount); "
                     + "until each of them has rebooted, a node using a new journal that fails cannot be recovered by them (INSTALL.md, adding a node): "
                     + "add-journal --reboot does that, one node at a time, this node last (or ssi cluster reboot all, then ssi cluster reboot with this "
                     + "node's number on another member)")
    }
}

/// The journals of a mounted GFS2 file system: the `journalN` files in its
/// meta file system's jindex.
public enum GFS2Journals {
    public static func count(mountPoint: String, system: RootDiskSystem) throws(SSIError) -> Int {
        // The last mount at that place is the one seen there.
        guard system.mounts().last(where: { $0.mountPoint == mountPoint })?.type == "gfs2" else {
            throw SSIError("root", "\(mountPoint) is not a GFS2 file system", hint: "give the GFS2 root's mount point with --mount-point")
        }
        let meta = try system.makeTemporaryDirectory("ssi-gfs2meta")
        defer { system.removeDirectory(meta) }
        do { try system.mount(mountPoint, meta, "gfs2meta", nil) } catch {
            throw SSIError("root", "reading the journal index: \(error.description)")
        }
        defer { try? system.unmount(meta) }
        return journals(in: system.list(meta + "/jindex") ?? [])
    }

    /// The journal files among a jindex's names: "journal" and a number.
    public static func journals(in names: [String]) -> Int {
        names.filter { $0.hasPrefix("journal") && Int($0.dropFirst(7)) != nil }.count
    }
}
