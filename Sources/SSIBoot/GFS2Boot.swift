#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig

/// The GFS2 root: every node mounts one shared disk with lock_dlm. The
/// order is the safety argument: quorum first (the membership step never
/// lets a gfs2 node past without it), then dlm_controld, which fences any
/// failed member before GFS2 may replay its journal, then the mount.
extension Boot {
    static let dlmAgent = ClusterConfig.Agent(name: "dlm", command: ["/usr/sbin/dlm_controld", "--foreground", "1"], files: [], line: 0)
    static let configfs = "/sys/kernel/config"

    /// The kernel side of the DLM, before the agents root binds /sys: the
    /// configfs tree dlm_controld configures the kernel through, and the
    /// misc devices it opens by their udev names.
    func prepareDLMKernel() throws(SSIError) {
        for module in ["configfs", "dlm"] {
            do throws(SSIError) { try loadModule(module) } catch {
                throw SSIError("dlm", "\(error.message): a gfs2 root needs it",
                               hint: "rebuild the image with ssi-mkinitrd (it carries configfs and dlm by default)")
            }
        }
        do {
            if !Mount.isMountPoint(Boot.configfs) {
                try Mount.mount(source: "configfs", target: Boot.configfs, type: "configfs", flags: [.noSuid, .noDev, .noExec], data: nil)
            }
            try FileSystem.makeDirectories("/dev/misc")
            for name in ["dlm-control", "dlm-monitor", "dlm_plock"] where !FileSystem.exists("/dev/misc/" + name) {
                try FileSystem.symlink(target: "../" + name, at: "/dev/misc/" + name)
            }
            try FileSystem.makeDirectories("/run/dlm_controld")
        } catch {
            throw SSIError("dlm", "preparing the kernel DLM: \(error.description)")
        }
    }

    /// dlm.conf with the fence secrets in it, when [fence] names any as
    /// `@NAME`: the image's copy keeps the names, and only the daemons'
    /// root (RAM) gets the values, from the secrets opened with the key.
    /// Checked before the daemons' root is made, which copies them.
    func resolvedDLMConf(_ config: ClusterConfig) throws(SSIError) -> String? {
        guard let fence = config.fence, let first = config.fenceSecretNames.first else { return nil }
        guard FileSystem.exists(FenceSecrets.runtimePath) else {
            throw SSIError("dlm", "[fence] names @\(first), and this node has no fence secrets: the key was sealed (or the image built) "
                           + "without \(fence.secrets)",
                           hint: "on a member or where the key is: ssi cluster key seal with \(fence.secrets) there (NAME=value lines), then rebuild this image")
        }
        return try config.dlmConf(secrets: try FenceSecrets.load(FenceSecrets.runtimePath), source: FenceSecrets.runtimePath)
    }

    func writeResolvedDLMConf(_ text: String) throws(SSIError) {
        let path = AgentsRoot.path + "/etc/dlm/dlm.conf"
        do throws(SystemCallError) { try writeFileAtomically(path, Array(text.utf8), mode: 0o600, replace: true) } catch {
            throw SSIError("dlm", "writing \(path): \(error.description)")
        }
    }

    /// Starts dlm_controld in the agents root and waits (bounded) until it
    /// has configured this node's lockspace communications: mounting
    /// earlier fails with ENOTCONN.
    func startDLM(me: ClusterConfig.Node, agents: StartedAgents) throws(SSIError) {
        if agents[Boot.dlmAgent.name] == nil {
            maskForBoot(["dlm.service"])
            agents[Boot.dlmAgent.name] = try startAgent(Boot.dlmAgent)
        }
        let local = "\(Boot.configfs)/dlm/cluster/comms/\(me.number)/local"
        let started = Process.now()
        let deadline = started + 60
        var lastReport = started
        while true {
            if let v = try? FileSystem.readText(local), v.hasPrefix("1") { break }
            var status: Int32 = 0
            if let pid = agents[Boot.dlmAgent.name], waitpid(pid, &status, WNOHANG) == pid {
                agents[Boot.dlmAgent.name] = nil
                throw SSIError("dlm", "dlm_controld exited (status \(status >> 8)) before it was ready",
                               hint: "its messages are above; check /etc/dlm/dlm.conf in the image and that corosync is quorate")
            }
            let now = Process.now()
            if now > deadline {
                throw SSIError("dlm", "dlm_controld did not configure node \(me.number)'s communications within 60 s (\(local) missing)",
                               hint: "check that the cluster name matches the lock table and that dlm_tool status is quorate")
            }
            if now - lastReport >= 5 {
                log.info("dlm", "waiting for dlm_controld (\(Int(deadline - now)) s left)")
                lastReport = now
            }
            Process.sleep(milliseconds: 100)
        }
        log.info("dlm", "dlm_controld ready after \(Int((Process.now() - started) * 1000)) ms")
    }

    /// Mounts the shared disk on /sysroot, once this node's file system
    /// and lock table are the configuration's (`GFS2Root.check`) and dlm
    /// is ready. `params` remembers a read-write override already said.
    func mountGFS2Root(_ root: RootPlan.GFS2Root, agents: StartedAgents, _ params: inout BootParameters) throws(SSIError) {
        let device = try waitForDevice(root.device, timeout: root.timeoutSeconds)
        try root.check(device)
        try startDLM(me: root.me, agents: agents)
        loadFileSystem("gfs2")
        if root.saysReadWrite {
            log.info("root", "the GFS2 root is mounted read-write (each node writes its own journal and private paths)")
            params.readOnly = false
        }
        let options = root.options
        let started = Process.now()
        do {
            try Mount.mountBounded(source: device.path, target: "/sysroot", type: "gfs2", data: options,
                                   timeoutMs: RootPlan.GFS2Root.mountTimeoutMs)
        } catch {
            throw root.mountError(errno: error.errno, description: error.description)
        }
        log.info("root", "mounted \(device.path) (\(root.lockTable)) on /sysroot (gfs2, \(options)) after \(Int((Process.now() - started) * 1000)) ms")
        installShutdownHook(gfs2: true)
        prepareExitRoot()
    }

    /// systemd-shutdown runs the executables in this folder last, after
    /// killing every process but corosync's and dlm's (argv[0] "@"): the
    /// moment the root can be remounted read-only, which writes GFS2's
    /// unmount record and leaves this node's journal clean. Without it a
    /// powered-off node's journal was left dirty (the VM test's fsck saw
    /// it). Then it stops corosync, whose leave message tells the others
    /// at once: a node that powered off without one was seen gone only
    /// after the token and consensus (45 s at the GFS2 test's 20 s token).
    static let shutdownHookDirectory = "/usr/lib/systemd/system-shutdown"
    static let shutdownHookName = "ssi-gfs2-root"
    static let shutdownHook = """
        #!/bin/sh
        # Installed by ssi-init on a GFS2 or CFS root, and by the ssi package. At
        # power-off, systemd-shutdown runs it after every process is gone but the
        # cluster's agents (argv[0] "@"): the moment to leave a GFS2 node's journal
        # clean, then to leave the cluster.
        sync
        if grep -q ' / gfs2 ' /proc/mounts; then
            if mount -o remount,ro / 2>/dev/null; then
                echo "<5>ssi: / (gfs2) remounted read-only: this node's journal is clean" > /dev/kmsg
            else
                echo "<3>ssi: / (gfs2) could not be remounted read-only: this node's journal stays dirty and is replayed by the next mounter" > /dev/kmsg
            fi
        fi
        # corosync as ssi-init started it (argv[0] "@/usr/sbin/corosync") sends its
        # leave message when it stops: the others see this node gone at once, not
        # after the token timeout. Last: the remount above needs the lock manager.
        pid=
        for d in /proc/[0-9]*; do
            case "$(tr '\\0' ' ' < "$d/cmdline" 2>/dev/null)" in
                "@/usr/sbin/corosync "*) pid=${d#/proc/} ;;
            esac
        done
        # On a GFS2 root with ssi's exit root, systemd-shutdown goes there next,
        # and ssi unmounts the root, which leaves the lockspace, before it stops
        # corosync: stopping it here would have the others fence this node.
        if grep -q ' / gfs2 ' /proc/mounts && [ -x /run/initramfs/shutdown ] && [ -f /run/initramfs/ssi-exit-root ]; then
            echo "<5>ssi: corosync stops in the exit root, once the root is unmounted" > /dev/kmsg
            exit 0
        fi
        # Said first: the others may fence this node (power it off) as soon as
        # they see it go, before anything said after the stop reaches the console.
        running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }
        if [ -n "$pid" ]; then
            echo "<5>ssi: leaving the cluster: stopping corosync (pid $pid), whose leave message tells the others at once" > /dev/kmsg
            kill -TERM "$pid" 2>/dev/null
            i=0
            while running "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
            if running "$pid"; then
                echo "<4>ssi: corosync did not stop within 5 s: the others see this node gone after the token timeout" > /dev/kmsg
            fi
        fi

        """

    /// Puts the hook in the root (a GFS2 root, or the CFS init node's,
    /// which every diskless node shares). A failure is a warning: the
    /// node boots, and leaves after the token timeout at power-off.
    func installShutdownHook(gfs2: Bool) {
        let dir = "/sysroot" + Boot.shutdownHookDirectory
        let path = dir + "/" + Boot.shutdownHookName
        if (try? FileSystem.readText(path)) == Boot.shutdownHook { return }
        do {
            try FileSystem.makeDirectories(dir)
            try FileSystem.writeFile(path + ".ssi-new", Boot.shutdownHook, mode: 0o755)
            try FileSystem.rename(path + ".ssi-new", path)
            log.info("root", "installed \(Boot.shutdownHookDirectory)/\(Boot.shutdownHookName): at power-off this node leaves the cluster at once"
                     + (gfs2 ? ", its journal clean" : ""))
        } catch {
            log.warning("root", "cannot install \(path): \(error.description); at power-off "
                        + (gfs2 ? "this node's journal is left dirty and the others see it gone only after the token timeout"
                                : "the nodes booted from this root are seen gone only after the token timeout")
                        + "; check that the root is writable and has room, then reboot this node")
        }
    }
}
