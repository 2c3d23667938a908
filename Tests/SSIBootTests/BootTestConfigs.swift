import Testing
import SSICore
import SSILinux
import SSIConfig
import SSITestSupport
@testable import SSIBoot

/// The configurations and machines the step decisions are tested with:
/// parsed by the real decoder, so a test sees what ssi-init would load.
enum BootTestConfigs {
    /// Three nodes on a CFS root served by node 1, from its LABEL=cluster-root;
    /// node 2 has two MACs.
    static let cfsText = """
    [cluster]
    name = "ssi"

    [network]
    prefix = "10.77.0.0/24"

    [root]
    type = "cfs"
    server = 1
    device = "LABEL=cluster-root"
    wait_seconds = 120

    [[node]]
    number = 1
    mac = "52:54:00:00:00:01"
    address = "10.77.0.1"
    role = "init"

    [[node]]
    number = 2
    mac = ["52:54:00:00:00:02", "52:54:00:00:00:22"]
    address = "10.77.0.2"
    role = "diskless"

    [[node]]
    number = 3
    mac = "52:54:00:00:00:03"
    address = "10.77.0.3"
    role = "diskless"

    """

    static func cfs(_ extra: String = "") throws -> ClusterConfig {
        try ClusterConfig.parse(text: cfsText + extra, file: "cluster.conf")
    }

    static func gfs2(_ extra: String = "") throws -> ClusterConfig {
        try ClusterConfig.parse(text: SampleConfigs.gfs2 + extra, file: "cluster.conf")
    }

    /// The GFS2 sample with one more line in its [root] table.
    static func gfs2(rootLine: String) throws -> ClusterConfig {
        let text = SampleConfigs.gfs2.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("lock_table") ? "\($0)\n\(rootLine)" : String($0) }.joined(separator: "\n")
        return try ClusterConfig.parse(text: text, file: "cluster.conf")
    }

    static func params(_ cmdline: String) throws -> BootParameters {
        try BootParameters(KernelCommandLine(cmdline))
    }

    /// A network interface as netlink lists it.
    static func link(_ name: String, _ mac: String?) throws -> NetworkLink {
        NetworkLink(index: 2, name: name, mac: try mac.map { try MACAddress(parsing: $0) }, flags: [], mtu: 1500,
                    kind: nil, hardwareType: 1, operationalState: nil)
    }

    /// Node `number` of `config`, found as the network step would, on
    /// interface eth0.
    static func identity(_ config: ClusterConfig, node number: Int) throws -> NodeIdentity {
        let node = try #require(config.node(number: number))
        return NodeIdentity(config: config, node: node, found: .commandLine(number), interface: "eth0")
    }
}
