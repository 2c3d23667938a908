#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// Does one node's part of a cluster mount, in the calling process's root
/// (the membership agent runs it in a child chrooted into the system's
/// root; ssi-init runs it before the hand-off with the new root as prefix).
public struct ClusterMountApplier {
    /// This node's and the owner's cluster addresses, and the network the
    /// export is for.
    public var localAddress: String
    public var network: String
    /// Prepended to every target (ssi-init: the new root's mount point).
    public var targetPrefix = ""
    /// True on a thread that entered the system's root by itself (the
    /// membership agent's), which changes three things together:
    /// - libmount never starts a helper program (/sbin/mount.TYPE): the
    ///   agent's loop reaps every child the process has;
    /// - the mount table is /proc/thread-self/mountinfo: /proc/self is the
    ///   thread group leader's, and the kernel writes its mountinfo
    ///   relative to the leader's root, where no mount of the system's is;
    /// - an unmount is umount(2) itself: libmount's looks the target up in
    ///   /proc/self.
    public var onOwnRootThread = false

    var mountTable: String { onOwnRootThread ? "/proc/thread-self/mountinfo" : "/proc/self/mountinfo" }

    public init(localAddress: String, network: String, targetPrefix: String = "") {
        self.localAddress = localAddress
        self.network = network
        self.targetPrefix = targetPrefix
    }

    /// The NFS options a member uses for another node's mount: the CFS
    /// root's coherence-first ones, the addresses (the kernel resolves no
    /// names), and `ro` when the mount is read-only.
    public func nfsOptions(_ entry: ClusterMount, server: String) -> String {
        var o = "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=0,lookupcache=none,addr=\(server),clientaddr=\(localAddress)"
        if MountOptions.value(of: "ro", in: entry.options) != nil { o += ",ro" }
        return o
    }

    /// Mounts the entry as `role` says; an error carries mount(8)'s words.
    public func mount(_ entry: ClusterMount, role: ClusterMount.Role, serverAddress: String?) throws(SSIError) {
        let target = targetPrefix + entry.target
        // The mount point is made on a node that lacks it (a node-local
        // /mnt); a mount point made here is removed again if the mount
        // fails, so a failed cluster mount leaves no new directory.
        let made = !FileSystem.exists(target)
        if made { try? FileSystem.makeDirectories(target) }
        do throws(SSIError) {
            try mountMade(entry, role: role, serverAddress: serverAddress, target: target)
        } catch {
            if made { rmdir(target) }
            throw error
        }
    }

    private func mountMade(_ entry: ClusterMount, role: ClusterMount.Role, serverAddress: String?, target: String) throws(SSIError) {
        let cxt: MountContext
        do { cxt = try MountContext() } catch { throw SSIError("mount", error.description) }
        switch role {
        case .mountItself, .mountAndExport:
            cxt.source = entry.source
            cxt.setType(entry.type.isEmpty ? nil : entry.type)
            cxt.setOptions(entry.options.isEmpty ? nil : entry.options)
        case .mountFrom(let owner):
            guard let server = serverAddress else {
                throw SSIError("mount", "node \(owner) has no known address")
            }
            cxt.source = "\(server):\(entry.target)"
            cxt.setType("nfs4")
            cxt.setOptions(nfsOptions(entry, server: server))
            // The kernel mounts NFS itself given addr=/clientaddr=; no
            // mount.nfs needed (the initramfs has none).
            cxt.setNoHelpers(true)
        }
        if onOwnRootThread { cxt.setNoHelpers(true) }
        cxt.target = target
        let outcome = cxt.mount()
        guard outcome.exitCode == MountContext.ExitCode.success else {
            throw SSIError("mount", "\(entry.target): \(outcome.message.isEmpty ? "mount failed (exit \(outcome.exitCode))" : outcome.message)")
        }
        if role == .mountAndExport {
            do throws(SSIError) {
                try export(entry)
            } catch {
                _ = try? unmountTarget(target, lazy: false)
                throw error
            }
        }
    }

    /// Undoes this node's part: the export first (and nfsd's NFSv4 state on
    /// it, which would keep the file system busy), then the mount. NFS
    /// views are detached lazily: their server may be gone.
    public func unmount(_ entry: ClusterMount, role: ClusterMount.Role) throws(SSIError) {
        let target = targetPrefix + entry.target
        if role == .mountAndExport { unexport(entry) }
        guard isMounted(target) else { return }
        if case .mountFrom = role {
            try unmountTarget(target, lazy: true)
            return
        }
        // On a node that runs an NFS server (the owner of an export, the
        // CFS init node), nfsd can hold the file system for a moment: its
        // export cache keeps the path of anything a client looked up,
        // exported or not, and clients' NFSv4 state goes back a moment
        // after the export went. A busy target is tried again for a few
        // seconds, with nfsd's caches flushed, before it counts as busy.
        // The flush drops the cache's hold at once: the first retry comes
        // 20 ms after it, later ones back off to half a second. At most
        // one flush a second: the kernel moves a cache's flush time a
        // second past the last one when asked again within it, and with
        // a flush time ahead of the clock each new entry counts as
        // expired. A version that flushed at each 20 ms retry left node
        // 1's later umounts EBUSY for their whole 10 s (DESIGN-NOTES.md).
        let deadline = Process.now() + 10
        var attempt = 0
        var flushed = -Double.infinity
        while true {
            do throws(SSIError) {
                try unmountTarget(target, lazy: false)
                return
            } catch {
                guard Process.now() < deadline, Self.nfsdRunning(), isMounted(target) else { throw error }
                if role == .mountAndExport { unlockNFSState(entry) }
                if Process.now() - flushed >= 1 {
                    Self.flushNFSDCaches()
                    flushed = Process.now()
                }
                Process.sleep(milliseconds: Self.retryDelay(attempt: attempt))
                attempt += 1
            }
        }
    }

    /// The wait before busy umount's retry `attempt` (from 0): 20, 40, 80
    /// ... ms, at most 500.
    static func retryDelay(attempt: Int) -> Int { min(500, 20 << min(attempt, 5)) }

    /// What `exportfs -f` does, without a process: each of knfsd's caches
    /// forgets every entry made up to now, in nfs-utils' order (an nfsd.fh
    /// entry refers to an nfsd.export one, so it goes first). An export
    /// entry holds its path, and with it the mount.
    static func flushNFSDCaches(now: Int = time(nil), root: String = "/proc/net/rpc") {
        let line = "\(now)\n"
        for cache in ["auth.unix.ip", "auth.unix.gid", "nfsd.fh", "nfsd.export"] {
            guard let flush = try? Descriptor(open: "\(root)/\(cache)/flush", O_WRONLY) else { continue }
            _ = line.withCString { write(flush.rawValue, $0, strlen($0)) }
        }
    }

    private func unmountTarget(_ target: String, lazy: Bool) throws(SSIError) {
        if onOwnRootThread {
            // libmount's umount would look the target up in the wrong
            // root's table (onOwnRootThread, above).
            do throws(SystemCallError) {
                try Mount.unmount(target, detach: lazy)
            } catch {
                throw SSIError("umount", "\(target): \(errnoDescription(error.errno))")
            }
            return
        }
        let cxt: MountContext
        do { cxt = try MountContext() } catch { throw SSIError("umount", error.description) }
        cxt.target = target
        cxt.setLazy(lazy)
        let o = cxt.umount()
        guard o.exitCode == MountContext.ExitCode.success else {
            throw SSIError("umount", "\(target): \(o.message.isEmpty ? "umount failed (exit \(o.exitCode))" : o.message)")
        }
    }

    /// Whether mounting (or unmounting) a file system of `type` here would
    /// start a helper program: libmount runs /sbin/mount.TYPE (umount.TYPE)
    /// when there is one, in its search path (/sbin, /sbin/fs.d, /sbin/fs;
    /// /usr/sbin, which /sbin is on merged-usr systems), and a type it must
    /// probe, a list or a subtype (fuse.sshfs) may pick one.
    public static func needsHelper(type: String, unmount: Bool) -> Bool {
        if type.isEmpty || type == "auto" || type.contains(",") || type.contains(".") { return true }
        let name = (unmount ? "umount." : "mount.") + type
        return ["/sbin", "/sbin/fs.d", "/sbin/fs", "/usr/sbin"].contains { FileSystem.exists("\($0)/\(name)") }
    }

    /// True when `path` is a mount point in this caller's mount table.
    public func isMounted(_ path: String) -> Bool {
        Self.isMounted(path, table: mountTable)
    }

    /// True when `path` is a mount point in the mount table `table`.
    public static func isMounted(_ path: String, table: String = "/proc/self/mountinfo") -> Bool {
        Mount.entries(path: table).contains { $0.mountPoint == path }
    }

    // MARK: NFS export

    static let exportfs = "/usr/sbin/exportfs"

    func exportOptions(_ entry: ClusterMount) -> String {
        let access = MountOptions.value(of: "ro", in: entry.options) != nil ? "ro" : "rw"
        return "\(access),sync,no_root_squash,no_subtree_check,fsid=\(entry.exportFSID)"
    }

    /// Exports the target to the cluster network with exportfs (into
    /// /var/lib/nfs/etab: node-private, gone at reboot, like the mount).
    /// Starts the distro's NFS server when it is not running.
    func export(_ entry: ClusterMount) throws(SSIError) {
        guard FileSystem.isExecutableFile(Self.exportfs) else {
            throw SSIError("mount", "this node has no NFS server (\(Self.exportfs)), so the others cannot see \(entry.target)",
                           hint: "apt-get install nfs-kernel-server on the cluster root, or mount it with node=*")
        }
        if !Self.nfsdRunning() {
            if FileSystem.exists("/run/systemd/system") {
                _ = Self.run(["/usr/bin/systemctl", "start", "nfs-server.service"])
            }
            guard Self.nfsdRunning() else {
                throw SSIError("mount", "the NFS server does not run on this node, so the others cannot see \(entry.target)",
                               hint: "systemctl enable --now nfs-server on this node")
            }
        }
        let status = Self.run([Self.exportfs, "-o", exportOptions(entry), "\(network):\(entry.target)"])
        guard status == 0 else {
            throw SSIError("mount", "exportfs \(network):\(entry.target) failed (exit \(status))")
        }
    }

    func unexport(_ entry: ClusterMount) {
        guard FileSystem.isExecutableFile(Self.exportfs) else { return }
        _ = Self.run([Self.exportfs, "-u", "\(network):\(entry.target)"])
        unlockNFSState(entry)
    }

    /// NFSv4 opens, locks and delegations held by clients pin the file
    /// system: nfsd drops them for this path.
    func unlockNFSState(_ entry: ClusterMount) {
        if let unlock = try? Descriptor(open: "/proc/fs/nfsd/unlock_filesystem", O_WRONLY) {
            _ = entry.target.withCString { write(unlock.rawValue, $0, strlen($0)) }
        }
    }

    /// True when this node exports the entry (etab lists its path).
    public static func isExported(_ entry: ClusterMount) -> Bool {
        guard let etab = try? FileSystem.readText("/var/lib/nfs/etab") else { return false }
        return etab.lines().contains { $0.hasPrefix(entry.target + "\t") }
    }

    static func nfsdRunning() -> Bool {
        guard let t = try? FileSystem.readText("/proc/fs/nfsd/threads") else { return false }
        return (Int(t.filter(\.isNumber)) ?? 0) > 0
    }

    static func run(_ argv: [String]) -> Int32 {
        guard let pid = try? Process.spawn(argv[0], argv, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]),
              let exit = try? Process.wait(for: pid) else { return -1 }
        if case .exited(let code) = exit { return code }
        return -1
    }
}
