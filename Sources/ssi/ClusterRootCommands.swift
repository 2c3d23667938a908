#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import SSICore
import SSILinux
import SSIConfig
import SSIMembership

/// `ssi cluster root`: make and grow the shared GFS2 root.
struct ClusterRootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root",
        abstract: "Make the cluster's shared GFS2 root and add journals to it.",
        subcommands: [RootCreateCommand.self, RootAddJournalCommand.self])
}

struct RootCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Format a shared disk with GFS2 for the cluster and fill it with a distro tree.",
        discussion: """
            The file system is made for the configured cluster: lock_dlm, the lock table from \
            [root] lock_table, one journal per configured node plus --spare-journals (a node \
            added later takes a spare; `ssi cluster root add-journal` adds more). Journals are \
            --journal-size MiB each (GFS2's minimum is 8; mkfs.gfs2's default 128 suits busy \
            nodes; the rest of the disk holds the tree). The tree is copied from a folder (one \
            file system: mounts inside it become empty folders, so / of an installed system \
            works) or unpacked from a tarball with tar. The disk is mounted with lock_nolock for \
            the copy, so no cluster is needed, but no node may have it mounted: a disk that \
            holds any file system is refused without --force, and a disk mounted here is \
            refused always. A disk image file is attached to a loop device for the copy.
            """)

    @Option(name: .customLong("gfs2"), help: ArgumentHelp("The shared disk: /dev/NAME, UUID=..., LABEL=..., or a disk image file.", valueName: "device"))
    var device: String

    @Option(name: .customLong("from"), help: ArgumentHelp("The distro tree: a folder, or a tarball (.tar, .tar.gz, .tar.xz, .tar.zst).", valueName: "dir|tarball"))
    var source: String

    @Option(help: ArgumentHelp("The cluster configuration (its root must be gfs2).", valueName: "file"))
    var config: String = ClusterConfig.defaultPath

    @Option(name: .customLong("spare-journals"), help: ArgumentHelp("Journals beyond one per configured node.", valueName: "n"))
    var spareJournals: Int = 1

    @Option(name: .customLong("journal-size"), help: ArgumentHelp("Size of each journal, MiB (8-1024).", valueName: "mib"))
    var journalMiB: Int = 64

    @Flag(help: "Format a disk that already holds a file system.")
    var force = false

    func run() throws {
        do throws(SSIError) {
            try create()
        } catch {
            printError(tool: "ssi-cluster root create", error)
            throw ExitCode(1)
        }
    }

    func create() throws(SSIError) {
        let cfg = try ClusterConfig.load(path: config)
        guard case .gfs2(let g) = cfg.root else {
            throw SSIError("root", "\(config): the root is \(cfg.root.type), not gfs2", hint: "set [root] type = \"gfs2\" with device and lock_table")
        }
        guard (0...64).contains(spareJournals) else { throw SSIError("root", "--spare-journals \(spareJournals) is not 0...64") }
        guard (8...1024).contains(journalMiB) else { throw SSIError("root", "--journal-size \(journalMiB) is not 8...1024 MiB") }
        let mkfs = try tool("mkfs.gfs2", package: "gfs2-utils")
        let sourceKind = try checkSource()
        let target = try resolveDevice()
        try refuseIfMountedByMembers(target)
        try refuseIfMounted(target)
        if let existing = BlockDevices.probe(target.path)?.type, !force {
            let label = BlockDevices.probe(target.path)?.label.map { " labelled \"\($0)\"" } ?? ""
            throw SSIError("root", "\(target.path) holds a \(existing) file system\(label); formatting it destroys it",
                           hint: "check that it is the right disk, then pass --force")
        }
        try requireGFS2Driver()
        let journals = cfg.nodes.count + spareJournals
        // /run: writable even when / is mounted read-only.
        let mnt = try temporaryDirectory("ssi-root-create")
        defer { rmdir(mnt) }
        let started = Process.now()
        try runTool(mkfs, ["-O", "-p", "lock_dlm", "-t", g.lockTable, "-j", String(journals), "-J", String(journalMiB), target.path],
                    what: "mkfs.gfs2")
        let incomplete = "\(target.path) now holds an empty or partly filled GFS2 root; fix the cause and run this again with --force"
        // The copy: mounted alone (lock_nolock), on a loop device for a file.
        var loop: LoopDevice? = nil
        var mountSource = target.path
        if target.isFile {
            do { loop = try LoopDevice(attaching: target.path) } catch {
                throw SSIError("root", "\(error.description); \(incomplete)")
            }
            mountSource = loop!.path
        }
        do {
            try Mount.mount(source: mountSource, target: mnt, type: "gfs2", data: "lockproto=lock_nolock")
        } catch {
            let hint = error.errno == ENODEV ? "this kernel has no gfs2 driver (modprobe gfs2): run the command on a machine whose kernel has it, such as a cluster node" : nil
            throw SSIError("root", "\(error.description); \(incomplete)", hint: hint)
        }
        var entries = 0
        var copyError: SSIError? = nil
        do throws(SSIError) {
            switch sourceKind {
            case .directory:
                do { entries = try FileSystem.copyTree(source, to: mnt, intoExisting: true) } catch {
                    throw SSIError("root", "copying \(source): \(error.description)")
                }
            case .tarball:
                let tar = try tool("tar", package: "tar")
                try runTool(tar, ["-x", "-p", "--numeric-owner", "-f", source, "-C", mnt], what: "tar")
            }
        } catch {
            copyError = error
        }
        sync()
        var unmountError: String? = nil
        do { try Mount.unmount(mnt) } catch { unmountError = error.description }
        loop = nil  // detaches (autoclear) now that it is unmounted
        if let copyError {
            throw SSIError("root", "\(copyError.message); \(incomplete)", hint: copyError.hint)
        }
        if let unmountError {
            throw SSIError("root", "\(unmountError): the tree was copied, but the disk is still mounted on \(mnt)",
                           hint: "umount \(mnt) before any node boots from it")
        }
        let tenths = Int((Process.now() - started) * 10)
        let what: String = sourceKind == .directory ? "\(entries) entries copied from \(source)" : "unpacked \(source)"
        var line = "ssi-cluster root create: \(target.path) is the GFS2 root of cluster \(cfg.cluster.name): lock table \(g.lockTable), "
        line += "\(journals) journals of \(journalMiB) MiB (\(cfg.nodes.count) nodes + \(spareJournals) spare), "
        line += "\(what) in \(tenths / 10).\(tenths % 10) s"
        print(line)
    }

    /// Checked before anything is written: the copy mounts the new file
    /// system, and a kernel without GFS2 would leave an empty one behind.
    func requireGFS2Driver() throws(SSIError) {
        func known() -> Bool {
            ((try? FileSystem.readText("/proc/filesystems")) ?? "").lines().contains { $0.hasSuffix("\tgfs2") }
        }
        if known() { return }
        if let modprobe = try? tool("modprobe", package: "kmod") {
            try? runTool(modprobe, ["-q", "gfs2"], what: "modprobe gfs2")
        }
        guard known() else {
            throw SSIError("root", "this kernel (\(Process.kernelRelease())) has no gfs2 driver: the tree could not be copied onto the new file system; nothing was written",
                           hint: "run the command on a machine whose kernel has GFS2 (Debian's has it as a module), such as a cluster node")
        }
    }

    enum SourceKind { case directory, tarball }

    func checkSource() throws(SSIError) -> SourceKind {
        guard let st = try? FileSystem.status(source, followSymlinks: true) else {
            throw SSIError("root", "--from \(source): no such file or folder")
        }
        if st.kind == .directory { return .directory }
        guard st.kind == .regular else { throw SSIError("root", "--from \(source) is neither a folder nor a tarball") }
        return .tarball
    }

    struct Target { var path: String; var isFile: Bool }

    func resolveDevice() throws(SSIError) -> Target {
        var path: String
        if device.hasPrefix("/") {
            path = device
        } else {
            let spec = try DeviceSpec(parsing: device, field: "--gfs2")
            let seen = BlockDevices.scan()
            guard let found = seen.first(where: spec.matches) else {
                throw SSIError("root", "no block device is \(device) (seen: \(seen.map(\.description).joined(separator: ", ")))",
                               hint: "check the disk is attached to this machine (lsblk), or give its path: --gfs2 /dev/NAME")
            }
            path = found.path
        }
        guard let st = try? FileSystem.status(path, followSymlinks: true) else {
            throw SSIError("root", "--gfs2 \(path): no such device or file")
        }
        switch st.kind {
        case .blockDevice: return Target(path: path, isFile: false)
        case .regular:
            guard st.size >= 256 << 20 else {
                throw SSIError("root", "--gfs2 \(path) is \(st.size >> 20) MiB; a GFS2 root needs at least 256 MiB plus the tree",
                               hint: "grow it (truncate -s 2G \(path))")
            }
            return Target(path: (try? FileSystem.realPath(path)) ?? path, isFile: true)
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
        guard let probe = BlockDevices.probe(target.path), probe.type == "gfs2", let table = probe.label else { return }
        guard let view = try? ClusterView.load() else {
            if force {
                printError(tool: "ssi-cluster root create", SSIError("root", "warning: this machine is not a running cluster member, so the members cannot be asked whether they have \(table) mounted; make sure no node does"))
            }
            return
        }
        let users = view.members(mounting: table)
        guard users.isEmpty else {
            let names = users.map { "\($0.name.isEmpty ? "node" : $0.name) (\($0.number))" }.joined(separator: ", ")
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
            for loop in (try? FileSystem.list("/sys/block")) ?? [] where loop.hasPrefix("loop") {
                if let backing = try? FileSystem.readText("/sys/block/\(loop)/loop/backing_file"),
                   backing.lines().first.map(String.init) == target.path,
                   let dev = try? FileSystem.readText("/sys/block/\(loop)/dev") {
                    devices.insert(String(dev.lines().first ?? ""))
                }
            }
        } else if let st = try? FileSystem.status(target.path, followSymlinks: true) {
            devices.insert("\(st.rdevMajor):\(st.rdevMinor)")
        }
        if let m = Mount.entries().first(where: { devices.contains($0.device) }) {
            throw SSIError("root", "\(target.path) is mounted on \(m.mountPoint) here", hint: "unmount it first; never format a disk a node uses")
        }
    }
}

struct RootAddJournalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-journal",
        abstract: "Add journals to the mounted GFS2 root (gfs2_jadd), so more nodes can mount it.",
        discussion: """
            Run it on a node that has the root mounted, after adding nodes to the configuration. \
            Without --count it adds as many as the configuration has nodes beyond the journals \
            the file system has.
            """)

    @Option(help: ArgumentHelp("The cluster configuration.", valueName: "file"))
    var config: String = ClusterConfig.defaultPath

    @Option(help: ArgumentHelp("Journals to add (default: what the configured nodes need).", valueName: "n"))
    var count: Int?

    @Option(name: .customLong("journal-size"), help: ArgumentHelp("Size of each new journal, MiB (8-1024).", valueName: "mib"))
    var journalMiB: Int = 64

    @Option(name: .customLong("mount-point"), help: ArgumentHelp("Where the GFS2 root is mounted.", valueName: "dir"))
    var mountPoint: String = "/"

    func run() throws {
        do throws(SSIError) {
            try add()
        } catch {
            printError(tool: "ssi-cluster root add-journal", error)
            throw ExitCode(1)
        }
    }

    func add() throws(SSIError) {
        let cfg = try ClusterConfig.load(path: config)
        guard (8...1024).contains(journalMiB) else { throw SSIError("root", "--journal-size \(journalMiB) is not 8...1024 MiB") }
        let have = try GFS2Journals.count(mountPoint: mountPoint)
        let wanted = count ?? max(0, cfg.nodes.count - have)
        if wanted == 0 {
            print("ssi-cluster root add-journal: \(have) journals for \(cfg.nodes.count) configured nodes: nothing to add")
            return
        }
        let jadd = try tool("gfs2_jadd", package: "gfs2-utils")
        try runTool(jadd, ["-j", String(wanted), "-J", String(journalMiB), mountPoint], what: "gfs2_jadd")
        let now = try GFS2Journals.count(mountPoint: mountPoint)
        print("ssi-cluster root add-journal: \(mountPoint) had \(have) journals, now \(now) (for \(cfg.nodes.count) configured nodes)")
        print("  note: the nodes that have it mounted now learn of the new journals only when they mount it again (GFS2 reads its journal index at mount); "
              + "until each of them has rebooted, a node using a new journal that fails cannot be recovered by them (INSTALL.md, adding a node)")
    }
}

/// The journals of a mounted GFS2 file system: the `journalN` files in its
/// meta file system's jindex.
enum GFS2Journals {
    static func count(mountPoint: String) throws(SSIError) -> Int {
        // The last mount at that place is the one seen there.
        guard Mount.entries().last(where: { $0.mountPoint == mountPoint })?.type == "gfs2" else {
            throw SSIError("root", "\(mountPoint) is not a GFS2 file system", hint: "give the GFS2 root's mount point with --mount-point")
        }
        let meta = try temporaryDirectory("ssi-gfs2meta")
        defer { rmdir(meta) }
        do { try Mount.mount(source: mountPoint, target: meta, type: "gfs2meta", data: nil) } catch {
            throw SSIError("root", "reading the journal index: \(error.description)")
        }
        defer { try? Mount.unmount(meta) }
        let names = (try? FileSystem.list(meta + "/jindex")) ?? []
        return names.filter { $0.hasPrefix("journal") && Int($0.dropFirst(7)) != nil }.count
    }
}

/// A new empty folder in /run (a tmpfs, writable when / is read-only),
/// for a temporary mount point.
func temporaryDirectory(_ prefix: String) throws(SSIError) -> String {
    var template = Array("/run/\(prefix).XXXXXX".utf8CString)
    guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        let lastErrno = errno
        throw SSIError("root", "making a mount point in /run: \(errnoDescription(lastErrno))")
    }
    return String(cString: p)
}

/// A program from the PATH, or an error naming its package.
func tool(_ name: String, package: String) throws(SSIError) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] where FileSystem.isExecutableFile(dir + "/" + name) {
        return dir + "/" + name
    }
    throw SSIError("root", "\(name) is not installed", hint: "apt-get install \(package)")
}

/// Runs a program with our stdout and stderr; an error unless it exits 0.
func runTool(_ path: String, _ args: [String], what: String) throws(SSIError) {
    do {
        let pid = try Process.spawn(path, [path] + args, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"])
        let status = try Process.wait(for: pid)
        guard status == .exited(0) else {
            throw SSIError("root", "\(what) failed (\(status)); its messages are above")
        }
    } catch let e as SSIError {
        throw e
    } catch {
        throw SSIError("root", "running \(what): \(error)")
    }
}
