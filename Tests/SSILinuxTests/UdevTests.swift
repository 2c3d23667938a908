import Testing
#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// libudev and the decisions ssi-init takes on what it reports; one name,
/// so that `swift test --filter UdevTests` runs them all.
@Suite(.timeLimit(.minutes(1))) enum UdevTests {}

/// libudev on this host: enumeration and the kernel's uevent monitor, the
/// two parts ssi-init uses in the initramfs (no udevd needed for either).
extension UdevTests {
@Suite struct Host {
    /// Every modalias sysfs lists under /sys/bus, read by hand: what
    /// ssi-init walked before libudev.
    static func sysfsModaliases() -> Set<String> {
        var out: Set<String> = []
        for bus in (try? FileSystem.list("/sys/bus")) ?? [] {
            let devices = "/sys/bus/\(bus)/devices"
            for device in (try? FileSystem.list(devices)) ?? [] {
                guard let text = try? FileSystem.readText("\(devices)/\(device)/modalias") else { continue }
                let alias = String(text.prefix { $0 != "\n" })
                if !alias.isEmpty { out.insert(alias) }
            }
        }
        return out
    }

    @Test func enumerationFindsEveryModaliasSysfsHas() throws {
        let udev = try Udev()
        let devices = try udev.devices(withModalias: true)
        let found = Set(devices.compactMap(\.modalias))
        let sysfs = Self.sysfsModaliases()
        try #require(!sysfs.isEmpty, "this host's /sys/bus lists no modalias: nothing to compare")
        #expect(sysfs.subtracting(found).isEmpty, "missing from the enumeration: \(sysfs.subtracting(found).sorted())")
        #expect(devices.allSatisfy { $0.modalias != nil && $0.action == nil && $0.sysPath.hasPrefix("/sys/") })
    }

    /// ssi-init's own scan (SSILinux.sysfsModaliases) finds what libudev's
    /// enumeration finds, no more and no less, on this host's real sysfs.
    @Test func directScanMatchesLibudev() throws {
        let found = Set(try Udev().devices(withModalias: true).compactMap(\.modalias))
        let scanned = SSILinux.sysfsModaliases()
        try #require(!found.isEmpty, "libudev lists no modalias on this host: nothing to compare")
        #expect(Set(scanned) == found, "only libudev: \(found.subtracting(scanned).sorted()); only the scan: \(Set(scanned).subtracting(found).sorted())")
        #expect(SSILinux.sysfsModaliases(root: "/nonexistent").isEmpty)
        // Each alias's device is a link into the device tree, whose own
        // modalias it is, and which names its parents (ssi-init's wait for
        // a bus's driver reads them).
        let devices = SSILinux.sysfsModaliasDevices()
        #expect(devices.map(\.alias) == scanned)
        for device in devices.prefix(200) {
            let real = try FileSystem.realPath(device.path)
            #expect(real.hasPrefix("/sys/devices/"), "\(device.path) -> \(real)")
            let own = try? FileSystem.readText(device.path + "/modalias")
            if let own { #expect(own.hasPrefix(device.alias), "\(device.path)") }
            #expect(ancestorDevicePaths(of: real).allSatisfy { real.hasPrefix($0 + "/") && FileSystem.isDirectory($0) }, "\(real)")
        }
    }

    @Test func enumerationFiltersBySubsystem() throws {
        let udev = try Udev()
        let block = try udev.devices(subsystems: ["block"])
        #expect(!block.isEmpty, "this host has block devices in /proc/partitions")
        #expect(block.allSatisfy { $0.subsystem == "block" })
        #expect(block.contains { $0.devNode?.hasPrefix("/dev/") == true && $0.devType == "disk" })
        #expect(try udev.devices(subsystems: ["ssi-no-such-subsystem"]).isEmpty)
    }

    @Test func monitorSocketIsNonBlockingCloseOnExecAndItsWaitIsBounded() throws {
        let udev = try Udev()
        let monitor = try udev.kernelMonitor(subsystems: ["ssi-no-such-subsystem"])
        let fd = monitor.fileDescriptor
        #expect(fd >= 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0, "the real init must not inherit the uevent socket")
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
        let started = Process.now()
        #expect(try monitor.next(timeoutMilliseconds: 100) == .timedOut)
        #expect(try monitor.next(timeoutMilliseconds: 0) == .timedOut)
        let elapsed = Process.now() - started
        #expect(elapsed >= 0.09 && elapsed < 2, "waited \(elapsed) s for a 100 ms timeout")
    }
}
}

/// The kernel's uevents for a loop device this test creates and removes
/// through /dev/loop-control (LOOP_CTL_ADD, LOOP_CTL_REMOVE): a block
/// device "add" and "remove" with its node, as ssi-init's root wait sees
/// a disk appear.
extension UdevTests {
@Suite(.enabled(if: LoopControl.available, LoopControl.skipReason))
struct Monitor {
    @Test func kernelMonitorSeesABlockDeviceAddedAndRemoved() throws {
        let udev = try Udev()
        // Opened before the device exists, as ssi-init opens it before
        // enumerating.
        let monitor = try udev.kernelMonitor(subsystems: ["block"])
        let loop = try LoopControl.add()
        var removed = false
        defer { if !removed { LoopControl.remove(loop) } }
        let node = "/dev/loop\(loop)"

        let added = try Self.wait(monitor, for: node, action: "add")
        #expect(added.subsystem == "block")
        #expect(added.devType == "disk")
        #expect(added.sysPath.hasSuffix("/block/loop\(loop)"))
        #expect(added.sequenceNumber > 0)
        #expect(BlockEvent(added) == .probe(node))
        #expect(FileSystem.exists(node), "devtmpfs made the node before the event")

        LoopControl.remove(loop)
        removed = true
        let gone = try Self.wait(monitor, for: node, action: "remove")
        #expect(BlockEvent(gone) == .gone(node))
    }

    /// The event with this action for this node, within 5 s; other events
    /// (other tests' and other processes' devices) are passed over.
    static func wait(_ monitor: UdevMonitor, for node: String, action: String) throws -> UdevDevice {
        let deadline = Process.now() + 5
        var others: [String] = []
        while Process.now() < deadline {
            let left = Int((deadline - Process.now()) * 1000) + 1
            switch try monitor.next(timeoutMilliseconds: left) {
            case .device(let d) where d.devNode == node && d.action == action:
                return d
            case .device(let d):
                others.append(d.description)
            case .lost, .timedOut:
                continue
            }
        }
        Issue.record("no \(action) event for \(node) within 5 s; saw: \(others)")
        throw LoopControl.Failure.noEvent
    }
}
}

/// Creating and removing loop devices: /dev/loop-control with
/// CAP_SYS_ADMIN (CapEff bit 21), read from CapEff rather than the uid.
enum LoopControl {
    enum Failure: Error { case noFreeNumber(Int32), noEvent }

    static let path = "/dev/loop-control"
    static var available: Bool {
        NetworkPrivileges.effective & NetworkPrivileges.sysAdmin != 0 && FileSystem.exists(path)
    }
    static let skipReason: Comment =
        "needs /dev/loop-control and CAP_SYS_ADMIN (CapEff bit 21) to create and remove a loop device; run as root"

    static let ctlAdd: UInt = 0x4C80      // LOOP_CTL_ADD
    static let ctlRemove: UInt = 0x4C81   // LOOP_CTL_REMOVE

    /// A new loop device with a number nobody uses (high, so that losetup
    /// users on the host are unlikely to want it meanwhile).
    static func add() throws -> Int32 {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError("open \(path)", errno: errno) }
        defer { close(fd) }
        let base = 4000 + Int32(getpid() % 1000) * 8
        var lastError: Int32 = 0
        for number in base..<(base + 64) {
            if ioctl(fd, ctlAdd, number) >= 0 { return number }
            lastError = errno
            if lastError != EEXIST { break }
        }
        throw SystemCallError("LOOP_CTL_ADD from \(base)", errno: lastError)
    }

    static func remove(_ number: Int32) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        // A device the kernel still holds open a moment after its event
        // (EBUSY) is tried again briefly; it must not outlive the test.
        for _ in 0..<50 {
            if ioctl(fd, ctlRemove, number) >= 0 || errno == ENODEV { return }
            Process.sleep(milliseconds: 20)
        }
    }
}

/// The decisions behind coldplug, hotplug and the root wait, on values.
extension UdevTests {
@Suite struct HotplugLogic {
    static func event(_ action: String?, _ subsystem: String, node: String? = nil, modalias: String? = nil) -> UdevDevice {
        UdevDevice(action: action, subsystem: subsystem, sysPath: "/sys/devices/x", devNode: node, modalias: modalias)
    }

    @Test func enumerationGivesEachNewModaliasOnceInOrder() {
        var tracker = ModaliasTracker()
        let first = tracker.newAliases(of: [
            Self.event(nil, "pci", modalias: "pci:v00001AF4d00001001"),
            Self.event(nil, "platform"),
            Self.event(nil, "pci", modalias: "pci:v00008086d00002922"),
            Self.event(nil, "pci", modalias: "pci:v00001AF4d00001001"),
            Self.event(nil, "acpi", modalias: ""),
        ])
        #expect(first == ["pci:v00001AF4d00001001", "pci:v00008086d00002922"])
        // A second enumeration (after an overflow) gives only what is new.
        let second = tracker.newAliases(of: [
            Self.event(nil, "pci", modalias: "pci:v00008086d00002922"),
            Self.event(nil, "virtio", modalias: "virtio:d00000002v00001AF4"),
        ])
        #expect(second == ["virtio:d00000002v00001AF4"])
    }

    @Test func onlyAnAddEventOfANewModaliasAsksForADriver() {
        var tracker = ModaliasTracker()
        _ = tracker.newAliases(of: [Self.event(nil, "pci", modalias: "pci:v1")])
        #expect(tracker.alias(for: Self.event("add", "pci", modalias: "pci:v1")) == nil, "seen in the enumeration")
        #expect(tracker.alias(for: Self.event("change", "virtio", modalias: "virtio:d2")) == nil)
        #expect(tracker.alias(for: Self.event("bind", "virtio", modalias: "virtio:d2")) == nil)
        #expect(tracker.alias(for: Self.event("remove", "virtio", modalias: "virtio:d2")) == nil)
        #expect(tracker.alias(for: Self.event("add", "block", node: "/dev/vda")) == nil, "no modalias")
        #expect(tracker.alias(for: Self.event("add", "virtio", modalias: "virtio:d2")) == "virtio:d2")
        #expect(tracker.alias(for: Self.event("add", "virtio", modalias: "virtio:d2")) == nil, "once")
    }

    @Test func theDevicesAboveADeviceAreItsSysfsParentsWithinTheDeviceTree() {
        #expect(ancestorDevicePaths(of: "/sys/devices/pci0000:00/0000:00:05.0/virtio4")
                == ["/sys/devices/pci0000:00/0000:00:05.0", "/sys/devices/pci0000:00"])
        #expect(ancestorDevicePaths(of: "/sys/devices/pci0000:00//0000:00:05.0/") == ["/sys/devices/pci0000:00"])
        #expect(ancestorDevicePaths(of: "/sys/devices/platform").isEmpty)
        #expect(ancestorDevicePaths(of: "/sys/devices").isEmpty)
        // A link or anything outside the tree names no parents (resolve first).
        #expect(ancestorDevicePaths(of: "/sys/bus/virtio/devices/virtio4").isEmpty)
        #expect(ancestorDevicePaths(of: "/sys/devicesX/a/b").isEmpty)
        #expect(ancestorDevicePaths(of: "/sys/devices/a/../../etc/b").isEmpty)
        #expect(ancestorDevicePaths(of: "").isEmpty)
    }

    @Test func aScanGivesTheFirstDeviceOfEachNewModalias() {
        var tracker = ModaliasTracker()
        let a = ModaliasDevice(alias: "virtio:d2", path: "/sys/bus/virtio/devices/virtio0")
        let b = ModaliasDevice(alias: "virtio:d2", path: "/sys/bus/virtio/devices/virtio4")
        let c = ModaliasDevice(alias: "virtio:d1", path: "/sys/bus/virtio/devices/virtio1")
        #expect(tracker.newDevices([a, b, c]) == [a, c])
        #expect(tracker.newDevices([b, c]).isEmpty)
        #expect(tracker.alias(for: Self.event("add", "virtio", modalias: "virtio:d2")) == nil, "seen in the scan")
    }

    @Test func modulesToLoadAreEachLoadedOnceNamingTheAliasThatAskedFirst() {
        let index = ["virtio:d2": ["virtio_blk"], "virtio:d1": ["virtio_net"], "pci:a": ["ahci", "libahci"],
                     "pci:b": ["ahci"]]
        let plan = modulesToLoad(for: ["pci:a", "virtio:d2", "unknown", "pci:b", "virtio:d1"]) { index[$0] ?? [] }
        #expect(plan.map(\.module) == ["ahci", "libahci", "virtio_blk", "virtio_net"])
        #expect(plan.map(\.alias) == ["pci:a", "pci:a", "virtio:d2", "virtio:d1"])
        #expect(modulesToLoad(for: []) { _ in ["x"] }.isEmpty)
    }

    @Test func quietWaitEndsAfterTheQuietPeriodOrAtTheLimit() {
        // Binary fractions, so that the milliseconds come out exact.
        var wait = QuietWait(startingAt: 100, quiet: 0.5, limit: 3)
        #expect(wait.timeoutMilliseconds(at: 100) == 500)
        #expect(wait.timeoutMilliseconds(at: 100.25) == 250)
        #expect(wait.timeoutMilliseconds(at: 100.5) == nil, "quiet for 500 ms: settled")
        wait.eventArrived(at: 100.375)
        #expect(wait.timeoutMilliseconds(at: 100.5) == 375, "an event restarts the quiet period")
        // Events that keep coming cannot stretch it past the limit.
        for step in 1...16 { wait.eventArrived(at: 100 + Double(step) * 0.25) }
        #expect(wait.timeoutMilliseconds(at: 102.75) == 250)
        #expect(wait.timeoutMilliseconds(at: 103) == nil)
        #expect(wait.timeoutMilliseconds(at: 102.9999) == 1, "never a zero wait that would spin")
        // An event stamped earlier than the last does not move it back.
        var other = QuietWait(startingAt: 10, quiet: 1, limit: 5)
        other.eventArrived(at: 12)
        other.eventArrived(at: 11)
        #expect(other.lastEvent == 12)
        #expect(QuietWait(startingAt: 0, quiet: 0, limit: 10).timeoutMilliseconds(at: 0) == nil)
        #expect(QuietWait(startingAt: 0, quiet: -1, limit: -1).timeoutMilliseconds(at: 0) == nil)
    }

    @Test func blockEventsProbeOrForgetOnlyBlockDevicesWithANode() {
        #expect(BlockEvent(Self.event("add", "block", node: "/dev/vda1")) == .probe("/dev/vda1"))
        #expect(BlockEvent(Self.event("change", "block", node: "/dev/sr0")) == .probe("/dev/sr0"))
        #expect(BlockEvent(Self.event("remove", "block", node: "/dev/vdb")) == .gone("/dev/vdb"))
        #expect(BlockEvent(Self.event("add", "net")) == .ignore)
        #expect(BlockEvent(Self.event("add", "virtio", modalias: "virtio:d2")) == .ignore)
        #expect(BlockEvent(Self.event("add", "block")) == .ignore, "no node")
        #expect(BlockEvent(Self.event("bind", "block", node: "/dev/vda")) == .ignore)
        #expect(BlockEvent(Self.event(nil, "block", node: "/dev/vda")) == .ignore)
    }

    @Test func seenDevicesKeepFirstSeenOrderAndTheLastProbe() {
        var seen = SeenBlockDevices()
        #expect(seen.list == "none")
        seen = SeenBlockDevices([BlockDevice(name: "vda", path: "/dev/vda"),
                                 BlockDevice(name: "vda1", path: "/dev/vda1", type: "ext4", label: "root")])
        seen.update(BlockDevice(name: "vdb", path: "/dev/vdb", type: "swap"))
        seen.update(BlockDevice(name: "vda", path: "/dev/vda", type: "ext4", uuid: "u-1"))
        #expect(seen.devices.map(\.name) == ["vda", "vda1", "vdb"])
        #expect(seen.list == "vda (ext4, UUID=u-1), vda1 (ext4, LABEL=root), vdb (swap)")
        seen.remove(path: "/dev/vda1")
        seen.remove(path: "/dev/nothing")
        #expect(seen.devices.map(\.name) == ["vda", "vdb"])
    }
}
}
