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
