#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

extension Boot {
    /// The init step: the real init exists in the new root, is a regular
    /// file and is executable, checked before the point of no return.
    func checkInit(_ initPath: String) throws(SSIError) {
        let root: Descriptor
        do throws(SystemCallError) { root = try Descriptor(open: "/sysroot", O_RDONLY | O_DIRECTORY) } catch {
            throw SSIError("init", "cannot open /sysroot: \(errnoDescription(error.errno))")
        }
        // Resolve init inside the new root: an absolute symlink there
        // (/sbin/init -> /lib/systemd/systemd) must not be followed into
        // the initramfs.
        let fd = ssiOpenInRoot(root.rawValue, initPath, 0o10000000 /* O_PATH */ | O_CLOEXEC)
        guard fd >= 0 else {
            let lastErrno = errno
            throw SSIError("init", "\(initPath) not found in the new root: \(errnoDescription(lastErrno))",
                           hint: "install an init there, or pass init=/path/to/init")
        }
        let initFile = Descriptor(owning: fd)
        let st: FileSystem.Status
        do throws(SystemCallError) { st = try FileSystem.fstatus(initFile.rawValue) } catch { throw SSIError("init", error.description) }
        guard st.kind == .regular else {
            throw SSIError("init", "\(initPath) in the new root is not a regular file")
        }
        guard st.mode & 0o111 != 0 else {
            throw SSIError("init", "\(initPath) in the new root is not executable (mode \(String(st.mode, radix: 8)))",
                           hint: "chmod +x it, or pass init=/path/to/init")
        }
    }

    /// The hand-off: a cluster node's swap and cluster mounts, its PID
    /// range, the stage "up"; then switch root and exec the real init.
    func handOff(_ args: KernelArguments, _ cluster: NodeIdentity?, stage: BootStage?) -> Never {
        let initPath = args.params.initPath
        if let cluster {
            clusterMountsBeforeHandOff(cluster, newRoot: "/sysroot")
            setPIDRange(node: cluster.node.number)
        }
        stage?.set("up")
        log.info("switch-root", "handing off to \(initPath)")
        do {
            try SwitchRoot.moveAPIFileSystems(into: "/sysroot")
            SwitchRoot.freeInitramfs(keeping: "/sysroot")
            try SwitchRoot.enter("/sysroot")
            try Process.exec(initPath, args.initArguments(), environment: args.environment)
        } catch {
            // Past the point of no return: the initramfs may be gone, so
            // there is no shell to fall back to. Say what happened, loudly.
            log.error("switch-root", "\(error.description); the system cannot continue")
            haltForever()
        }
    }
}
