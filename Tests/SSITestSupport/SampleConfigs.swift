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
