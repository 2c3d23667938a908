#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CUdev
public import SSICore

/// One device as libudev reports it: from an enumeration of sysfs, or from
/// a kernel uevent (then `action` says what happened to it).
///
/// In the initramfs there is no udevd and no /run/udev database, so every
/// field here comes from sysfs or from the kernel's own uevent: the
/// device's `uevent` file (MODALIAS, DEVTYPE, DEVNAME) or the event's
/// environment.
public struct UdevDevice: Sendable, Equatable, CustomStringConvertible {
    /// "add", "remove", "change", "bind", "unbind", "move", "online",
    /// "offline"; nil for an enumerated device.
    public var action: String?
    /// "pci", "virtio", "block", "net"...
    public var subsystem: String?
    /// "disk", "partition" for block devices; nil for most others.
    public var devType: String?
    /// "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda".
    public var sysPath: String
    /// The node devtmpfs made for it: "/dev/vda"; nil for devices without one.
    public var devNode: String?
    /// What a driver matches it by (modules.alias): "virtio:d00000002v00001AF4".
    public var modalias: String?
    /// The kernel's event sequence number; 0 for an enumerated device.
    public var sequenceNumber: UInt64

    public init(action: String? = nil, subsystem: String? = nil, devType: String? = nil, sysPath: String,
                devNode: String? = nil, modalias: String? = nil, sequenceNumber: UInt64 = 0) {
        self.action = action
        self.subsystem = subsystem
        self.devType = devType
        self.sysPath = sysPath
        self.devNode = devNode
        self.modalias = modalias
        self.sequenceNumber = sequenceNumber
    }

    /// "add block /dev/vda1 (partition)": the shape used in boot logs.
    public var description: String {
        var parts: [String] = []
        if let action { parts.append(action) }
        parts.append(subsystem ?? "?")
        parts.append(devNode ?? sysPath)
        if let devType { parts.append("(\(devType))") }
        if let modalias { parts.append("modalias \(modalias)") }
        return parts.joined(separator: " ")
    }
}

/// A libudev context (`struct udev *`): enumeration of the devices sysfs
/// lists and the kernel's uevent monitor. Only the parts that work without
/// udevd: what ssi-init needs in the initramfs, where it is the only one
/// handling devices.
///
/// libudev's `udev_list_entry_foreach` macro does not import into Swift;
/// lists are walked with `udev_list_entry_get_next`.
///
/// A final class rather than a `~Copyable` value: ssi-init keeps the
/// context (and a monitor that needs it alive) across boot steps in a
/// field, and the monitor holds a reference to it.
public final class Udev {
    fileprivate let handle: OpaquePointer

    /// Devices read from one enumeration at most: a machine has hundreds
    /// or a few thousand; a runaway list must not grow without bound.
    public static let maxDevices = 65536

    public init() throws(SSIError) {
        try LazyLibrary.udev.load()
        guard let handle = udev_new() else {
            throw SSIError("udev", "\(SystemCallError("udev_new", errno: errno == 0 ? ENOMEM : errno))")
        }
        self.handle = handle
    }

    deinit { udev_unref(handle) }

    /// The devices sysfs lists (under /sys/bus and /sys/class), in libudev's
    /// order (sorted by path, parents before children).
    /// - Parameter subsystems: only these subsystems; empty for all.
    /// - Parameter withModalias: only devices that have a MODALIAS, the ones
    ///   a driver can be looked up for.
    public func devices(subsystems: [String] = [], withModalias: Bool = false) throws(SystemCallError) -> [UdevDevice] {
        guard let enumerate = udev_enumerate_new(handle) else {
            throw SystemCallError("udev_enumerate_new", errno: errno == 0 ? ENOMEM : errno)
        }
        defer { udev_enumerate_unref(enumerate) }
        for subsystem in subsystems {
            let rc = udev_enumerate_add_match_subsystem(enumerate, subsystem)
            if rc < 0 { throw SystemCallError("udev_enumerate_add_match_subsystem \(subsystem)", errno: -rc) }
        }
        if withModalias {
            let rc = udev_enumerate_add_match_property(enumerate, "MODALIAS", "*")
            if rc < 0 { throw SystemCallError("udev_enumerate_add_match_property MODALIAS", errno: -rc) }
        }
        let rc = udev_enumerate_scan_devices(enumerate)
        if rc < 0 { throw SystemCallError("udev_enumerate_scan_devices", errno: -rc) }
        var out: [UdevDevice] = []
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let current = entry, out.count < Self.maxDevices {
            entry = udev_list_entry_get_next(current)
            guard let name = udev_list_entry_get_name(current) else { continue }
            // A device can go away between the scan and this read: skip it,
            // an event will say so.
            guard let device = udev_device_new_from_syspath(handle, name) else { continue }
            defer { udev_device_unref(device) }
            let value = UdevDevice(device)
            if withModalias && value.modalias == nil { continue }
            out.append(value)
        }
        return out
    }

    /// A monitor of the kernel's own uevents (`udev_monitor_new_from_netlink(udev,
    /// "kernel")`): what the kernel announces, before (and without) udevd.
    /// Receiving starts here, so open it BEFORE enumerating: a device that
    /// appears in between is then in the enumeration, the events, or both,
    /// never in neither.
    /// - Parameter subsystems: only events of these subsystems; empty for all.
    /// - Parameter receiveBufferSize: bytes the kernel may queue for us
    ///   while we are busy (loading a module makes hundreds of events).
    ///   Best effort: the kernel's default is kept when it refuses.
    public func kernelMonitor(subsystems: [String] = [], receiveBufferSize: Int = 4 << 20) throws(SystemCallError) -> UdevMonitor {
        try UdevMonitor(self, subsystems: subsystems, receiveBufferSize: receiveBufferSize)
    }
}

/// The kernel's uevent stream (NETLINK_KOBJECT_UEVENT, the "kernel"
/// group). The socket is non-blocking and close-on-exec (libudev opens it
/// so): waits are `poll` with a bounded timeout, and the real init never
/// inherits it.
public final class UdevMonitor {
    private let udev: Udev
    private let handle: OpaquePointer

    /// What one wait gave.
    public enum Event: Sendable, Equatable {
        /// A device event that passed the subsystem filter.
        case device(UdevDevice)
        /// Nothing (that passed the filter) before the timeout.
        case timedOut
        /// The kernel dropped events because our queue was full (ENOBUFS):
        /// whoever keeps state from events must rescan.
        case lost
    }

    /// Datagrams read in one wait at most: events that fail the filter are
    /// read and dropped, and a flood of them must not keep the wait from
    /// returning once its time is up.
    static let maxDatagramsPerWait = 4096

    fileprivate init(_ udev: Udev, subsystems: [String], receiveBufferSize: Int) throws(SystemCallError) {
        guard let handle = udev_monitor_new_from_netlink(udev.handle, "kernel") else {
            throw SystemCallError("udev_monitor_new_from_netlink kernel", errno: errno == 0 ? ENOMEM : errno)
        }
        self.udev = udev
        self.handle = handle
        for subsystem in subsystems {
            let rc = udev_monitor_filter_add_match_subsystem_devtype(handle, subsystem, nil)
            if rc < 0 { throw SystemCallError("udev_monitor_filter_add_match_subsystem_devtype \(subsystem)", errno: -rc) }
        }
        if receiveBufferSize > 0 {
            // Best effort: without it the kernel's default (about 200 KB)
            // holds a few hundred events, and an overflow is reported as
            // `.lost`, never silently.
            _ = udev_monitor_set_receive_buffer_size(handle, Int32(clamping: receiveBufferSize))
        }
        let rc = udev_monitor_enable_receiving(handle)
        if rc < 0 { throw SystemCallError("udev_monitor_enable_receiving", errno: -rc) }
    }

    deinit { udev_monitor_unref(handle) }

    /// The socket, for a caller's own poll.
    public var fileDescriptor: Int32 { udev_monitor_get_fd(handle) }

    /// Waits at most `timeoutMilliseconds` (0: only what is queued) for the
    /// next event that passes the filter.
    public func next(timeoutMilliseconds: Int) throws(SystemCallError) -> Event {
        let deadline = Process.now() + Double(max(0, timeoutMilliseconds)) / 1000
        var datagrams = 0
        while datagrams < Self.maxDatagramsPerWait {
            let left = max(0, Int(((deadline - Process.now()) * 1000).rounded(.up)))
            var pfd = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
            let ready = try syscall("poll uevent monitor") { pollRetrying(&pfd, timeoutMs: Int32(clamping: left)) }
            if ready == 0 { return .timedOut }
            datagrams += 1
            // libudev reads one datagram; NULL with EAGAIN means it was
            // filtered out (or was not a valid uevent) and nothing else is
            // queued: wait on for the rest of the time.
            errno = 0
            if let device = udev_monitor_receive_device(handle) {
                defer { udev_device_unref(device) }
                return .device(UdevDevice(device))
            }
            let e = errno
            switch e {
            case 0, EAGAIN, EINTR: continue
            case ENOBUFS: return .lost
            default: throw SystemCallError("udev_monitor_receive_device", errno: e)
            }
        }
        return .timedOut
    }
}

extension UdevDevice {
    fileprivate init(_ device: OpaquePointer) {
        func text(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }
        self.init(action: text(udev_device_get_action(device)),
                  subsystem: text(udev_device_get_subsystem(device)),
                  devType: text(udev_device_get_devtype(device)),
                  sysPath: text(udev_device_get_syspath(device)) ?? "",
                  devNode: text(udev_device_get_devnode(device)),
                  modalias: text(udev_device_get_property_value(device, "MODALIAS")).flatMap { $0.isEmpty ? nil : $0 },
                  sequenceNumber: udev_device_get_seqnum(device))
    }
}
