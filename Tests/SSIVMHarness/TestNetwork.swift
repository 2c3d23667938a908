// A network namespace made by the test: a bridge, one tap per guest, qemu
// run inside it. Nothing is routed out of it: no veth to the host, no
// address outside it.

import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One guest NIC: a tap in a test namespace, enslaved to its bridge.
public struct NIC: Sendable {
    public let namespace: String
    public let tap: String
    public let mac: String
}

public final class TestNetwork: Sendable {
    /// `ssi-t<runner pid>-<n>`
    public let namespace: String
    public let bridge = "br0"
    /// The address given to br0 inside the namespace (CIDR), if any: a place
    /// for host-side listeners that guests can reach.
    public let hostAddress: String?
    /// The bridge's and every tap's MTU: 9000 is a jumbo-frame network
    /// (the guests set theirs: ssi-init from `[network] mtu`, others by
    /// DHCP option 26).
    public let mtu: Int

    private static let counter = Atomic<Int>(0)
    private let state = Mutex<(taps: Int, removed: Bool)>((0, false))

    /// Makes the namespace, with `lo` up and an up bridge `br0` (STP off,
    /// no forwarding delay). `hostAddress` (e.g. "10.77.0.254/24") goes on
    /// br0, inside the namespace only.
    public init(hostAddress: String? = nil, mtu: Int = 1500) throws {
        Self.collectStaleNamespaces()
        let n = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        namespace = "ssi-t\(getpid())-\(n)"
        self.hostAddress = hostAddress
        self.mtu = mtu
        try Command.run(["ip", "netns", "add", namespace], timeout: .seconds(20))
        do {
            try exec(["ip", "link", "set", "lo", "up"])
            try exec(["ip", "link", "add", bridge, "mtu", "\(mtu)", "type", "bridge", "stp_state", "0", "forward_delay", "0"])
            try exec(["ip", "link", "set", bridge, "up"])
            if let hostAddress {
                try exec(["ip", "addr", "add", hostAddress, "dev", bridge])
            }
        } catch {
            teardown()
            throw error
        }
    }

    deinit { teardown() }

    /// Creates the next tap (tap0, tap1, ...) on the bridge and returns the
    /// NIC for a guest. `mac` defaults to 52:54:00:00:00:NN (NN = tap
    /// number + 1).
    public func addNIC(mac: String? = nil) throws -> NIC {
        let index = state.withLock { s -> Int in
            defer { s.taps += 1 }
            return s.taps
        }
        let tap = "tap\(index)"
        try exec(["ip", "tuntap", "add", tap, "mode", "tap"])
        try exec(["ip", "link", "set", tap, "mtu", "\(mtu)", "master", bridge, "up"])
        return NIC(namespace: namespace, tap: tap,
                   mac: mac ?? String(format: "52:54:00:00:00:%02x", (index + 1) & 0xff))
    }

    /// Slows what the bridge sends to a guest through `tap` to `mbit`
    /// Mbit/s (a tbf qdisc): makes a transfer to that guest last long
    /// enough for a test to act in the middle of it.
    public func limitRate(tap: String, mbit: Int) throws {
        try exec(["tc", "qdisc", "replace", "dev", tap, "root", "tbf", "rate", "\(mbit)mbit", "burst", "64kb", "latency", "500ms"])
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    @discardableResult
    public func exec(_ argv: [String], timeout: Duration = .seconds(20), check: Bool = true) throws -> CommandOutput {
        try Command.run(["ip", "netns", "exec", namespace] + argv, timeout: timeout, check: check)
    }

    /// Deletes the namespace, and with it the bridge and the taps. Safe to
    /// call more than once; guests using it should be stopped first.
    public func teardown() {
        let first = state.withLock { s -> Bool in
            defer { s.removed = true }
            return !s.removed
        }
        guard first else { return }
        _ = try? Command.run(["ip", "netns", "del", namespace], timeout: .seconds(20), check: false)
    }

    /// Removes `ssi-t<pid>-*` namespaces whose runner process is gone (a run
    /// that crashed before its teardown). Done once per process.
    public static func collectStaleNamespaces() {
        _ = staleCollection
    }

    private static let staleCollection: Void = {
        guard let out = try? Command.run(["ip", "netns", "list"], timeout: .seconds(20), check: false) else { return }
        for line in out.stdout.split(separator: "\n") {
            guard let name = line.split(separator: " ").first.map(String.init),
                  let pid = runnerPID(of: name), pid != getpid() else { continue }
            if kill(pid, 0) == -1 && errno == ESRCH {
                _ = try? Command.run(["ip", "netns", "del", name], timeout: .seconds(20), check: false)
            }
        }
    }()

    /// The pid in `ssi-t<pid>-<n>`, or nil for other names.
    public static func runnerPID(of name: String) -> pid_t? {
        guard name.hasPrefix("ssi-t") else { return nil }
        let parts = name.dropFirst("ssi-t".count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let pid = pid_t(parts[0]), pid > 0, Int(parts[1]) != nil else { return nil }
        return pid
    }
}
