import SSICore
import SSILinux

/// ssi-init's view of the kernel's devices, done as udev's coldplug would
/// be but without udevd: one libudev context and one monitor of the
/// kernel's uevents, opened at the modules step and kept for the boot.
///
/// The monitor is opened before the first enumeration, so a device that
/// appears at any point is in the enumeration, in the events, or both:
/// never lost in between. After that first pass, drivers for new devices
/// (a bus whose driver was just loaded, a disk or NIC that shows up late)
/// come from "add" events, and the root wait probes only the block
/// devices events name, instead of walking /sys and every disk again.
final class DeviceWatch {
    let udev: Udev
    /// nil when the kernel refused the uevent socket (or it failed later):
    /// then coldplug repeats the enumeration and the root wait rescans, as
    /// before libudev.
    var monitor: UdevMonitor?
    var aliases = ModaliasTracker()

    init(udev: Udev, monitor: UdevMonitor?) {
        self.udev = udev
        self.monitor = monitor
    }

    /// Settling after the first pass: new devices a loaded driver brings
    /// (virtio_pci's virtio devices) are announced while its module loads,
    /// so they are queued by the time we look; this short quiet period
    /// only catches probes that finish just after. Anything later is
    /// hotplug, handled while the root wait runs.
    static let settleQuiet = 0.05
    /// The longest the settling may take, whatever keeps arriving.
    static let settleLimit = 3.0
    /// Enumeration passes without a monitor (each may bring new buses).
    static let passesWithoutMonitor = 6

    /// The new modaliases of every device sysfs lists now, each with the
    /// first device that has it.
    func enumerateAliases() throws(SSIError) -> [ModaliasDevice] {
        guard FileSystem.isDirectory("/sys/bus") else {
            throw SSIError("modules", "cannot list the machine's devices: /sys/bus is missing (is sysfs mounted?)")
        }
        return aliases.newDevices(sysfsModaliasDevices())
    }
}

extension Boot {
    /// The device watch, made on first use (the modules step) and kept:
    /// the root wait goes on with the same monitor, so events that arrived
    /// in between (while the network came up) are still queued for it.
    func deviceWatch() throws(SSIError) -> DeviceWatch {
        if let devices { return devices }
        let udev: Udev
        do throws(SSIError) { udev = try Udev() } catch {
            throw SSIError("modules", "libudev: \(error)")
        }
        var monitor: UdevMonitor?
        do throws(SystemCallError) { monitor = try udev.kernelMonitor() } catch {
            log.warning("modules", "no kernel uevent monitor (\(error)); looking for devices by rescanning instead")
        }
        let watch = DeviceWatch(udev: udev, monitor: monitor)
        devices = watch
        return watch
    }

    /// The next device event, waiting at most `timeoutMilliseconds`; nil
    /// when there is no monitor. A monitor that fails is reported once and
    /// dropped, so a broken socket cannot turn a wait into a busy loop.
    func nextDeviceEvent(_ watch: DeviceWatch?, timeoutMilliseconds: Int) -> UdevMonitor.Event? {
        guard let watch, let monitor = watch.monitor else { return nil }
        do throws(SystemCallError) {
            return try monitor.next(timeoutMilliseconds: timeoutMilliseconds)
        } catch {
            log.warning("modules", "the kernel uevent monitor failed (\(error)); rescanning instead")
            watch.monitor = nil
            return nil
        }
    }

    /// Late hotplug: the driver of a device that was added after the
    /// modules step (a disk or NIC whose bus came up late), from the image.
    /// A failure is logged, not fatal: the wait that saw the event goes on
    /// and reports what it was waiting for.
    ///
    /// While the modules step's loads still run (a local root's boot), it
    /// first waits for any of them that loads the driver of a device above
    /// this one (`DriverLoads`: virtio_pci, for a virtio disk).
    func loadDriver(for event: UdevDevice, _ watch: DeviceWatch) {
        guard let alias = watch.aliases.alias(for: event),
              let ctx = try? modules("/lib/modules/\(Process.kernelRelease())") else { return }
        for (module, _) in modulesToLoad(for: [alias], lookup: { Self.driverModules(ctx, $0) }) {
            let waited = pendingModules?.loads.waitForParents(of: ModaliasDevice(alias: alias, path: event.sysPath), loading: module) ?? []
            let after = waited.isEmpty ? "" : ", once \(waited.joined(separator: ", ")) had loaded"
            do throws(SSIError) {
                if try ctx.insertIfNeeded(module) { log.info("modules", "loaded \(module) for device \(alias) (hotplug\(after))") }
            } catch {
                log.error("modules", "\(error.message) (for device \(alias), hotplug)")
            }
        }
    }

    /// The drivers the devices above a device want (nearest first), by
    /// their modaliases: for a virtio disk, virtio_pci. The device's path
    /// is its sysfs directory, or a link to it (/sys/bus/virtio/devices/
    /// virtio4). Drivers its own alias wants are not its parents' (the
    /// CPUs' directory has the CPUs' modalias: crct10dif_pclmul and
    /// crc32c_intel are wanted by both, and load side by side).
    static func parentDrivers(of device: ModaliasDevice, _ ctx: ModuleLoader) -> [String] {
        guard let path = try? FileSystem.realPath(device.path) else { return [] }
        let own = Set(driverModules(ctx, device.alias))
        var out: [String] = []
        for parent in ancestorDevicePaths(of: path) {
            guard let alias = sysfsModalias(parent) else { continue }
            for module in driverModules(ctx, alias) where !own.contains(module) && !out.contains(module) { out.append(module) }
        }
        return out
    }

    /// The modules the image's index names for a modalias (none when it
    /// has none, or the lookup fails: a device without a carried driver is
    /// normal).
    static func driverModules(_ ctx: ModuleLoader, _ alias: String) -> [String] {
        guard case .modules(let mods) = ctx.lookup(alias) else { return [] }
        return mods
    }
}
