import SSICore

/// The decisions of coldplug, hotplug and the root-device wait, apart from
/// the kernel: what to do with an enumerated device or a uevent. ssi-init
/// feeds them what libudev reports; the tests feed them values.

/// Which modaliases still need a driver looked up: each one once, whether
/// it came from the first enumeration or from a later "add" event (a bus
/// whose driver was just loaded announces its devices that way: virtio_pci
/// brings the virtio devices that want virtio_blk and virtio_net).
public struct ModaliasTracker: Sendable {
    public private(set) var seen: Set<String> = []

    /// Modaliases seen at most: a machine has hundreds; the bound keeps a
    /// flood of bogus devices from growing the set forever.
    public static let maxSeen = 65536

    public init() {}

    /// The new modaliases of an enumeration, in its order, each once.
    public mutating func newAliases(of devices: [UdevDevice]) -> [String] {
        newAliases(devices.compactMap(\.modalias))
    }

    /// The new ones among `aliases` (a sysfs scan), in order, each once.
    public mutating func newAliases(_ aliases: [String]) -> [String] {
        aliases.filter { note($0) }
    }

    /// The devices of a sysfs scan whose modalias is new, in order: the
    /// first device of each alias.
    public mutating func newDevices(_ devices: [ModaliasDevice]) -> [ModaliasDevice] {
        devices.filter { note($0.alias) }
    }

    /// The modalias an event asks a driver for: a device that was added
    /// and whose modalias has not been looked up yet. "change", "remove",
    /// "bind" and the rest never ask for a driver (udev's own rule loads
    /// drivers on "add" only).
    public mutating func alias(for event: UdevDevice) -> String? {
        guard event.action == "add", let alias = event.modalias, note(alias) else { return nil }
        return alias
    }

    private mutating func note(_ alias: String) -> Bool {
        guard !alias.isEmpty, seen.count < Self.maxSeen else { return false }
        return seen.insert(alias).inserted
    }
}

/// The modalias of every device sysfs lists, as udev's coldplug finds them
/// (libudev's enumeration matching MODALIAS), read from sysfs directly:
/// under TCG libudev's scan took 250-350 ms a pass (it reads every
/// device's uevent and builds its properties), this a few. A bus device's
/// alias is its `modalias` file, or the MODALIAS line of its uevent (CPUs
/// have only that); a class device's (input) is its `modalias` file.
/// Sorted by bus or class and name, so that a pass loads in a stable order.
/// A device that goes away during the scan is skipped: an event says so.
public func sysfsModaliases(root: String = "/sys", limit: Int = 65536) -> [String] {
    sysfsModaliasDevices(root: root, limit: limit).map(\.alias)
}

/// A device a sysfs scan found with a modalias: `path` is its link under
/// /sys/bus or /sys/class (`parentDrivers` resolves it).
public struct ModaliasDevice: Sendable, Equatable {
    public var alias: String
    public var path: String
    public init(alias: String, path: String) {
        self.alias = alias
        self.path = path
    }
}

/// `sysfsModaliases`, with each alias's device.
public func sysfsModaliasDevices(root: String = "/sys", limit: Int = 65536) -> [ModaliasDevice] {
    var out: [ModaliasDevice] = []
    func names(_ dir: String) -> [String] { ((try? FileSystem.list(dir)) ?? []).sorted() }
    for bus in names(root + "/bus") {
        let dir = "\(root)/bus/\(bus)/devices"
        for device in names(dir) where out.count < limit {
            if let alias = sysfsModalias("\(dir)/\(device)") { out.append(ModaliasDevice(alias: alias, path: "\(dir)/\(device)")) }
        }
    }
    for cls in names(root + "/class") {
        let dir = "\(root)/class/\(cls)"
        for device in names(dir) where out.count < limit {
            if let alias = sysfsModalias("\(dir)/\(device)", orUevent: false) {
                out.append(ModaliasDevice(alias: alias, path: "\(dir)/\(device)"))
            }
        }
    }
    return out
}

/// A sysfs device directory's modalias: its `modalias` file's first line,
/// or (`orUevent`) the MODALIAS line of its uevent, which is all a CPU
/// has; nil when it has none.
public func sysfsModalias(_ dir: String, orUevent: Bool = true) -> String? {
    if let text = try? FileSystem.readText(dir + "/modalias"), let line = text.lines().first, !line.isEmpty {
        return String(line)
    }
    guard orUevent, let uevent = try? FileSystem.readText(dir + "/uevent"),
          let line = uevent.lines().first(where: { $0.hasPrefix("MODALIAS=") }), line.count > 9 else { return nil }
    return String(line.dropFirst(9))
}

/// The device directories above a sysfs device directory, nearest first,
/// within /sys/devices: "/sys/devices/pci0000:00/0000:00:05.0/virtio4"
/// hangs from ".../0000:00:05.0" and "/sys/devices/pci0000:00". Any other
/// path has none (a class link is resolved first).
public func ancestorDevicePaths(of sysPath: String) -> [String] {
    let top = "/sys/devices"
    guard sysPath.hasPrefix(top + "/") else { return [] }
    var parts = sysPath.dropFirst(top.count + 1).split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    // ".." would climb out of the tree: not a resolved sysfs path.
    guard !parts.contains(where: { $0 == ".." || $0 == "." }) else { return [] }
    var out: [String] = []
    while parts.count > 1 {
        parts.removeLast()
        out.append(top + "/" + parts.joined(separator: "/"))
    }
    return out
}

/// The modules to load for some modaliases: each module once, in the order
/// the aliases came, with the alias that asked for it (for the log).
/// `lookup` is the image's index (`ModuleLoader` in ssi-init).
public func modulesToLoad(for aliases: [String], lookup: (String) -> [String]) -> [(module: String, alias: String)] {
    var out: [(module: String, alias: String)] = []
    var taken: Set<String> = []
    for alias in aliases {
        for module in lookup(alias) where taken.insert(module).inserted {
            out.append((module, alias))
        }
    }
    return out
}

/// "Until quiet": a wait for events that ends when none came for `quiet`
/// seconds, and in any case at `limit` seconds after it began. Times are
/// monotonic seconds (Process.now()).
public struct QuietWait: Sendable, Equatable {
    public let quiet: Double
    public let deadline: Double
    public private(set) var lastEvent: Double

    public init(startingAt now: Double, quiet: Double, limit: Double) {
        self.quiet = max(0, quiet)
        self.deadline = now + max(0, limit)
        self.lastEvent = now
    }

    /// An event that counts (one that brought something new) restarts the
    /// quiet period.
    public mutating func eventArrived(at now: Double) {
        lastEvent = max(lastEvent, now)
    }

    /// How long to wait for the next event, in milliseconds; nil when it
    /// has been quiet long enough or the limit is reached.
    public func timeoutMilliseconds(at now: Double) -> Int? {
        let end = min(lastEvent + quiet, deadline)
        guard now < end else { return nil }
        return max(1, Int(((end - now) * 1000).rounded(.up)))
    }
}

/// What a uevent means for a wait on block devices.
public enum BlockEvent: Sendable, Equatable {
    /// A block device appeared or changed (new media, a partition table
    /// re-read, a file system made on it): probe this node again.
    case probe(String)
    /// It went away: forget it.
    case gone(String)
    /// Nothing for the wait.
    case ignore

    public init(_ event: UdevDevice) {
        guard event.subsystem == "block", let node = event.devNode, !node.isEmpty else {
            self = .ignore
            return
        }
        switch event.action {
        case "add", "change", "online": self = .probe(node)
        case "remove": self = .gone(node)
        default: self = .ignore
        }
    }
}

/// The block devices a wait has seen, for the error that lists them when
/// the root is not found: in the order they were first seen (the kernel's
/// /proc/partitions order for the first scan), each node once, with what
/// its last probe said.
public struct SeenBlockDevices: Sendable, Equatable {
    public private(set) var devices: [BlockDevice] = []

    /// Devices kept at most (a machine with thousands of LUNs still gets
    /// a bounded message and a bounded list).
    public static let maxDevices = 4096

    public init(_ devices: [BlockDevice] = []) {
        for device in devices { update(device) }
    }

    public mutating func update(_ device: BlockDevice) {
        if let i = devices.firstIndex(where: { $0.path == device.path }) {
            devices[i] = device
        } else if devices.count < Self.maxDevices {
            devices.append(device)
        }
    }

    public mutating func remove(path: String) {
        devices.removeAll { $0.path == path }
    }

    /// "vda (ext4, UUID=...), vdb (no file system)", or "none".
    public var list: String {
        devices.isEmpty ? "none" : devices.map(\.description).joined(separator: ", ")
    }
}
