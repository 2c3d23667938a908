#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig

/// What the root step mounted on /sysroot; the steps after it follow
/// from this alone (`afterRoot`).
enum MountedRoot: Equatable {
    /// Someone mounted /sysroot in the emergency shell: used as is, and
    /// nothing cluster-specific follows.
    case alreadyMounted
    case local
    case cfsServer
    case cfsClient
    case gfs2

    /// The step that follows the root, if any: the init node serves its
    /// root (export, the other nodes' private copies, boot services); a
    /// node on a shared root binds its private paths.
    enum After: Equatable { case serveCFS, privatePaths }

    var after: After? {
        switch self {
        case .cfsServer: return .serveCFS
        case .cfsClient, .gfs2: return .privatePaths
        case .alreadyMounted, .local: return nil
        }
    }
}

extension Boot {
    /// The root step: a cluster's (CFS: the init node's own disk, or the
    /// init node's export over NFSv4; GFS2: the shared disk) when the image
    /// has a configuration, else the kernel's root=. The plan is decided
    /// first (RootPlan.decide, pure), then carried out. `params` is the
    /// step's own copy, kept across retries: what a try changed (the CFS
    /// init node's device, a read-write override already said) stays.
    func mountRoot(_ cluster: Membership?, _ params: inout BootParameters) throws(SSIError) -> MountedRoot {
        mkdir("/sysroot", 0o755)
        if Mount.isMountPoint("/sysroot") {
            log.info("root", "/sysroot is already mounted; using it")
            return .alreadyMounted
        }
        let (plan, note) = try RootPlan.decide(cluster: cluster?.identity, params: params)
        if let note { log.info("root", note) }
        switch plan {
        case .local(let root):
            do throws(SSIError) { try mountLocalRoot(root) } catch {
                // The emergency shell gets every driver, and the console
                // any load that failed, before the root's error.
                try? finishModules()
                throw error
            }
            return .local
        case .cfsServer(let root):
            // Read-write whatever `ro` says: the init node writes the export
            // and seeds the other nodes' private copies before the hand-off,
            // and serves the root read-write.
            params.root = root.device
            if root.saysReadWrite {
                log.info("root", "the CFS init node mounts its root read-write (it serves it to the cluster)")
                params.readOnly = false
            }
            try mountLocalRoot(root)
            // Every diskless node boots this root (mounted read-write,
            // above): they leave the cluster at once at power-off too.
            installShutdownHook(gfs2: false)
            return .cfsServer
        case .cfsClient(let root):
            try mountCFSClientRoot(root)
            return .cfsClient
        case .gfs2(let root):
            // The plan is gfs2 only with a cluster, so the agents are the
            // membership step's.
            try mountGFS2Root(root, agents: cluster?.agents ?? StartedAgents(), &params)
            return .gfs2
        }
    }

    /// After the cluster root: the init node's export and boot services,
    /// or this node's private paths; each a step of its own, retried from
    /// the emergency shell.
    func afterRoot(_ root: MountedRoot, _ cluster: Membership?) {
        guard let cluster else { return }
        let config = cluster.identity.config, me = cluster.identity.node
        switch root.after {
        case .serveCFS?: step("cfs-server") { () throws(SSIError) in try serveCFS(cluster.identity) }
        case .privatePaths?: step("private") { () throws(SSIError) in try mountPrivatePaths(config, me: me) }
        case nil: break
        }
        syncTunnelPeers(cluster.identity, root: "/sysroot")
        cluster.stage.set("root-mounted")
    }

    /// A local block device (root=, or the CFS init node's [root] device).
    func mountLocalRoot(_ root: RootPlan.LocalRoot) throws(SSIError) {
        guard let spec = root.device else {
            throw SSIError("root", "no root= on the kernel command line",
                           hint: "add root=UUID=... (or LABEL=, PARTUUID=, /dev/NAME)")
        }
        if root.delaySeconds > 0 {
            log.info("root", "waiting \(root.delaySeconds) s (rootdelay=)")
            Process.sleep(milliseconds: root.delayMilliseconds)
        }
        let early = startRootFileSystemLoad(root)
        let device = try waitForDevice(spec, timeout: root.timeoutSeconds)
        log.info("root", "found \(spec) at \(device.path) (\(device.type ?? "no file system"))")
        let type = try root.fileSystemType(of: device)
        // Waited for even when the superblock says otherwise: two loads of
        // one module family at once could find it half-loaded.
        early?.loads.waitAll()
        if let early, early.type == type, let r = early.loads.results.first {
            if let error = r.error { log.error("modules", error) }
            else if r.inserted { log.info("modules", "loaded the \(type) file system driver (\(r.milliseconds) ms, begun while the disk was awaited)") }
        } else {
            loadFileSystem(type)
        }
        var flags: Mount.Flags = []
        if root.readOnly { flags.insert(.readOnly) }
        do {
            try Mount.mount(source: device.path, target: "/sysroot", type: type, flags: flags, data: root.flags)
        } catch {
            throw SSIError("root", "\(error.description)", hint: RootPlan.LocalRoot.mountHint(errno: error.errno, type: type))
        }
        log.info("root", root.mountedLine(path: device.path, type: type))
    }

    /// The root's file system driver, loaded while its disk is awaited:
    /// under TCG ext4 takes half a second to load, and the wait for the
    /// disk's driver and a SATA probe leave the vCPU idle meanwhile. The
    /// type is rootfstype=, or else the one local-disk file system whose
    /// driver the image carries; with several and no rootfstype=, the
    /// superblock decides and the load waits for it, as before.
    func startRootFileSystemLoad(_ root: RootPlan.LocalRoot) -> (type: String, loads: DriverLoads)? {
        guard let ctx = try? modules("/lib/modules/\(Process.kernelRelease())"),
              let type = root.fsType ?? Self.onlyDiskFileSystem(ctx.lookup),
              case .modules = ctx.lookup("fs-\(type)") else { return nil }
        let loads = DriverLoads(ctx)
        loads.start("fs-\(type)", reason: "the root's file system")
        return (type, loads)
    }

    /// File systems a local root is commonly on, by the name mount takes.
    static let diskFileSystems = ["ext4", "ext3", "ext2", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "nilfs2", "vfat", "exfat", "ntfs3"]

    /// The one disk file system whose driver `lookup` finds as a module
    /// (ext2 and ext3 are usually served by ext4's module: one driver),
    /// or nil when there are none or several.
    static func onlyDiskFileSystem(_ lookup: (String) -> ModuleLookup) -> String? {
        var drivers: [[String]: String] = [:]
        for type in diskFileSystems {
            if case .modules(let names) = lookup("fs-\(type)"), drivers[names] == nil { drivers[names] = type }
        }
        return drivers.count == 1 ? drivers.first?.value : nil
    }

    /// Waits for the root's block device, for at most `timeout` s: one
    /// scan of every block device, then a probe of only the devices the
    /// kernel's uevents name as they appear or change (devtmpfs has made
    /// the node before the event is sent). Drivers for devices that appear
    /// meanwhile are loaded from the same events (late hotplug). Every 5 s
    /// a full rescan backs the events up.
    func waitForDevice(_ spec: DeviceSpec, timeout: Int) throws(SSIError) -> BlockDevice {
        let deadline = Process.now() + Double(timeout)
        var lastReport = Process.now()
        var seen = SeenBlockDevices()
        let watch = try? deviceWatch()
        func pathDevice() -> BlockDevice? {
            guard case .path(let p) = spec, FileSystem.exists(p) else { return nil }
            return BlockDevices.probe(p)
        }
        func rescan() -> BlockDevice? {
            seen = SeenBlockDevices(BlockDevices.scan())
            if case .path = spec { return pathDevice() }
            return seen.devices.first(where: spec.matches)
        }
        if let dev = rescan() { return dev }
        while true {
            let now = Process.now()
            if now >= deadline { break }
            if now - lastReport >= 5 {
                log.info("root", "still waiting for \(spec) (\(Int(deadline - now)) s left)")
                lastReport = now
                if let dev = rescan() { return dev }
            }
            let wait = max(1, Int(((min(deadline, lastReport + 5) - now) * 1000).rounded(.up)))
            switch nextDeviceEvent(watch, timeoutMilliseconds: wait) {
            case nil:
                // No monitor: poll, as before libudev.
                Process.sleep(milliseconds: min(wait, 50))
                if let dev = rescan() { return dev }
            case .timedOut?:
                continue
            case .lost?:
                if let dev = rescan() { return dev }
            case .device(let event)?:
                if let watch { loadDriver(for: event, watch) }
                let change = BlockEvent(event)
                switch change {
                case .probe(let node):
                    if let dev = BlockDevices.probe(node) {
                        seen.update(dev)
                        if spec.matches(dev) { return dev }
                    }
                case .gone(let node):
                    seen.remove(path: node)
                case .ignore:
                    break
                }
                // A path may be another name of the device (a symlink).
                if change != .ignore, let dev = pathDevice() { return dev }
            }
        }
        throw SSIError("root", "\(spec) not found after \(timeout) s; block devices seen: \(seen.list)",
                       hint: "check root= and that the image has the disk's driver (ssi-mkinitrd --add-modules)")
    }
}
