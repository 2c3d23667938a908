/// `ssi cluster reload`: a new cluster configuration for every running
/// member. The command writes `request` ("ID\nTEXT") and signals the local
/// agent (SIGUSR1); the agent sends it over CPG; every member's agent
/// rewrites corosync.conf and cluster.conf in its own root and answers;
/// the requester's agent appends each answer ("NODE ok" or "NODE error:
/// ...") to the file named ID, which the command reads before it tells
/// corosync to reload (`corosync-cfgtool -R`).
public enum ClusterReload {
    public static let directory = "/run/ssi/reload"
}
