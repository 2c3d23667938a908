#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSIMembership

/// Starting corosync and the membership agent from ssi-init, and waiting
/// for quorum.
extension Boot {
    /// Every daemon that outlives the initramfs is an agent: corosync and
    /// the membership agent are the two built in, started first (corosync
    /// before anything can ask it for quorum, the membership agent once it
    /// accepts clients); `[[agent]]`s follow, the same way.
    static let corosyncAgent = ClusterConfig.Agent(name: "corosync", command: ["/usr/sbin/corosync", "-f"], files: [], line: 0)
    static let membershipAgent = ClusterConfig.Agent(name: "ssi-agent", command: ["/usr/bin/ssi", "cluster", "agent"], files: [], line: 0)
    /// Migration, fd shipping and onnode (SSIProcess.ProcAgent).
    static let processAgent = ClusterConfig.Agent(name: "ssi-proc-agent", command: ["/usr/bin/ssi", "cluster", "proc-agent"], files: [], line: 0)

    /// Starts an agent chrooted in the agents root. Its argv[0] is its path
    /// with an "@" in front, systemd's mark (see AgentsRoot.spawn): the
    /// path, not a bare name, so that multi-call programs (busybox, ssi
    /// itself) that pick their applet from argv[0]'s last component still
    /// work. SSI_AGENT names it in its environment.
    func startAgent(_ agent: ClusterConfig.Agent) throws(SSIError) -> pid_t {
        let command = agent.command
        let pid = try AgentsRoot.spawn(command[0], ["@" + command[0]] + command.dropFirst(),
                                       environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SSI_AGENT=\(agent.name)"])
        log.info("membership", "started agent \(agent.name) (pid \(pid))")
        return pid
    }

    /// corosync accepts clients once its services are up (crypto setup and
    /// knet take a few seconds under TCG).
    func connect(corosync pid: pid_t, timeout: Double) throws(SSIError) -> QuorumClient {
        let deadline = Process.now() + timeout
        while true {
            if let q = try? QuorumClient() { return q }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw SSIError("membership", "corosync exited (status \(status >> 8)) before it accepted clients",
                               hint: "its own messages are above; check /etc/corosync/corosync.conf and the authkey in the image")
            }
            if Process.now() > deadline {
                throw SSIError("membership", "corosync did not accept clients within \(Int(timeout)) s")
            }
            Process.sleep(milliseconds: 100)
        }
    }

    enum Outcome { case quorate(members: [UInt32]), timedOut(String, members: [UInt32]) }

    /// Waits until the partition is quorate, for at most `seconds`,
    /// reporting progress every 5 s. Returns what was seen on timeout.
    func waitForQuorum(_ quorum: QuorumClient, seconds: Int, names: [UInt32: String]) throws(SSIError) -> Outcome {
        try quorum.track()
        let fd = try quorum.fileDescriptor()
        let votequorum = try? VotequorumClient()
        let started = Process.now()
        var lastReport = started
        func seen() -> String {
            let members = quorum.members.sorted().map { "\(names[$0] ?? "node") (\($0))" }
            var s = "members: " + (members.isEmpty ? "none" : members.joined(separator: ", "))
            if let i = try? votequorum?.info() {
                s += "; votes \(i.totalVotes) of \(i.expectedVotes) expected, \(i.quorum) needed"
            }
            return s
        }
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if pollRetrying(&p, timeoutMs: 200) > 0 { try quorum.dispatch() }
            if quorum.quorate {
                let ms = Int((Process.now() - started) * 1000)
                log.info("membership", "quorate after \(ms) ms; \(seen())")
                return .quorate(members: quorum.members.sorted())
            }
            let now = Process.now()
            if now - started >= Double(seconds) { return .timedOut(seen(), members: quorum.members.sorted()) }
            if now - lastReport >= 5 {
                log.info("membership", "waiting for quorum (\(Int(Double(seconds) - (now - started))) s left); \(seen())")
                lastReport = now
            }
        }
    }
}

/// The boot stage the agent publishes while the node is COMINGUP; "up"
/// at the hand-off. ssi-init writes it and tells the agent with SIGHUP.
struct BootStage {
    static let file = "/run/ssi/stage"
    var agent: pid_t?

    func set(_ stage: String) {
        try? FileSystem.makeDirectories("/run/ssi")
        try? FileSystem.writeFile(BootStage.file, stage + "\n")
        if let agent { kill(agent, SIGHUP) }
    }
}
