// Cluster configurations several test targets start from.

public enum SampleConfigs {
    /// A 3-node cluster "ssi" with a GFS2 root, lock table "ssi:root".
    public static let gfs2 = """
    [cluster]
    name = "ssi"

    [network]
    prefix = "10.77.0.0/24"

    [root]
    type = "gfs2"
    device = "LABEL=ssi:root"
    lock_table = "ssi:root"

    [fence]
    agent = "/usr/sbin/fence_ssi"
    args = "ipaddr=10.77.0.254 ipport=7070"

    [[node]]
    number = 1
    mac = "52:54:00:00:00:01"
    address = "10.77.0.1"

    [[node]]
    number = 2
    mac = "52:54:00:00:00:02"
    address = "10.77.0.2"

    [[node]]
    number = 3
    mac = "52:54:00:00:00:03"
    address = "10.77.0.3"

    """
}

extension SampleConfigs {
    /// A CFS cluster "ssi" of node1 (init) and diskless nodes 2 and 3 (up
    /// to `nodes`), whose key and identity files live in `dir`: what the
    /// node-identity tests run the key server and commands on.
    public static func cfsWithIdentities(dir: String, nodes: Int = 3) -> String {
        var text = """
            [cluster]
            name = "ssi"
            authkey = "\(dir)/authkey"

            [network]
            prefix = "10.77.0.0/24"

            [root]
            type = "cfs"
            server = 1

            [identity]
            known = "\(dir)/identities"
            key = "\(dir)/node.key"
            device = "/dev/vda"

            """
        for n in 1...nodes {
            text += """

                [[node]]
                number = \(n)
                name = "node\(n)"
                mac = "52:54:00:00:00:0\(n)"
                address = "10.77.0.\(n)"
                role = "\(n == 1 ? "init" : "diskless")"

                """
        }
        return text
    }
}
