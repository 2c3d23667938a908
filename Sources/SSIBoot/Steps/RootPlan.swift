#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIClusterFS

/// Which root this node mounts and how, decided before anything is
/// mounted: a pure function of the cluster configuration (when the image
/// has one), this node, and the kernel command line. The root step
/// (RootStep.swift) carries the plan out; the tests check every decision
/// here without a disk, a network or a kernel.
enum RootPlan: Equatable {
    /// The kernel's root= on a local disk (no cluster, or root= given to a
    /// cluster node that does not serve a CFS root).
    case local(LocalRoot)
    /// The CFS init node: its own disk, read-write, then serving it.
    case cfsServer(LocalRoot)
    /// Any other CFS node: the init node's export over NFSv4.
    case cfsClient(CFSClientRoot)
    /// The shared GFS2 disk, with lock_dlm.
    case gfs2(GFS2Root)

    /// A local block device to mount on /sysroot.
    struct LocalRoot: Equatable {
        /// root= (or the CFS init node's [root] device); nil is an error the
        /// mount reports ("no root= on the kernel command line"), after any
        /// line the plan asks to say first.
        var device: DeviceSpec?
        /// rootfstype=; nil: what libblkid finds on the device.
        var fsType: String?
        /// rootflags=, the mount's data.
        var flags: String?
        var readOnly: Bool
        /// rootdelay= as given (the line says it).
        var delaySeconds: Int
        /// The sleep, bounded again (see `RootPlan.delay`).
        var delayMilliseconds: Int { RootPlan.delay(delaySeconds) * 1000 }
        /// How long to wait for the device (rootwait=, ssi.timeout=).
        var timeoutSeconds: Int
        /// The CFS init node was told `ro` and mounts read-write anyway.
        var saysReadWrite = false

        /// The file system to mount: rootfstype= wins over the device's
        /// superblock; neither is an error naming the device.
        func fileSystemType(of found: BlockDevice) throws(SSIError) -> String {
            guard let type = fsType ?? found.type else {
                throw SSIError("root", "\(found.path) has no file system libblkid recognizes",
                               hint: "pass rootfstype= or check root=")
            }
            return type
        }

        /// What a failed mount most likely means.
        static func mountHint(errno e: Int32, type: String) -> String {
            if e == ENODEV {
                return "the kernel has no \(type) driver: rebuild the image with --add-modules \(type)"
            }
            return "check rootfstype= and rootflags="
        }

        /// The line after the mount: "(ext4, ro, FLAGS)".
        func mountedLine(path: String, type: String) -> String {
            "mounted \(path) on /sysroot (\(type), \(readOnly ? "ro" : "rw")" + (flags.map { ", \($0)" } ?? "") + ")"
        }
    }

    /// The init node's export, mounted over NFSv4.
    struct CFSClientRoot: Equatable {
        var server: ClusterConfig.Node
        /// The server's cluster address (its tunnel address with [tunnel]).
        var serverAddress: IPv4Address
        var me: ClusterConfig.Node
        /// How long to wait for the server's NFS port: ssi.root_wait= or
        /// [root] wait_seconds.
        var waitSeconds: Int
        var source: String
        var options: String
        /// The cluster network, which the export must allow.
        var network: IPv4CIDR
        /// `[root] cached` trees below a top-level directory (such as
        /// /etc/systemd): mounted cached over its coherent mount. A
        /// top-level cached tree (/usr) is the root mount's own.
        var cached: [CachedTree] = []
        /// With any cached tree the root's top level (the names in /) is
        /// cached too, and each top-level directory mounted again
        /// coherent; nil when `[root] cached = []` (the root mount itself
        /// coherent).
        var coherent: CoherentTopLevel? = nil

        /// A coherent root mount revalidates every name in / at every
        /// path walk, /proc, /sys, /run and /usr included: one LOOKUP
        /// round trip per path any process resolves. Cached, / costs one
        /// GETATTR per `cache_seconds`; the trees below it that must be
        /// coherent get their own mounts with the coherent options (one
        /// superblock for all: same server, file system and options).
        struct CoherentTopLevel: Equatable {
            /// "10.77.0.1": the export is the NFSv4 pseudo-root.
            var server: String
            var options: String
            /// Top-level names left on the cached root: the kernel's
            /// file systems (mounted over), the cached trees, the node's
            /// private directories (the private step mounts over them).
            var skip: Set<String>

            static let kernelMounts: Set<String> = ["proc", "sys", "dev", "run"]

            /// The top-level directories to mount coherent, of `names`
            /// (the root's entries) where `isDirectory` (not a symlink).
            func directories(_ names: [String], isDirectory: (String) -> Bool) -> [String] {
                names.filter { !skip.contains($0) && !$0.hasPrefix(".") && isDirectory($0) }.sorted()
            }
        }

        /// One tree of the shared root mounted again with caching.
        struct CachedTree: Equatable {
            /// SERVER:/usr (the export is the NFSv4 pseudo-root).
            var source: String
            /// /sysroot/usr
            var target: String
            var options: String
        }

        /// "the init node NAME (ADDRESS)", in every line about the wait.
        var who: String { "the init node \(server.name) (\(serverAddress))" }

        /// What a failed NFS mount most likely means.
        static func mountHint(errno e: Int32, network: IPv4CIDR) -> String {
            e == ETIMEDOUT ? "the init node's NFS server accepted the connection but did not answer the mount"
                : e == EACCES || e == EPERM ? "check the export on the init node (exportfs -v): it must allow \(network)"
                : "check the NFS server on the init node (systemctl status nfs-server) and [root] options"
        }

        /// The probe's answer in words: "down" and "not serving" are two
        /// different problems for whoever reads the console.
        static func describe(_ r: TCPProbe.Result) -> String {
            switch r {
            case .open: return "serving"
            case .refused: return "it is up but nothing listens on port 2049 (its NFS server is not running yet)"
            case .noAnswer(let why): return "no answer (\(why)): it is down or unreachable"
            }
        }

        /// The pause before the next probe: a refusal comes back at once,
        /// so it waits longer than a probe that already waited for nothing.
        static func retryMilliseconds(after r: TCPProbe.Result) -> Int {
            r == .refused ? 500 : 100
        }
    }

    /// The shared GFS2 disk.
    struct GFS2Root: Equatable {
        var me: ClusterConfig.Node
        /// [root] device as written, for messages.
        var deviceText: String
        var device: DeviceSpec
        var lockTable: String
        /// "lockproto=lock_dlm" then [root] options.
        var options: String
        var timeoutSeconds: Int
        /// Told `ro`: the GFS2 root is mounted read-write anyway.
        var saysReadWrite: Bool

        static let mountTimeoutMs: Int32 = 180_000

        /// The prerequisite the disk must meet before dlm starts: a GFS2
        /// file system of this cluster's lock table (libblkid reports a
        /// GFS2 superblock's lock table as its label).
        func check(_ found: BlockDevice) throws(SSIError) {
            guard found.type == "gfs2" else {
                throw SSIError("root", "\(deviceText) (\(found.path)) holds \(found.type.map { "a \($0) file system" } ?? "no file system libblkid knows"), not gfs2",
                               hint: "make the shared root with ssi cluster root create --gfs2 DEVICE --from DIR, or fix [root] device")
            }
            if let table = found.label, table != lockTable {
                throw SSIError("root", "\(found.path) belongs to lock table \"\(table)\", but this node's configuration says \"\(lockTable)\"; "
                               + "it does not mount another cluster's (or another file system's) disk",
                               hint: "rebuild this node's image with the cluster's configuration, or change the disk with tunegfs2 -o locktable=\(lockTable)")
            }
        }

        /// The error for a failed mount; the kernel's own line (gfs2:
        /// fsid=...) is on the console just above.
        func mountError(errno e: Int32, description: String) -> SSIError {
            if e == EUSERS {
                // gfs2: "there are only N journals (0 - N-1)".
                return SSIError("root", "no free journal on \(deviceText) for node \(me.number) (\(me.name)): every journal is in use, "
                                + "the disk has fewer journals than the nodes mounting it (\(description))",
                                hint: "on a running node, ssi cluster root add-journal adds one (gfs2_jadd); then exit this shell to try again")
            }
            return SSIError("root", "\(description) from \(deviceText)", hint: Self.mountHint(errno: e))
        }

        /// What a failed gfs2 mount most likely means.
        static func mountHint(errno e: Int32) -> String {
            switch e {
            case ETIMEDOUT:
                return "the mount did not finish in 180 s: a lock request is waiting, most likely on a node being fenced (dlm_tool ls, dlm_tool status)"
            case ENOTCONN:
                return "the DLM has no connection to the cluster: check dlm_tool status"
            case EINVAL:
                return "check [root] options (the kernel line above names the one it refused)"
            default:
                return "the kernel's gfs2 and dlm lines above say why"
            }
        }
    }

    /// The decision. `cluster` is nil without a cluster configuration in
    /// the image. Returns the plan and the line to say before carrying it
    /// out, if any (the command line overriding the cluster's root).
    ///
    /// - The CFS init node always mounts its own disk (root=, else [root]
    ///   device), read-write: it writes the export and seeds the other
    ///   nodes' private copies before the hand-off.
    /// - The command line wins (DESIGN.md §3): any other cluster node told
    ///   root= boots that disk, not the cluster's root.
    /// - Otherwise a CFS node mounts the init node's export, a GFS2 node
    ///   the shared disk.
    static func decide(cluster: NodeIdentity?, params: BootParameters) throws(SSIError) -> (plan: RootPlan, note: String?) {
        guard let cluster else { return (.local(local(params)), nil) }
        let me = cluster.node
        switch cluster.config.root {
        case .cfs(let cfs):
            if me.number == cfs.server {
                var root = local(params)
                if root.device == nil, let device = cfs.device {
                    root.device = try DeviceSpec(parsing: device, field: "[root] device")
                }
                root.saysReadWrite = root.readOnly
                root.readOnly = false
                return (.cfsServer(root), nil)
            }
            if params.root == nil {
                guard let server = cluster.config.node(number: cfs.server) else {
                    throw SSIError("root", "the CFS server, node \(cfs.server), is not in the configuration")
                }
                let address = cluster.config.clusterAddress(server), mine = cluster.config.clusterAddress(me)
                let cachedOptions = CFSFiles.cachedMountOptions(cfs, server: address, client: mine)
                let coherentOptions = CFSFiles.mountOptions(cfs, server: address, client: mine)
                let topLevel = { (paths: [String]) in paths.filter { !$0.dropFirst().contains("/") }.map { String($0.dropFirst()) } }
                var root = CFSClientRoot(server: server, serverAddress: address, me: me,
                                         waitSeconds: params.clusterRootWait ?? cfs.waitSeconds,
                                         source: "\(address):/", options: coherentOptions,
                                         network: cluster.config.clusterNetwork)
                if !cfs.cached.isEmpty {
                    root.options = cachedOptions
                    root.cached = cfs.cached.filter { $0.dropFirst().contains("/") }.map {
                        .init(source: "\(address):\($0)", target: "/sysroot" + $0, options: cachedOptions)
                    }
                    root.coherent = .init(server: "\(address)", options: coherentOptions,
                                          skip: CFSClientRoot.CoherentTopLevel.kernelMounts
                                            .union(topLevel(cfs.cached)).union(topLevel(cluster.config.privatePaths(for: me))))
                }
                return (.cfsClient(root), nil)
            }
            return (.local(local(params)), "root= is on the command line: mounting it rather than the CFS root from node \(cfs.server)")
        case .gfs2(let g):
            if params.root == nil {
                var options = "lockproto=lock_dlm"
                if let extra = g.options { options += "," + extra }
                return (.gfs2(GFS2Root(me: me, deviceText: g.device, device: try DeviceSpec(parsing: g.device, field: "[root] device"),
                                       lockTable: g.lockTable, options: options, timeoutSeconds: params.rootTimeout,
                                       saysReadWrite: params.readOnly)), nil)
            }
            return (.local(local(params)), "root= is on the command line: mounting it rather than the GFS2 root \(g.device)")
        }
    }

    /// The kernel command line's root, as given.
    static func local(_ params: BootParameters) -> LocalRoot {
        LocalRoot(device: params.root, fsType: params.rootFSType, flags: params.rootFlags, readOnly: params.readOnly,
                  delaySeconds: params.rootDelay, timeoutSeconds: params.rootTimeout)
    }

    /// rootdelay= bounded again: params is a public value that code, not
    /// only the parser, can set, and an overflow in PID 1 is a panic.
    static func delay(_ seconds: Int) -> Int {
        min(max(seconds, 0), BootParameters.rootDelayRange.upperBound)
    }
}
