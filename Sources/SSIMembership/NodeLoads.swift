#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux

/// The nodes' loads for the load leveler (DESIGN-NOTES "Load leveling"):
/// each membership agent samples its own (runnable processes, smoothed)
/// and publishes it over CPG (`load`); every agent keeps what it heard in
/// `/run/ssi/loads`, one `NODE HUNDREDTHS CPUS` line per member, which
/// the process agents read.
public struct NodeLoads: Equatable, Sendable {
    public struct Load: Equatable, Sendable {
        /// Runnable processes, in hundredths.
        public var hundredths: UInt32
        public var cpus: UInt32
        public init(hundredths: UInt32, cpus: UInt32) {
            self.hundredths = hundredths
            self.cpus = cpus
        }
        /// Runnable processes per CPU.
        public var perCPU: Double { Double(hundredths) / 100 / Double(max(cpus, 1)) }
    }

    public var byNode: [UInt32: Load] = [:]
    public init(byNode: [UInt32: Load] = [:]) { self.byNode = byNode }

    public static let fileName = "loads"

    public var text: String {
        byNode.keys.sorted().map { "\($0) \(byNode[$0]!.hundredths) \(byNode[$0]!.cpus)\n" }.joined()
    }

    /// The file's lines; a line that is not three numbers in range is
    /// skipped (the file is the agent's, but still read as input).
    public static func parse(_ text: String) -> NodeLoads {
        var out = NodeLoads()
        for line in text.lines() {
            let w = line.split(separator: " ")
            guard w.count == 3, let node = UInt32(w[0]), node > 0, let h = UInt32(w[1]), h <= 100_000,
                  let c = UInt32(w[2]), (1...4096).contains(c) else { continue }
            out.byNode[node] = Load(hundredths: h, cpus: c)
        }
        return out
    }

    public static func read(directory: String) -> NodeLoads {
        parse((try? FileSystem.readText(directory + "/" + fileName)) ?? "")
    }
}

/// This node's load, sampled once a second from /proc/loadavg's running
/// count (which includes the reader) and smoothed (half the last sample,
/// half the past), published when it moved by a quarter or every 10 s.
public struct LoadSampler: Sendable {
    public private(set) var smoothed = 0.0
    private var lastSample = -1.0e9
    private var lastSent = -1.0e9
    private var sentValue: Double = -1
    public let cpus: UInt32

    public init(cpus: UInt32 = UInt32(max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))) { self.cpus = cpus }

    /// Runnable processes other than the reader, from /proc/loadavg's
    /// fourth field ("running/total"); nil if unreadable.
    public static func runnable(loadavg text: String) -> Double? {
        let f = text.split(separator: " ")
        guard f.count >= 4, let slash = f[3].firstIndex(of: "/"), let running = Int(f[3][..<slash]) else { return nil }
        return Double(max(0, running - 1))
    }

    /// Takes a sample if a second passed; returns the load to publish,
    /// if it is time to.
    public mutating func tick(now: Double, loadavg: () -> String?) -> NodeLoads.Load? {
        guard now - lastSample >= 1 else { return nil }
        lastSample = now
        if let text = loadavg(), let r = Self.runnable(loadavg: text) { smoothed = smoothed / 2 + r / 2 }
        guard abs(smoothed - sentValue) >= 0.25 || now - lastSent >= 10 else { return nil }
        lastSent = now
        sentValue = smoothed
        return NodeLoads.Load(hundredths: UInt32(min(100_000, (smoothed * 100).rounded())), cpus: cpus)
    }
}
