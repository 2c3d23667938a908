#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIClusterFS

/// The cfs-server step, after the CFS init node's root.
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
        let seeded = try NodePrivatePaths.seedOthers(config, server: me.number, root: root)
        let ms = Int((Process.now() - started) * 1000)
        log.info("cfs-server", "exporting \(cfs.export) to \(config.clusterNetwork) (\(CFSFiles.exportsFile)); "
                 + (seeded.isEmpty ? "every node's private copies exist" : "seeded \(seeded.joined(separator: " ")) in \(ms) ms"))

        var units: [(String, String)] = []
        if FileSystem.exists(root + "/lib/systemd/system/nfs-server.service") {
            units.append(("nfs-server.service", "/lib/systemd/system/nfs-server.service"))
            do {
                try FileSystem.makeDirectories(dirname(of: CFSFiles.nfsServerDropIn))
                try FileSystem.writeFile(CFSFiles.nfsServerDropIn, CFSFiles.nfsServerLease())
            } catch {
                log.warning("cfs-server", "writing \(CFSFiles.nfsServerDropIn): \(error.description): the NFS server keeps the kernel's "
                            + "90 s lease (a node that dies holding a file stalls its writers here that long)")
            }
        }
        if config.netboot.enabled {
            try writeNetbootService(config, interface: identity.interface)
            units.append((CFSFiles.netbootUnitName, "../\(CFSFiles.netbootUnitName)"))
            do {
                try FileSystem.writeFile("/run/systemd/system/" + CFSFiles.keysUnitName, CFSFiles.keysUnit(config))
            } catch {
                throw SSIError("cfs-server", "writing the key server's unit: \(error.description)")
            }
            units.append((CFSFiles.keysUnitName, "../\(CFSFiles.keysUnitName)"))
            if !FileSystem.exists(root + config.identity.key) && me.identity == nil {
                log.warning("cfs-server", "\(config.identity.key) is missing on the root: the key server cannot prove it is the init node, "
                            + "and diskless nodes get no cluster key (ssi cluster node key new -o \(config.identity.key); "
                            + "ssi cluster node enroll \(me.name) --key \(config.identity.key); or its own identity = \"tpm\")")
            }
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
}
