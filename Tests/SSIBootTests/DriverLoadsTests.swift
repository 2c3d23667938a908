#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import SSICore
import SSILinux
@testable import SSIBoot

/// DriverLoads with a fake insert: a device's driver waits for the load of
/// its bus's driver (a CI node's key disk became /dev/vdb when virtio_blk
/// loaded during virtio_pci's probe), and two loads never wait for each
/// other.
@Suite(.timeLimit(.minutes(1))) struct DriverLoadsTests {
    /// What the fake insert saw: "begin NAME", "end NAME", in order.
    final class Journal: Sendable {
        let lines = Mutex<[String]>([])
        func note(_ s: String) { lines.withLock { $0.append(s) } }
        var all: [String] { lines.withLock { $0 } }
    }

    static func loads(_ journal: Journal, slow: [String: Int], parents: [String: [String]]) -> DriverLoads {
        DriverLoads(insert: { name throws(SSIError) in
            journal.note("begin \(name)")
            Process.sleep(milliseconds: slow[name] ?? 1)
            journal.note("end \(name)")
            return true
        }, parentDrivers: { parents[$0.path] ?? [] })
    }

    @Test func aDevicesDriverWaitsForItsBusDriversLoadThatBeganFirst() {
        let journal = Journal()
        let loads = Self.loads(journal, slow: ["virtio_pci": 150, "ahci": 300],
                               parents: ["/sys/devices/pci0000:00/0000:00:05.0/virtio4": ["virtio_pci"]])
        loads.start("virtio_pci", reason: "for device pci:v1AF4", device: ModaliasDevice(alias: "a", path: "/sys/devices/pci0000:00/0000:00:05.0"))
        loads.start("ahci", reason: "for device pci:v8086", device: ModaliasDevice(alias: "a", path: "/sys/devices/pci0000:00/0000:00:1f.2"))
        loads.start("virtio_blk", reason: "for device virtio:d2", device: ModaliasDevice(alias: "a", path: "/sys/devices/pci0000:00/0000:00:05.0/virtio4"))
        loads.waitAll()
        let lines = journal.all
        let pciEnd = lines.firstIndex(of: "end virtio_pci"), blkBegin = lines.firstIndex(of: "begin virtio_blk")
        #expect(pciEnd != nil && blkBegin != nil && pciEnd! < blkBegin!, "\(lines)")
        // ahci is no parent of the disk: virtio_blk does not wait for it.
        #expect(lines.firstIndex(of: "end virtio_blk")! < lines.firstIndex(of: "end ahci")!, "\(lines)")
        let blk = loads.results.first { $0.name == "virtio_blk" }
        #expect(blk?.waitedFor == ["virtio_pci"])
        #expect(loads.results.first { $0.name == "ahci" }?.waitedFor == [])
        #expect(loads.results.map(\.name) == ["virtio_pci", "ahci", "virtio_blk"])
    }

    @Test func twoLoadsThatNameEachOtherAsParentsDoNotWaitForEachOther() {
        let journal = Journal()
        let loads = Self.loads(journal, slow: ["a": 100, "b": 100], parents: ["/sys/devices/x/a": ["b", "a"], "/sys/devices/x/b": ["a", "b"]])
        loads.start("a", reason: "first", device: ModaliasDevice(alias: "a", path: "/sys/devices/x/a"))
        loads.start("b", reason: "second", device: ModaliasDevice(alias: "a", path: "/sys/devices/x/b"))
        loads.waitAll()
        // Only the later load waits; a module never waits for itself.
        #expect(journal.all == ["begin a", "end a", "begin b", "end b"])
        #expect(loads.results.map(\.waitedFor) == [[], ["a"]])
    }

    @Test func aLoadWithNoOtherInFlightOrNoDeviceStartsAtOnce() {
        let journal = Journal()
        let asked = Mutex(0)
        let loads = DriverLoads(insert: { name throws(SSIError) in
            journal.note("begin \(name)")
            return false
        }, parentDrivers: { _ in asked.withLock { $0 += 1 }; return ["bus"] })
        loads.start("child", reason: "alone", device: ModaliasDevice(alias: "a", path: "/sys/devices/x/y"))
        loads.waitAll()
        loads.start("forced", reason: "listed in /etc/ssi/modules")
        loads.start("child", reason: "again", device: ModaliasDevice(alias: "a", path: "/sys/devices/x/y"))
        loads.waitAll()
        #expect(journal.all == ["begin child", "begin forced"], "each module once")
        #expect(asked.withLock { $0 } == 0, "nothing was in flight to wait for: no sysfs reads")
    }

    @Test func theRootWaitsHotplugLoadWaitsForTheBusDriverStillLoading() {
        let journal = Journal()
        let loads = Self.loads(journal, slow: ["virtio_pci": 150], parents: ["/sys/devices/p/virtio0": ["virtio_pci", "virtio_blk"]])
        loads.start("virtio_pci", reason: "for device pci", device: ModaliasDevice(alias: "a", path: "/sys/devices/p"))
        #expect(loads.waitForParents(of: ModaliasDevice(alias: "a", path: "/sys/devices/p/virtio0"), loading: "virtio_blk") == ["virtio_pci"])
        #expect(journal.all == ["begin virtio_pci", "end virtio_pci"])
        #expect(loads.waitForParents(of: ModaliasDevice(alias: "a", path: "/sys/devices/p/virtio0"), loading: "virtio_blk") == [], "nothing left loading")
    }

    @Test func theReportNamesTheBusDriverALoadWaitedFor() {
        let loads = Self.loads(Journal(), slow: ["virtio_pci": 80], parents: ["/sys/devices/p/virtio0": ["virtio_pci"]])
        loads.start("virtio_pci", reason: "for device pci", device: ModaliasDevice(alias: "a", path: "/sys/devices/p"))
        loads.start("virtio_blk", reason: "for device virtio:d2", device: ModaliasDevice(alias: "a", path: "/sys/devices/p/virtio0"))
        loads.waitAll()
        let lines = loads.results.map(\.summary)
        #expect(lines.count == 2 && lines[1].hasPrefix("virtio_blk ") && lines[1].hasSuffix(" ms (after virtio_pci)"), "\(lines)")
        #expect(lines[0].hasPrefix("virtio_pci ") && lines[0].hasSuffix(" ms"), "\(lines)")
    }
}
