#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIClusterFS

/// The CFS root of a node other than the init node: the init node's
/// export over NFSv4 (the init node mounts its own disk as a local root,
/// then serves it: CFSServerStep.swift).
extension Boot {
    /// A node other than the init node: wait (bounded) for the init node's
    /// NFS server, then mount the root from it (the private step follows).
    func mountCFSClientRoot(_ root: RootPlan.CFSClientRoot) throws(SSIError) {
        let who = root.who
        loadFileSystem("nfs4")
        // "nfs4" is registered by nfs.ko; the protocol itself is nfsv4.ko,
        // which the kernel asks modprobe for, and the initramfs has none:
        // without it the mount fails with EPROTONOSUPPORT.
        do throws(SSIError) { try loadModule("nfsv4") } catch {
            throw SSIError("root", "\(error.message): NFSv4 is needed to mount the CFS root",
                           hint: "rebuild the image with ssi-mkinitrd --config (it carries nfsv4)")
        }
        let started = Process.now()
        let waitSeconds = root.waitSeconds
        let deadline = started + Double(waitSeconds)
        var lastReport = started
        var last = TCPProbe.Result.noAnswer("not tried")
        while true {
            last = TCPProbe.probe(root.serverAddress, port: 2049, timeoutMs: 2000)
            if last == .open { break }
            let now = Process.now()
            if now >= deadline { break }
            if now - lastReport >= 5 {
                log.info("root", "waiting for \(who) to serve NFS: \(RootPlan.CFSClientRoot.describe(last)) (\(Int(deadline - now)) s left)")
                lastReport = now
            }
            Process.sleep(milliseconds: RootPlan.CFSClientRoot.retryMilliseconds(after: last))
        }
        guard last == .open else {
            throw SSIError("root", "\(who) did not serve NFS within \(waitSeconds) s: \(RootPlan.CFSClientRoot.describe(last)); "
                           + "this node's root lives on it (CFS)",
                           hint: "boot the init node first, check its nfs-server.service and the cluster network; [root] wait_seconds waits longer")
        }
        let options = root.options
        let source = root.source
        do {
            try Mount.mountBounded(source: source, target: "/sysroot", type: "nfs4", data: options, timeoutMs: 60_000)
        } catch {
            throw SSIError("root", "\(error.description) from \(who)",
                           hint: RootPlan.CFSClientRoot.mountHint(errno: error.errno, network: root.network))
        }
        let ms = Int((Process.now() - started) * 1000)
        log.info("root", "mounted \(source) from \(who) on /sysroot (nfs4, \(options)) after \(ms) ms"
                 + (root.coherent == nil ? "" : "; its top level cached"))
        if let coherent = root.coherent { try mountCoherentTopLevel(coherent, who: who) }
        mountCachedTrees(root)
        maskUnitsForCFSClient()
    }

    /// systemd gives a device 90 s to appear, and on a shared root (CFS
    /// over the network, GFS2 with a DLM lock per lookup) udev reads its
    /// rules and runs its helpers at the cluster's pace: two diskless nodes
    /// booting at once from a slow init node missed it, and the serial
    /// console (dev-ttyS0.device) never got its login. A runtime drop-in
    /// (moves into the root with /run, gone at the next boot) waits 5 min.
    func waitLongerForDevices() {
        let dir = "/run/systemd/system.conf.d"
        do throws(SystemCallError) {
            try FileSystem.makeDirectories(dir)
            try FileSystem.writeFile(dir + "/" + Self.deviceTimeoutDropIn.name, Self.deviceTimeoutDropIn.text)
        } catch {
            log.warning("root", "could not write \(dir)/\(Self.deviceTimeoutDropIn.name): \(error.description); systemd keeps its 90 s device timeout")
        }
    }

    static let deviceTimeoutDropIn = (name: "50-ssi-shared-root.conf", text: """
        # Written by ssi-init at every boot on a shared root (CFS, GFS2):
        # devices appear as fast as udev runs over the cluster's root.
        [Manager]
        DefaultDeviceTimeoutSec=300s

        """)

    /// The root's top-level directories, each mounted again coherent
    /// over the cached root (RootPlan.CFSClientRoot.CoherentTopLevel). One
    /// that fails stops the boot: left on the cached mount, a directory
    /// every node writes would be stale for `cache_seconds` without a word.
    func mountCoherentTopLevel(_ coherent: RootPlan.CFSClientRoot.CoherentTopLevel, who: String) throws(SSIError) {
        let names: [String]
        do { names = try FileSystem.list("/sysroot") } catch {
            throw SSIError("root", "\(error.description) (the CFS root from \(who))")
        }
        let dirs = coherent.directories(names) { name in
            (try? FileSystem.status("/sysroot/" + name).kind) == .directory
        }
        let started = Process.now()
        for name in dirs {
            let source = "\(coherent.server):/\(name)"
            do {
                try Mount.mountBounded(source: source, target: "/sysroot/" + name, type: "nfs4", data: coherent.options, timeoutMs: 60_000)
            } catch {
                throw SSIError("root", "\(error.description): /\(name) from \(who) could not be mounted coherent over the cached top level",
                               hint: "[root] cached = [] mounts the whole root coherent, as one mount")
            }
        }
        let ms = Int((Process.now() - started) * 1000)
        log.info("root", "coherent (nfs4, \(coherent.options)): /\(dirs.joined(separator: " /")) in \(ms) ms")
    }

    /// `[root] cached`: the distro's read-mostly trees again, with the
    /// NFS client's caches (a second superblock: its options differ from
    /// the root's). A tree that cannot be mounted stays on the coherent
    /// root mount, which already shows it: slower, never wrong, so the
    /// boot goes on and says so.
    func mountCachedTrees(_ root: RootPlan.CFSClientRoot) {
        for tree in root.cached {
            let path = String(tree.target.dropFirst("/sysroot".count))
            guard FileSystem.isDirectory(tree.target) else {
                log.warning("root", "[root] cached names \(path), which is not a directory on the shared root: not cached")
                continue
            }
            let started = Process.now()
            do {
                try Mount.mountBounded(source: tree.source, target: tree.target, type: "nfs4", data: tree.options, timeoutMs: 60_000)
                let ms = Int((Process.now() - started) * 1000)
                log.info("root", "mounted \(tree.source) on \(tree.target) cached (nfs4, \(tree.options)) after \(ms) ms")
            } catch {
                log.warning("root", "could not mount \(tree.source) cached: \(error.description); \(path) stays on the coherent root mount")
            }
        }
    }

    /// The shared root carries the init node's services, enabled: the
    /// other nodes must not export their NFS root again. Its fstab's `/`
    /// line is the init node's disk: systemd-remount-fs would remount this
    /// node's NFS root with that disk's options (errors=remount-ro...), fail,
    /// and leave the system degraded; ssi-init mounted the root with ssi's
    /// options already. (systemd-fsck-root is skipped by its own condition:
    /// the root is read-write.)
    func maskUnitsForCFSClient() {
        maskForBoot(["nfs-server.service", "nfs-kernel-server.service", CFSFiles.netbootUnitName, "systemd-remount-fs.service"])
    }

    /// Runtime masks: /run/systemd/system outranks /etc and /lib, moves
    /// into the new root with /run, and is gone at the next boot.
    func maskForBoot(_ units: [String]) {
        let dir = "/run/systemd/system"
        try? FileSystem.makeDirectories(dir)
        for unit in units where !FileSystem.exists(dir + "/" + unit) {
            try? FileSystem.symlink(target: "/dev/null", at: dir + "/" + unit)
        }
    }
}
