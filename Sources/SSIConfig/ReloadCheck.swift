extension ClusterConfig {
    /// Why a running node cannot take `new` by `ssi cluster reload`, or
    /// nil. The tunnel's network and port are in every node's running
    /// link, corosync's ring addresses and the NFS root's mount: moving
    /// them means booting every node again, so a reload that changes
    /// `[tunnel]` is refused by every member before anything is written.
    public func reloadRefusal(to new: ClusterConfig) -> String? {
        guard tunnel != new.tunnel else { return nil }
        func text(_ t: Tunnel?) -> String {
            t.map { "prefix \($0.prefix), port \($0.port)" } ?? "none"
        }
        return "the [tunnel] section changed (running: \(text(tunnel)); new: \(text(new.tunnel))): "
            + "a reload cannot move a running node's tunnel; rebuild the images (ssi-mkinitrd --config) and reboot every node"
    }
}
