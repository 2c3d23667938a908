// N guests on one test network, optionally sharing one raw disk.

import Foundation

public final class Cluster: Sendable {
    public let network: TestNetwork
    /// node 1 ... node N, in order.
    public let guests: [Guest]
    /// The raw disk attached to every node (after each node's own disks).
    public let sharedDisk: String?

    /// Makes a network (unless given one) and starts `nodes` guests on it,
    /// named node1...nodeN, each with one NIC (tapN-1, MAC
    /// 52:54:00:00:00:0N) and, last, the shared disk. `configure` fills in
    /// the rest of each node's config (initrd, its own root disk, kernel
    /// arguments); it gets the node number, 1-based. Everything is owned by
    /// `vm` and stopped with it.
    public init(in vm: VMTest, nodes: Int, network: TestNetwork? = nil, sharedDisk: String? = nil,
                configure: (Int, inout GuestConfig) throws -> Void) throws {
        precondition(nodes >= 1 && nodes <= 254, "a cluster has 1...254 nodes")
        self.network = try network ?? vm.network()
        self.sharedDisk = sharedDisk
        var guests: [Guest] = []
        for n in 1...nodes {
            var config = GuestConfig(name: "node\(n)")
            config.memoryMB = 384
            try configure(n, &config)
            config.nics.append(try self.network.addNIC(mac: Self.mac(node: n)))
            if let sharedDisk { config.disks.append(Disk(sharedDisk, shared: true)) }
            guests.append(try vm.start(config))
        }
        self.guests = guests
    }

    /// 52:54:00:00:00:NN
    public static func mac(node: Int) -> String { String(format: "52:54:00:00:00:%02x", node) }

    /// Node `n`, 1-based.
    public func node(_ n: Int) -> Guest { guests[n - 1] }

    /// Waits until every node printed a line matching `match` (one deadline
    /// for all); returns the lines, by node.
    @discardableResult
    public func waitAll(for match: LineMatch, timeout: Duration = .seconds(120),
                        failOn: [LineMatch] = Guest.defaultFailOn) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        var lines: [String] = []
        for guest in guests {
            let left = max(deadline - .now, .seconds(1))
            lines.append(try await guest.waitFor(match, timeout: left, failOn: failOn))
        }
        return lines
    }

    /// Runs a console command on every node (each must be in a shell).
    public func runAll(_ command: String, timeout: Duration = .seconds(30)) async throws -> [ShellResult] {
        var results: [ShellResult] = []
        for guest in guests { results.append(try await guest.run(command, timeout: timeout)) }
        return results
    }

    /// Stops every node (the network stays until the VMTest ends).
    public func shutdown() {
        for guest in guests { guest.kill() }
    }
}
