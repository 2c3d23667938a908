#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import Synchronization

/// Driver loads in flight, each on a thread of its own, and what they
/// came to. A module is started once per boot step, whichever devices ask.
///
/// A device's driver does not load while the driver of a device it hangs
/// from (its bus) is still loading: the bus's probe registers its devices
/// one by one inside that load, and a child driver loaded meanwhile probes
/// some from its own registration and some from the bus's, in no set
/// order. That made a CI node's 64 MB disk /dev/vda and its key disk
/// /dev/vdb (virtio_blk probed virtio4 before virtio0); waiting for
/// virtio_pci's load gives the kernel's own order, as a sequential
/// modprobe did.
final class DriverLoads: Sendable {
    struct Result: Sendable {
        let name: String
        let reason: String
        let inserted: Bool
        let error: String?
        let milliseconds: Int
        /// The parent drivers' loads it waited for first (none mostly).
        var waitedFor: [String] = []

        /// "virtio_blk 40 ms", or "virtio_blk 40 ms (after virtio_pci)"
        /// when it waited for its bus's driver first (the time is its own).
        var summary: String {
            "\(name) \(milliseconds) ms" + (waitedFor.isEmpty ? "" : " (after \(waitedFor.joined(separator: "+")))")
        }
    }
    private struct State {
        var started: [String] = []
        var inFlight = 0
        var done: [String: Result] = [:]
    }
    private let state = Mutex(State())
    private let insert: @Sendable (String) throws(SSIError) -> Bool
    /// The modules the devices above a device want.
    private let parentDrivers: @Sendable (ModaliasDevice) -> [String]

    init(insert: @escaping @Sendable (String) throws(SSIError) -> Bool,
         parentDrivers: @escaping @Sendable (ModaliasDevice) -> [String]) {
        self.insert = insert
        self.parentDrivers = parentDrivers
    }

    convenience init(_ loader: ModuleLoader) {
        self.init(insert: { name throws(SSIError) in try loader.insertIfNeeded(name) },
                  parentDrivers: { Boot.parentDrivers(of: $0, loader) })
    }

    /// Starts loading `name` unless it was started before. `device`: the
    /// device that asks; the load first waits for any load of a driver of
    /// a device above it that started earlier (only earlier ones, so two
    /// loads never wait for each other).
    func start(_ name: String, reason: String, device: ModaliasDevice? = nil) {
        let position = state.withLock { s -> (index: Int, othersRunning: Bool)? in
            guard !s.started.contains(name) else { return nil }
            s.started.append(name)
            s.inFlight += 1
            return (s.started.count - 1, s.inFlight > 1)
        }
        guard let position else { return }
        let insert = self.insert
        // Reading the devices above costs a few sysfs reads and index
        // lookups: done only when another load is in flight to wait for.
        let parents = device.map { position.othersRunning ? parentDrivers($0).filter { $0 != name } : [] } ?? []
        startThread { [self] in
            let waitedFor = waitWhileLoading(parents, startedBefore: position.index)
            let t0 = Process.now()
            var inserted = false
            var message: String?
            do throws(SSIError) { inserted = try insert(name) } catch { message = error.message }
            let r = Result(name: name, reason: reason, inserted: inserted, error: message,
                           milliseconds: Int((Process.now() - t0) * 1000), waitedFor: waitedFor)
            state.withLock { s in
                s.done[name] = r
                s.inFlight -= 1
            }
        }
    }

    /// The drivers `lookup` names for the devices' modaliases, each module
    /// once, each load with the first device that asked for it.
    func startDrivers(for devices: [ModaliasDevice], lookup: (String) -> [String]) {
        let first = Dictionary(devices.map { ($0.alias, $0) }, uniquingKeysWith: { first, _ in first })
        for (module, alias) in modulesToLoad(for: devices.map(\.alias), lookup: lookup) {
            start(module, reason: "for device \(alias)", device: first[alias])
        }
    }

    /// For a load outside these (the root wait's hotplug): until none of
    /// them loads a driver of a device above `device`. Returns those it
    /// waited for.
    func waitForParents(of device: ModaliasDevice, loading name: String) -> [String] {
        guard busy else { return [] }
        return waitWhileLoading(parentDrivers(device).filter { $0 != name }, startedBefore: nil)
    }

    /// Until none of `modules` that were started (before the load at
    /// `startedBefore`, when given) is still loading; returns those it
    /// waited for. Bounded by those loads, as they are by their modules'
    /// inits; each takes tens to hundreds of milliseconds, so a look every
    /// 5 ms costs nothing beside them.
    private func waitWhileLoading(_ modules: [String], startedBefore index: Int?) -> [String] {
        var waitedFor: [String] = []
        while !modules.isEmpty {
            let loading = state.withLock { s in
                let earlier = index.map { s.started.prefix($0) } ?? s.started[...]
                return modules.filter { earlier.contains($0) && s.done[$0] == nil }
            }
            if loading.isEmpty { break }
            for m in loading where !waitedFor.contains(m) { waitedFor.append(m) }
            Process.sleep(milliseconds: 5)
        }
        return waitedFor
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

    /// The finished loads and the ones still in flight, from one look: a
    /// load that ends between two looks would be named in both (a CI boot
    /// logged "loaded 2 modules (..., crct10dif_pclmul 95 ms), still
    /// loading crct10dif_pclmul, ...").
    var progress: (results: [Result], inFlight: [String]) {
        state.withLock { s in (s.started.compactMap { s.done[$0] }, s.started.filter { s.done[$0] == nil }) }
    }
}

/// What the modules step leaves running: its loads still in flight, then
/// the fallback passes and the image's always-loaded modules, on a thread
/// of their own. A local root's boot goes on looking for its disk
/// meanwhile (ahci's half-second SATA probe no longer holds it up) and
/// waits for them once the root is mounted (`Boot.finishModules`); a
/// cluster node, or a boot asked to break, waits at once.
final class PendingModules: Sendable {
    let loads: DriverLoads
    let loader: ModuleLoader
    let startedAt: Double
    private struct State {
        var finished = false
        var reported: Set<String> = []
        var reportedBefore = false
    }
    private let state = Mutex(State())

    init(_ loads: DriverLoads, _ loader: ModuleLoader, startedAt: Double) {
        self.loads = loads
        self.loader = loader
        self.startedAt = startedAt
    }

    func start(forced: [String]) {
        let loads = self.loads, loader = self.loader
        startThread { [self] in
            loads.waitAll()
            var tracker = ModaliasTracker()
            for _ in 0..<DeviceWatch.passesWithoutMonitor {
                let before = loads.insertedCount
                loads.startDrivers(for: tracker.newDevices(sysfsModaliasDevices()), lookup: { Boot.driverModules(loader, $0) })
                loads.waitAll()
                if loads.insertedCount == before { break }
            }
            for name in forced { loads.start(name, reason: "listed in /etc/ssi/modules") }
            loads.waitAll()
            state.withLock { $0.finished = true }
        }
    }

    /// Until the thread is done: its loads, then at most a few passes.
    /// Not bounded, as a load was not before (finit_module returns when
    /// the module's init does).
    func wait() {
        while !state.withLock({ $0.finished }) { Process.sleep(milliseconds: 5) }
    }

    var reportedBefore: Bool { state.withLock { $0.reportedBefore } }

    /// The loads that ended with a module inserted and were not reported
    /// yet (`Result.summary`), each with its own time: under TCG a module
    /// whose probe waits on hardware is most of the step, and the line
    /// says which.
    func report(_ results: [DriverLoads.Result]? = nil) -> [String] {
        let results = results ?? loads.results
        return state.withLock { s in
            let new = results.filter { $0.inserted && !s.reported.contains($0.name) }
            for r in new { s.reported.insert(r.name) }
            s.reportedBefore = true
            return new.map(\.summary)
        }
    }

    var failures: [DriverLoads.Result] { loads.results.filter { $0.error != nil } }
}

/// The modules step, and the module loads the later steps ask for.
extension Boot {
    /// Loads what this machine needs from the modules the image carries:
    /// drivers for the devices the kernel found (by their modalias, as udev
    /// would: one libudev enumeration, then the kernel's "add" events for
    /// the devices new buses bring, until they go quiet: virtio_pci brings
    /// the virtio devices that want virtio_blk), then the modules the image
    /// was told to always load. File system modules wait for the root
    /// step (`startRootFileSystemLoad`, `loadFileSystem`). Loading
    /// everything carried would cost seconds under TCG.
    ///
    /// `leaveLoadsRunning` (a local root's boot): the step ends once the
    /// first devices' events are quiet, with the loads still in flight
    /// (`PendingModules`). The root wait loads the drivers of the devices
    /// they bring from the same events, and finds the disk while a probe
    /// that waits on hardware runs (ahci's SATA links: 650-800 ms under
    /// TCG, on a machine whose root is on virtio).
    func loadModules(kernel: String, leaveLoadsRunning: Bool = false) throws(SSIError) {
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
        func loadDrivers(_ devices: [ModaliasDevice]) {
            loads.startDrivers(for: devices, lookup: { Self.driverModules(ctx, $0) })
        }
        let watch = try deviceWatch()
        // A retry from the emergency shell looks at every device again.
        watch.aliases = ModaliasTracker()
        loadDrivers(try watch.enumerateAliases())
        if watch.monitor != nil {
            var settle = QuietWait(startingAt: Process.now(), quiet: DeviceWatch.settleQuiet, limit: DeviceWatch.settleLimit)
            while let ms = settle.timeoutMilliseconds(at: Process.now()) {
                // While loads run it is not quiet yet: look at them often.
                let busy = !leaveLoadsRunning && loads.busy
                guard let event = nextDeviceEvent(watch, timeoutMilliseconds: busy ? min(ms, 10) : ms) else { break }
                switch event {
                case .device(let device):
                    guard let alias = watch.aliases.alias(for: device) else { continue }
                    settle.eventArrived(at: Process.now())
                    loadDrivers([ModaliasDevice(alias: alias, path: device.sysPath)])
                case .lost:
                    settle.eventArrived(at: Process.now())
                    loadDrivers(try watch.enumerateAliases())
                case .timedOut:
                    if busy { settle.eventArrived(at: Process.now()) }
                }
            }
        }
        // Then enumerate again while that finds new buses, with or without
        // a monitor: a driver's probe runs inside its module load, so the
        // devices a bus driver brings exist when the load returns, and a
        // pass finds them whatever became of their events. (Events alone
        // lost virtio_net in CI: virtio_blk was loaded from its event, the
        // NIC's never came, and three VM tests booted with no interface.)
        // The passes keep a record of their own of what was looked up, so
        // they do not depend on the events' bookkeeping either; a module
        // already in the kernel is not loaded again. They run on a thread
        // with the loads they wait for (`PendingModules`).
        let forced = (try? FileSystem.readText("/etc/ssi/modules"))?
            .lines().map(String.init).filter { !$0.isEmpty } ?? []
        let pending = PendingModules(loads, ctx, startedAt: started)
        pending.start(forced: forced)
        pendingModules = pending
        let (results, slow) = loads.progress
        if leaveLoadsRunning && !slow.isEmpty {
            let loaded = pending.report(results)
            let ms = Int((Process.now() - started) * 1000)
            let done = loaded.isEmpty ? "" : "loaded \(loaded.count) module\(loaded.count == 1 ? "" : "s") (\(loaded.joined(separator: ", "))), "
            log.info("modules", "\(done)still loading \(slow.joined(separator: ", ")) after \(ms) ms: "
                     + "the boot looks for the root meanwhile, and waits for them once it is mounted")
            return
        }
        try finishModules()
    }

    /// Waits for the loads the modules step left running (and its
    /// fallback passes), then reports them: the summary line, and an
    /// error naming any that failed. Nothing to do when none are left.
    func finishModules() throws(SSIError) {
        guard let pending = pendingModules else { return }
        pendingModules = nil
        pending.wait()
        var failed: [String] = []
        for r in pending.failures {
            log.error("modules", "\(r.error ?? "failed") (\(r.reason))")
            failed.append(r.name)
        }
        if !failed.isEmpty {
            throw SSIError("modules", "could not load \(failed.joined(separator: ", "))",
                           hint: "the lines above say why")
        }
        let ctx = pending.loader
        if !ctx.softdepFailures.isEmpty {
            log.info("modules", "passed over softdeps that would not load, as modprobe does: \(ctx.softdepFailures.joined(separator: "; "))")
        }
        let reportedBefore = pending.reportedBefore
        let loaded = pending.report()
        let ms = Int((Process.now() - pending.startedAt) * 1000)
        if reportedBefore {
            if !loaded.isEmpty { log.info("modules", "then loaded \(loaded.joined(separator: ", ")) (\(ms) ms after the step began)") }
        } else {
            log.info("modules", "loaded \(loaded.count) module\(loaded.count == 1 ? "" : "s") (\(loaded.joined(separator: ", "))) in \(ms) ms")
        }
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
