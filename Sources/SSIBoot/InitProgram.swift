#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// ssi-init: PID 1 in the initramfs.
///
/// Strictly sequential and single-threaded: no Dispatch, no async, no child
/// monitor. The order is DESIGN.md §3: API file systems, command line,
/// modules, (membership and cluster roots in later steps), root, hand-off.
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

final class Boot {
    let log: Log
    var params = BootParameters()
    var argv: [String] = []
    var environment: [String] = []
    let cluster = ClusterState()

    init(log: consuming Log) {
        self.log = log
    }

    func main() -> Never {
        let kernel = Process.kernelRelease()
        log.info("start", "ssi-init \(SSIBootVersion.string) on Linux \(kernel)")
        step("cmdline") { () throws(SSIError) in try readCommandLine() }
        step("modules") { () throws(SSIError) in try loadModules(kernel: kernel) }
        breakIfAsked(.modules, "after loading modules")
        bootCluster()
        breakIfAsked(.root, "before mounting the root; mount it at /sysroot yourself, or exit to go on")
        step("root") { () throws(SSIError) in try mountRoot() }
        mountClusterRootExtras()
        step("init") { () throws(SSIError) in try checkInit() }
        breakIfAsked(.prePivot, "with the root mounted at /sysroot, before switching to it")
        handOff()
    }

    // MARK: steps

    func readCommandLine() throws(SSIError) {
        let text: String
        do { text = try FileSystem.readText("/proc/cmdline") } catch {
            throw SSIError("cmdline", "cannot read /proc/cmdline: \(error)")
        }
        params = try BootParameters(KernelCommandLine(text))
        for w in params.warnings { log.warning("cmdline", w) }
        // Our own argv and environment as the kernel gave them: its
        // leftover words ("single", "emergency") and key=value pairs are
        // for the real init, which gets them unchanged.
        if let raw = try? FileSystem.readFile("/proc/self/cmdline") {
            argv = raw.split(separator: 0, omittingEmptySubsequences: false).dropLast().map {
                String(decoding: $0, as: UTF8.self)
            }
        }
        if let raw = try? FileSystem.readFile("/proc/self/environ") {
            environment = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// Loads what this machine needs from the modules the image carries:
    /// drivers for the devices the kernel found (by their modalias, as udev
    /// would: one libudev enumeration, then the kernel's "add" events for
    /// the devices new buses bring, until they go quiet: virtio_pci brings
    /// the virtio devices that want virtio_blk), then the modules the image
    /// was told to always load. File system modules wait until the root's
    /// type is known. Loading everything carried would cost seconds under
    /// TCG.
    func loadModules(kernel: String) throws(SSIError) {
        let dir = "/lib/modules/\(kernel)"
        guard FileSystem.isDirectory(dir) else {
            let built = imageKernel() ?? "another kernel"
            throw SSIError("modules", "this image has no modules for the running kernel \(kernel) (it was built for \(built))",
                           hint: "rebuild it with ssi-mkinitrd --kver \(kernel)")
        }
        let started = Process.now()
        let ctx = try modules(dir)
        var loaded: [String] = []
        var failed: [String] = []
        func load(_ name: String, reason: String) {
            do throws(SSIError) {
                if try ctx.insertIfNeeded(name) { loaded.append(name) }
            } catch {
                log.error("modules", "\(error.message) (\(reason))")
                failed.append(name)
            }
        }
        func loadDrivers(_ aliases: [String]) {
            for (module, alias) in modulesToLoad(for: aliases, lookup: { Self.driverModules(ctx, $0) }) {
                load(module, reason: "for device \(alias)")
            }
        }
        let watch = try deviceWatch()
        // A retry from the emergency shell looks at every device again.
        watch.aliases = ModaliasTracker()
        loadDrivers(try watch.enumerateAliases())
        if watch.monitor != nil {
            var settle = QuietWait(startingAt: Process.now(), quiet: DeviceWatch.settleQuiet, limit: DeviceWatch.settleLimit)
            while let ms = settle.timeoutMilliseconds(at: Process.now()),
                  let event = nextDeviceEvent(watch, timeoutMilliseconds: ms) {
                switch event {
                case .device(let device):
                    guard let alias = watch.aliases.alias(for: device) else { continue }
                    settle.eventArrived(at: Process.now())
                    loadDrivers([alias])
                case .lost:
                    settle.eventArrived(at: Process.now())
                    loadDrivers(try watch.enumerateAliases())
                case .timedOut:
                    continue
                }
            }
        }
        // Then enumerate again while that finds new buses, with or without
        // a monitor: a driver's probe runs inside its module load, so the
        // devices a bus driver brings exist when the load returns, and a
        // pass finds them whatever became of their events. (Events alone
        // lost virtio_net in CI: virtio_blk was loaded from its event, the
        // NIC's never came, and three VM tests booted with no interface.)
        // The passes start from a fresh record of what was looked up, so
        // they do not depend on the events' bookkeeping either; a module
        // already in the kernel is not loaded again.
        watch.aliases = ModaliasTracker()
        for _ in 0..<DeviceWatch.passesWithoutMonitor {
            let before = loaded.count
            loadDrivers(try watch.enumerateAliases())
            if loaded.count == before { break }
        }
        let forced = (try? FileSystem.readText("/etc/ssi/modules"))?
            .lines().map(String.init).filter { !$0.isEmpty } ?? []
        for name in forced { load(name, reason: "listed in /etc/ssi/modules") }
        if !failed.isEmpty {
            throw SSIError("modules", "could not load \(failed.joined(separator: ", "))",
                           hint: "the lines above say why")
        }
        let ms = Int((Process.now() - started) * 1000)
        log.info("modules", "loaded \(loaded.count) modules (\(loaded.joined(separator: " "))) in \(ms) ms")
    }

    private var kmod: KmodContext?
    /// libudev and the kernel's uevent monitor, from the modules step on.
    var devices: DeviceWatch?

    func modules(_ dir: String) throws(SSIError) -> KmodContext {
        if let kmod { return kmod }
        let ctx = try KmodContext(directory: dir, useSystemConfig: true)
        kmod = ctx
        return ctx
    }

    /// Loads one module the image carries (with its dependencies); true
    /// when it was not loaded before. For modules the kernel would ask
    /// modprobe for: the initramfs has none.
    @discardableResult
    func loadModule(_ name: String) throws(SSIError) -> Bool {
        try modules("/lib/modules/\(Process.kernelRelease())").insertIfNeeded(name)
    }

    /// The driver for a file system type, through its "fs-TYPE" alias; a
    /// type built into the kernel, or not in the image, is left to mount
    /// to judge.
    func loadFileSystem(_ type: String) {
        guard let ctx = try? modules("/lib/modules/\(Process.kernelRelease())") else { return }
        do throws(SSIError) {
            if case .modules = try ctx.lookup("fs-\(type)"), try ctx.insertIfNeeded("fs-\(type)") {
                log.info("modules", "loaded the \(type) file system driver")
            }
        } catch {
            log.error("modules", error.message)
        }
    }

    func imageKernel() -> String? {
        guard let text = try? FileSystem.readText("/etc/ssi/image") else { return nil }
        return text.lines().first { $0.hasPrefix("kernel=") }.map { String($0.dropFirst(7)) }
    }

    /// The root: a cluster's (CFS: the init node's own disk, or the init
    /// node's export over NFSv4) when the image has a configuration, else
    /// the kernel's root=.
    func mountRoot() throws(SSIError) {
        mkdir("/sysroot", 0o755)
        if Mount.isMountPoint("/sysroot") {
            log.info("root", "/sysroot is already mounted; using it")
            return
        }
        if let config = cluster.config, let me = cluster.node, case .cfs(let cfs) = config.root {
            if me.number == cfs.server {
                try mountCFSServerRoot(config, cfs)
                cluster.root = .cfsServer
                return
            }
            if params.root == nil {
                try mountCFSClientRoot(config, cfs, me: me)
                cluster.root = .cfsClient
                return
            }
            // The command line wins (DESIGN.md §3): a node told root= boots
            // that disk, not the cluster's root.
            log.info("root", "root= is on the command line: mounting it rather than the CFS root from node \(cfs.server)")
        }
        if let config = cluster.config, let me = cluster.node, case .gfs2(let g) = config.root {
            if params.root == nil {
                try mountGFS2Root(config, g, me: me)
                cluster.root = .gfs2
                return
            }
            log.info("root", "root= is on the command line: mounting it rather than the GFS2 root \(g.device)")
        }
        try mountLocalRoot()
        cluster.root = .local
    }

    /// After the cluster root: the init node's export and boot services,
    /// or this node's private paths; each a step of its own, retried from
    /// the emergency shell.
    func mountClusterRootExtras() {
        guard let config = cluster.config, let me = cluster.node else { return }
        if case .cfs(let cfs) = config.root {
            switch cluster.root {
            case .cfsServer: step("cfs-server") { () throws(SSIError) in try serveCFS(config, cfs, me: me) }
            case .cfsClient: step("private") { () throws(SSIError) in try mountPrivatePaths(config, me: me) }
            case .local, .gfs2, nil: break
            }
        }
        if case .gfs2 = config.root, cluster.root == .gfs2 {
            step("private") { () throws(SSIError) in try mountPrivatePaths(config, me: me) }
        }
        cluster.stage.set("root-mounted")
    }

    /// The kernel's root= (or [root] device), a local block device.
    func mountLocalRoot() throws(SSIError) {
        guard let spec = params.root else {
            throw SSIError("root", "no root= on the kernel command line",
                           hint: "add root=UUID=... (or LABEL=, PARTUUID=, /dev/NAME)")
        }
        if params.rootDelay > 0 {
            log.info("root", "waiting \(params.rootDelay) s (rootdelay=)")
            // Bounded again here: params is a public value that code, not
            // only the parser, can set, and an overflow in PID 1 is a panic.
            let seconds = min(max(params.rootDelay, 0), BootParameters.rootDelayRange.upperBound)
            Process.sleep(milliseconds: seconds * 1000)
        }
        let device = try waitForDevice(spec, timeout: params.rootTimeout)
        log.info("root", "found \(spec) at \(device.path) (\(device.type ?? "no file system"))")
        guard let type = params.rootFSType ?? device.type else {
            throw SSIError("root", "\(device.path) has no file system libblkid recognizes",
                           hint: "pass rootfstype= or check root=")
        }
        loadFileSystem(type)
        var flags: Mount.Flags = []
        if params.readOnly { flags.insert(.readOnly) }
        do {
            try Mount.mount(source: device.path, target: "/sysroot", type: type, flags: flags, data: params.rootFlags)
        } catch {
            var hint = "check rootfstype= and rootflags="
            if error.errno == ENODEV {
                hint = "the kernel has no \(type) driver: rebuild the image with --add-modules \(type)"
            }
            throw SSIError("root", "\(error.description)", hint: hint)
        }
        log.info("root", "mounted \(device.path) on /sysroot (\(type), \(params.readOnly ? "ro" : "rw")"
                 + (params.rootFlags.map { ", \($0)" } ?? "") + ")")
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

    func checkInit() throws(SSIError) {
        let rootfd = open("/sysroot", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootfd >= 0 else { let lastErrno = errno; throw SSIError("init", "cannot open /sysroot: \(errnoDescription(lastErrno))") }
        defer { close(rootfd) }
        // Resolve init inside the new root: an absolute symlink there
        // (/sbin/init -> /lib/systemd/systemd) must not be followed into
        // the initramfs.
        let fd = ssiOpenInRoot(rootfd, params.initPath, 0o10000000 /* O_PATH */ | O_CLOEXEC)
        guard fd >= 0 else {
            let lastErrno = errno
            throw SSIError("init", "\(params.initPath) not found in the new root: \(errnoDescription(lastErrno))",
                           hint: "install an init there, or pass init=/path/to/init")
        }
        defer { close(fd) }
        let st: FileSystem.Status
        do throws(SystemCallError) { st = try FileSystem.fstatus(fd) } catch { throw SSIError("init", error.description) }
        guard st.kind == .regular else {
            throw SSIError("init", "\(params.initPath) in the new root is not a regular file")
        }
        guard st.mode & 0o111 != 0 else {
            throw SSIError("init", "\(params.initPath) in the new root is not executable (mode \(String(st.mode, radix: 8)))",
                           hint: "chmod +x it, or pass init=/path/to/init")
        }
    }

    func handOff() -> Never {
        clusterMountsBeforeHandOff(newRoot: "/sysroot")
        if let node = cluster.node { setPIDRange(node: node.number) }
        if cluster.config != nil { cluster.stage.set("up") }
        log.info("switch-root", "handing off to \(params.initPath)")
        do {
            try SwitchRoot.moveAPIFileSystems(into: "/sysroot")
            SwitchRoot.freeInitramfs(keeping: "/sysroot")
            try SwitchRoot.enter("/sysroot")
            var args = argv
            if args.isEmpty { args = [params.initPath] } else { args[0] = params.initPath }
            try Process.exec(params.initPath, args, environment: environment)
        } catch {
            // Past the point of no return: the initramfs may be gone, so
            // there is no shell to fall back to. Say what happened, loudly.
            log.error("switch-root", "\(error.description); the system cannot continue")
            haltForever()
        }
    }

    // MARK: failure handling

    /// Runs a step; on failure reports it and opens the emergency shell,
    /// then tries the step again when the shell exits.
    func step(_ name: String, _ body: () throws(SSIError) -> Void) {
        while true {
            do throws(SSIError) {
                try body()
                return
            } catch {
                log.error(error.step, error.hint.map { "\(error.message); \($0)" } ?? error.message)
                emergencyShell("exit the shell to retry step '\(name)'")
            }
        }
    }

    func breakIfAsked(_ point: BreakPoint, _ what: String) {
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
