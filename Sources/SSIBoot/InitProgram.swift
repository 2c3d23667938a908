#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership

/// ssi-init: PID 1 in the initramfs.
///
/// Strictly sequential and single-threaded: no Dispatch, no async, no child
/// monitor. The order is DESIGN.md §3: API file systems, command line,
/// modules, network and membership (with a cluster configuration), root,
/// the steps that follow the root, init, hand-off.
/// Any failing step prints one line naming the step and the cause, then
/// drops to the emergency shell; leaving the shell retries the step.
public enum InitProgram {
    public static func run() -> Never {
        mountAPIFileSystems()
        let boot = Boot(log: Log(tag: "ssi-init", useKmsg: true))
        boot.main()
    }

    /// /proc, /sys, /dev and /run, before anything else: the Swift runtime
    /// and everything after it read /proc. Failures here are reported once
    /// the console works; a mount that already exists is fine.
    static func mountAPIFileSystems() {
        let mounts: [(String, String, String, Mount.Flags, String?)] = [
            ("proc", "/proc", "proc", [.noSuid, .noDev, .noExec], nil),
            ("sysfs", "/sys", "sysfs", [.noSuid, .noDev, .noExec], nil),
            ("devtmpfs", "/dev", "devtmpfs", [.noSuid], "mode=0755"),
            ("tmpfs", "/run", "tmpfs", [.noSuid, .noDev], "mode=0755"),
        ]
        for (src, target, type, flags, data) in mounts {
            mkdir(target, 0o755)
            if !Mount.isMountPoint(target) {
                try? Mount.mount(source: src, target: target, type: type, flags: flags, data: data)
            }
        }
        mkdir("/dev/pts", 0o755)
        try? Mount.mount(source: "devpts", target: "/dev/pts", type: "devpts", flags: [.noSuid, .noExec],
                         data: "gid=5,mode=620,ptmxmode=000")
    }
}

/// The boot. `main()` is the list of steps; what one step hands the next
/// is a value it returns (`KernelArguments`, `NodeIdentity`, `Membership`,
/// `MountedRoot`), and every decision on those values is a pure function
/// beside its step (RootPlan.decide, NodeIdentity.identify,
/// QuorumPolicy.onTimeout...), unit tested without a kernel. The class
/// holds only the boot's services: the console log, and the module context
/// and device watch the modules step opens and the root wait goes on using.
final class Boot {
    let log: Log
    var moduleLoader: ModuleLoader?
    /// libudev and the kernel's uevent monitor, from the modules step on.
    var devices: DeviceWatch?
    /// Module loads the modules step left running (`finishModules`).
    var pendingModules: PendingModules?
    /// The daemons the membership step started (a reference, kept across
    /// its retries); a failed step tells the membership agent (`tellStage`).
    let startedAgents = StartedAgents()

    init(log: consuming Log) {
        self.log = log
    }

    func main() -> Never {
        let kernel = Process.kernelRelease()
        log.info("start", "ssi-init \(SSIBootVersion.string) on Linux \(kernel)")
        let args = step("cmdline") { () throws(SSIError) in try readCommandLine() }
        let params = args.params
        // A local root's boot looks for its disk while driver probes run
        // (ahci's, under TCG): the loads are waited for once the root is
        // mounted. A cluster node needs its network drivers, and a break
        // its shell with every driver, at once.
        let clustered = FileSystem.exists(Boot.clusterConfigPath)
        let leaveLoadsRunning = !clustered && params.breaks.isEmpty
        step("modules") { () throws(SSIError) in try loadModules(kernel: kernel, leaveLoadsRunning: leaveLoadsRunning) }
        breakIfAsked(.modules, params, "after loading modules")
        let cluster: Membership?
        if clustered {
            let identity = step("network") { () throws(SSIError) in try setUpNetwork(params) }
            cluster = step("membership") { () throws(SSIError) in try joinCluster(identity, params, agents: startedAgents) }
        } else {
            cluster = nil
        }
        breakIfAsked(.root, params, "before mounting the root; mount it at /sysroot yourself, or exit to go on")
        // The root step's own copy, kept across its retries (RootStep.swift).
        var rootParams = params
        let root = step("root") { () throws(SSIError) in try mountRoot(cluster, &rootParams) }
        // The loads the modules step left running end before anything
        // else: a failed one stops the boot here, named.
        step("modules") { () throws(SSIError) in try finishModules() }
        afterRoot(root, cluster)
        step("init") { () throws(SSIError) in try checkInit(params.initPath) }
        breakIfAsked(.prePivot, params, "with the root mounted at /sysroot, before switching to it")
        handOff(args, cluster?.identity, stage: cluster?.stage)
    }

    // MARK: failure handling

    /// Runs a step; on failure reports it and opens the emergency shell,
    /// then tries the step again when the shell exits.
    /// The step's value when it succeeds; the emergency shell can be left
    /// any number of times.
    func step<Output>(_ name: String, _ body: () throws(SSIError) -> Output) -> Output {
        while true {
            do throws(SSIError) {
                return try body()
            } catch {
                log.error(error.step, Boot.failureLine(error))
                tellStage(BootStageName.emergency(name))
                emergencyShell("exit the shell to retry step '\(name)'")
                tellStage(name)
            }
        }
    }

    /// What follows "STEP: ERROR: " on the console: the message, then the
    /// hint after "; " when there is one.
    static func failureLine(_ error: SSIError) -> String {
        error.hint.map { "\(error.message); \($0)" } ?? error.message
    }

    /// Once the membership agent runs, a failed step is the boot stage
    /// `emergency:STEP` until its shell exits (then the step's name while
    /// it is tried again): `ssi cluster status` on every member shows the
    /// node stopped, not still coming up, and `ssi cluster reboot` stops
    /// waiting for it. Before the agent, only the console says so.
    func tellStage(_ stage: String) {
        guard let agent = startedAgents[Boot.membershipAgent.name] else { return }
        BootStage(agent: agent).set(stage)
    }

    func breakIfAsked(_ point: BreakPoint, _ params: BootParameters, _ what: String) {
        guard params.breaks.contains(point) else { return }
        log.info("break", "ssi.break=\(point.rawValue): stopping \(what)")
        emergencyShell("exit the shell to continue the boot")
    }

    func emergencyShell(_ exitMeans: String) {
        let busybox = "/usr/bin/busybox"
        guard FileSystem.isExecutableFile(busybox) else {
            log.error("emergency", "no shell in this image (built with --no-busybox); fix the cause and reboot")
            haltForever()
        }
        log.info("emergency", "starting the emergency shell; \(exitMeans)")
        let env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", "PS1=ssi-emergency# "]
        do {
            // setsid + cttyhack: a session of its own with the real console
            // (ttyS0, tty1) as controlling tty, so ^C and job control work.
            let pid = try Process.spawn(busybox, [busybox, "setsid", busybox, "cttyhack", busybox, "sh", "-i"], environment: env)
            let status = try Process.wait(for: pid)
            log.info("emergency", "shell ended (\(status))")
        } catch {
            log.error("emergency", "cannot start the shell: \(error.description)")
            haltForever()
        }
    }

    func haltForever() -> Never {
        while true {
            Process.reapZombies()
            Process.sleep(milliseconds: 1000)
        }
    }
}

public enum SSIBootVersion {
    public static let string = "0.1.0"
}
