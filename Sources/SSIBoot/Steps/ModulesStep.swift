#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import Synchronization

/// Driver loads in flight, each on a thread of its own, and what they
/// came to. A module is started once per boot step, whichever devices ask.
final class DriverLoads: Sendable {
    struct Result: Sendable {
        let name: String
        let reason: String
        let inserted: Bool
        let error: String?
        let milliseconds: Int
    }
    private struct State {
        var started: [String] = []
        var inFlight = 0
        var done: [String: Result] = [:]
    }
    private let state = Mutex(State())
    private let loader: ModuleLoader

    init(_ loader: ModuleLoader) { self.loader = loader }

    func start(_ name: String, reason: String) {
        let new = state.withLock { s -> Bool in
            guard !s.started.contains(name) else { return false }
            s.started.append(name)
            s.inFlight += 1
            return true
        }
        guard new else { return }
        let loader = self.loader
        startThread { [self] in
            let t0 = Process.now()
            var inserted = false
            var message: String?
            do throws(SSIError) { inserted = try loader.insertIfNeeded(name) } catch { message = error.message }
            let r = Result(name: name, reason: reason, inserted: inserted, error: message,
                           milliseconds: Int((Process.now() - t0) * 1000))
            state.withLock { s in
                s.done[name] = r
                s.inFlight -= 1
            }
        }
    }

    var busy: Bool { state.withLock { $0.inFlight > 0 } }
    var insertedCount: Int { state.withLock { $0.done.values.filter(\.inserted).count } }

    /// Until every load started has ended. Loads take tens to hundreds of
    /// milliseconds; a look every 5 ms costs nothing beside them. Not
    /// bounded, as a load was not before: finit_module returns when the
    /// module's init does.
    func waitAll() {
        while busy { Process.sleep(milliseconds: 5) }
    }

    /// The finished loads, in the order they were started.
    var results: [Result] {
        state.withLock { s in s.started.compactMap { s.done[$0] } }
    }
}

/// The modules step, and the module loads the later steps ask for.
extension Boot {
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
        // Each driver loads on a thread of its own: a load whose probe
        // waits on hardware (ahci's SATA links: half a second under TCG)
        // no longer holds up the other devices' drivers, nor the events
        // the loaded ones bring.
        let loads = DriverLoads(ctx)
        func loadDrivers(_ aliases: [String]) {
            for (module, alias) in modulesToLoad(for: aliases, lookup: { Self.driverModules(ctx, $0) }) {
                loads.start(module, reason: "for device \(alias)")
            }
        }
        let watch = try deviceWatch()
        // A retry from the emergency shell looks at every device again.
        watch.aliases = ModaliasTracker()
        loadDrivers(try watch.enumerateAliases())
        if watch.monitor != nil {
            var settle = QuietWait(startingAt: Process.now(), quiet: DeviceWatch.settleQuiet, limit: DeviceWatch.settleLimit)
            while let ms = settle.timeoutMilliseconds(at: Process.now()) {
                // While loads run it is not quiet yet: look at them often.
                let busy = loads.busy
                guard let event = nextDeviceEvent(watch, timeoutMilliseconds: busy ? min(ms, 10) : ms) else { break }
                switch event {
                case .device(let device):
                    guard let alias = watch.aliases.alias(for: device) else { continue }
                    settle.eventArrived(at: Process.now())
                    loadDrivers([alias])
                case .lost:
                    settle.eventArrived(at: Process.now())
                    loadDrivers(try watch.enumerateAliases())
                case .timedOut:
                    if busy { settle.eventArrived(at: Process.now()) }
                }
            }
        }
        loads.waitAll()
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
            let before = loads.insertedCount
            loadDrivers(try watch.enumerateAliases())
            loads.waitAll()
            if loads.insertedCount == before { break }
        }
        let forced = (try? FileSystem.readText("/etc/ssi/modules"))?
            .lines().map(String.init).filter { !$0.isEmpty } ?? []
        for name in forced { loads.start(name, reason: "listed in /etc/ssi/modules") }
        loads.waitAll()
        var loaded: [String] = []
        var failed: [String] = []
        // Each load's own time, for the summary line: under TCG a module
        // whose probe waits on hardware is most of the step, and the line
        // says which.
        for r in loads.results {
            if let error = r.error {
                log.error("modules", "\(error) (\(r.reason))")
                failed.append(r.name)
            } else if r.inserted {
                loaded.append("\(r.name) \(r.milliseconds) ms")
            }
        }
        if !failed.isEmpty {
            throw SSIError("modules", "could not load \(failed.joined(separator: ", "))",
                           hint: "the lines above say why")
        }
        if !ctx.softdepFailures.isEmpty {
            log.info("modules", "passed over softdeps that would not load, as modprobe does: \(ctx.softdepFailures.joined(separator: "; "))")
        }
        let ms = Int((Process.now() - started) * 1000)
        log.info("modules", "loaded \(loaded.count) modules (\(loaded.joined(separator: ", "))) in \(ms) ms")
    }

    /// The image's module loader (its indexes read once), with options
    /// and blacklist from the kernel command line.
    func modules(_ dir: String) throws(SSIError) -> ModuleLoader {
        if let moduleLoader { return moduleLoader }
        let line = KernelCommandLine((try? FileSystem.readText("/proc/cmdline")) ?? "")
        let ctx = try ModuleLoader(directory: dir, commandLine: line)
        moduleLoader = ctx
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
            if case .modules = ctx.lookup("fs-\(type)"), try ctx.insertIfNeeded("fs-\(type)") {
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
}
