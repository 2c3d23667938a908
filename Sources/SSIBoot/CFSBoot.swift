#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIClusterFS

/// The CFS root: the init node mounts its own disk and serves it; every
/// other node mounts it over NFSv4 from the init node, then its
/// node-private paths.
extension Boot {
    /// What the init node does with its root before the hand-off: the
    /// export, every other node's private copies (seeded here from the
    /// local disk, much faster than by each node over NFS), and the
    /// runtime units that start the NFS server and the network-boot
    /// service after the hand-off (the distro's own nfs-kernel-server and
    /// dnsmasq). Starting them after the hand-off costs the diskless nodes
    /// the init node's systemd start-up; DESIGN-NOTES.md says why we chose it.
    func serveCFS(_ identity: NodeIdentity) throws(SSIError) {
        let config = identity.config, me = identity.node
        guard case .cfs(let cfs) = config.root else { return }
        let root = "/sysroot"
        do {
            try FileSystem.makeDirectories(root + dirname(of: CFSFiles.exportsFile))
            try FileSystem.writeFile(root + CFSFiles.exportsFile, CFSFiles.exports(config))
        } catch {
            throw SSIError("cfs-server", "writing \(CFSFiles.exportsFile): \(error.description)")
        }
        if !FileSystem.exists(root + "/usr/sbin/exportfs") {
            log.warning("cfs-server", "the root has no NFS server (/usr/sbin/exportfs): the other nodes cannot mount it; "
                        + "install nfs-kernel-server in the init node's root")
        }
        // The kernel NFS server, from the image: the distro's units mount
        // /proc/fs/nfsd, which needs it, and a root booted with another
        // kernel (or none installed) has no modules of its own for it.
        do throws(SSIError) {
            if try loadModule("nfsd") { log.info("modules", "loaded the kernel NFS server (nfsd)") }
        } catch {
            log.warning("cfs-server", "\(error.message); the NFS server will not start unless the root has the module "
                        + "(rebuild the image with ssi-mkinitrd --config: a cfs configuration carries nfsd)")
        }
        let started = Process.now()
        var seeded: [String] = []
        for node in config.nodes where node.number != me.number {
            let privates = NodePrivatePaths(root: root, directory: config.privatePaths.directory, nodeName: node.name,
                                            paths: config.privatePaths(for: node))
            for (path, result) in try privates.seed() where result != .kept {
                seeded.append("\(node.name):\(path)")
            }
        }
        let ms = Int((Process.now() - started) * 1000)
        log.info("cfs-server", "exporting \(cfs.export) to \(config.network.prefix) (\(CFSFiles.exportsFile)); "
                 + (seeded.isEmpty ? "every node's private copies exist" : "seeded \(seeded.joined(separator: " ")) in \(ms) ms"))

        var units: [(String, String)] = []
        if FileSystem.exists(root + "/lib/systemd/system/nfs-server.service") {
            units.append(("nfs-server.service", "/lib/systemd/system/nfs-server.service"))
        }
        if config.netboot.enabled {
            try writeNetbootService(config, interface: identity.interface)
            units.append((CFSFiles.netbootUnitName, "../\(CFSFiles.netbootUnitName)"))
        }
        // Enabled for this boot only, whatever the root's own presets say.
        let wants = "/run/systemd/system/multi-user.target.wants"
        try? FileSystem.makeDirectories(wants)
        for (name, target) in units where !FileSystem.exists(wants + "/" + name) {
            try? FileSystem.symlink(target: target, at: wants + "/" + name)
        }
    }

    func writeNetbootService(_ config: ClusterConfig, interface: String) throws(SSIError) {
        let nb = config.netboot
        let dir = CFSFiles.runDirectory
        do {
            try FileSystem.makeDirectories(dir)
            try FileSystem.writeFile(dir + "/dnsmasq.conf", CFSFiles.dnsmasqConf(config, interface: interface))
            try FileSystem.writeFile(dir + "/event", CFSFiles.eventScript, mode: 0o755)
            try FileSystem.writeFile(dir + "/events", "")
            try FileSystem.makeDirectories("/run/systemd/system")
            try FileSystem.writeFile("/run/systemd/system/" + CFSFiles.netbootUnitName, CFSFiles.netbootUnit(config))
        } catch {
            throw SSIError("cfs-server", "writing the network boot service: \(error.description)")
        }
        let image = "/sysroot" + nb.directory + "/" + CFSFiles.imageName
        if !FileSystem.exists(image) {
            log.warning("cfs-server", "\(nb.directory) has no \(CFSFiles.imageName): diskless nodes cannot boot from this node "
                        + "until you run ssi-mkinitrd --config \(config.file) --netboot \(nb.directory) on it")
        } else if !FileSystem.exists("/sysroot/usr/sbin/dnsmasq") {
            log.warning("cfs-server", "the root has no /usr/sbin/dnsmasq: no DHCP/TFTP for the diskless nodes (install dnsmasq-base)")
        } else {
            log.info("cfs-server", "network boot from \(nb.directory) on \(interface) after the hand-off (\(CFSFiles.netbootUnitName))")
        }
    }

    /// A node other than the init node: wait (bounded) for the init node's
    /// NFS server, mount the root from it, then the node's private paths.
    func mountCFSClientRoot(_ root: RootPlan.CFSClientRoot) throws(SSIError) {
        let server = root.server
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
            last = TCPProbe.probe(server.address, port: 2049, timeoutMs: 2000)
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
        log.info("root", "mounted \(source) from \(who) on /sysroot (nfs4, \(options)) after \(ms) ms")
        maskUnitsForCFSClient()
    }

    /// This node's private paths on the shared root.
    func mountPrivatePaths(_ config: ClusterConfig, me: ClusterConfig.Node) throws(SSIError) {
        let privates = NodePrivatePaths(root: "/sysroot", directory: config.privatePaths.directory, nodeName: me.name,
                                        paths: config.privatePaths(for: me))
        let started = Process.now()
        let results = try privates.seed()
        try privates.bind()
        let made = results.filter { $0.result != .kept }.map(\.path)
        let ms = Int((Process.now() - started) * 1000)
        // systemd takes a mounted /etc/machine-id for a transient one and
        // would try to "commit" it to the file underneath (the shared one);
        // ours is persistent already.
        if privates.paths.contains("/etc/machine-id") {
            maskForBoot(["systemd-machine-id-commit.service"])
        }
        log.info("private", "\(privates.paths.joined(separator: " ")) are \(me.name)'s own, from "
                 + "\(config.privatePaths.directory)/\(me.name)" + (made.isEmpty ? "" : " (seeded \(made.joined(separator: " ")))")
                 + " in \(ms) ms")
    }

    /// The shared root carries the init node's services, enabled: the
    /// other nodes must not export their NFS root again.
    func maskUnitsForCFSClient() {
        maskForBoot(["nfs-server.service", "nfs-kernel-server.service", CFSFiles.netbootUnitName])
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
