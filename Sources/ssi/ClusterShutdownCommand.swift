#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership
import SSIConfig
import SSITools

/// `ssi cluster shutdown`: the whole cluster down in a safe order, driven
/// from the node that goes last (ShutdownPlan). Each other member is
/// powered off through its process agent (onnode), seen gone in this
/// node's view, and the expected votes are lowered to the members left,
/// so that the last ones keep quorum (and with it their lock manager and
/// fencing). Then this node powers off. A GFS2 node's own power-off
/// leaves its lockspace in the exit root (ExitRoot), so nobody is fenced.
struct ClusterShutdownCommand {
    static let command = CLICommand(
        "shutdown",
        abstract: "Power the whole cluster off in a safe order, this node last.",
        discussion: """
            The other members power off one at a time, the highest node number first; each is seen gone before the next \
            goes, and the expected votes follow the members down, so that the last node keeps quorum. Then this node \
            powers off. Run it on the node that must go last: on a CFS cluster the root's server (the others boot from \
            it); on a GFS2 cluster any member, best the one whose journal was added last. When a node cannot be reached \
            or is not seen gone within --timeout, the command stops there and says which: the nodes already off stay \
            off, and this node stays up.
            """,
        options: [
            .flag("dry-run", help: "Print the order and do nothing."),
            .value("timeout", "seconds", help: "How long each node may take to be seen gone.", default: "300"),
            .value("state-dir", "dir", help: "Where the membership agent keeps the view.", default: ClusterView.defaultDirectory),
        ]) { try ClusterShutdownCommand($0).run() }

    var dryRun: Bool
    var timeout: String
    var stateDirectory: String

    init(_ v: CLIValues) {
        dryRun = v.flag("dry-run")
        timeout = v.string("timeout") ?? "300"
        stateDirectory = v.string("state-dir") ?? ClusterView.defaultDirectory
    }

    func run() throws {
        do {
            try shutdown()
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }

    func shutdown() throws(SSIError) {
        guard let seconds = Int(timeout), (1...3600).contains(seconds) else {
            throw SSIError("shutdown", "--timeout \(printable(timeout)): want whole seconds from 1 to 3600")
        }
        let driver = MemberDriver(step: "shutdown", stateDirectory: stateDirectory)
        let view = try driver.view()
        let plan = try ShutdownPlan.make(view: view, cfsServer: MemberDriver.cfsServer())
        driver.say(plan.summary)
        if dryRun { return }
        guard geteuid() == 0 else {
            throw SSIError("shutdown", "powering nodes off needs root", hint: "run it as root")
        }
        var gone: [String] = []
        for node in plan.others {
            let name = "node \(node.number) (\(printable(node.name)))"
            driver.say("\(name): powering off")
            let started = Process.now()
            let status = try driver.onnode(node.number, ["systemctl", "--no-block", "poweroff"])
            guard status == 0 else {
                throw SSIError("shutdown", "\(name) did not take the power-off (onnode exit \(status)); stopped there"
                               + (gone.isEmpty ? "" : " after \(gone.joined(separator: ", "))") + "; this node stays up",
                               hint: "power \(name) off by hand, then run ssi cluster shutdown again")
            }
            guard driver.waitGone(node.number, seconds: Double(seconds)) else {
                throw SSIError("shutdown", "\(name) was not seen gone within \(seconds) s; stopped there; this node stays up",
                               hint: "look at its console; once it is off, run ssi cluster shutdown again")
            }
            gone.append(name)
            let left = (try? ClusterView.load(directory: stateDirectory))?.nodes.filter { $0.state != .down }.count ?? 0
            driver.say("\(name): gone after \(Int(Process.now() - started)) s" + lowerExpectedVotes(to: UInt32(max(left, 1))))
        }
        driver.say("node \(plan.me.number) (\(printable(plan.me.name))), this node: powering off")
        fflush(nil)
        guard let systemctl = ["/usr/bin/systemctl", "/bin/systemctl"].first(where: FileSystem.isExecutableFile) else {
            throw SSIError("shutdown", "no systemctl on this node: the others are off; power this one off by hand")
        }
        do throws(SystemCallError) {
            try Process.exec(systemctl, ["systemctl", "poweroff"], environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        } catch {
            throw SSIError("shutdown", "\(error.description): the others are off; power this one off by hand")
        }
    }

    /// Lowers votequorum's expected votes to the members left, retrying
    /// for 20 s: corosync refuses until its own membership has the node
    /// gone. Returns what to add to the progress line.
    func lowerExpectedVotes(to votes: UInt32) -> String {
        guard let quorum = try? VotequorumClient(), let info = try? quorum.info() else {
            return "; WARNING: cannot reach votequorum: the expected votes stay"
        }
        if info.expectedVotes <= votes { return "" }
        let deadline = Process.now() + 20
        var last = ""
        while Process.now() < deadline {
            do throws(SSIError) {
                try quorum.setExpectedVotes(votes)
                return "; expected votes now \(votes)"
            } catch {
                last = error.message
            }
            Process.sleep(milliseconds: 200)
        }
        return "; WARNING: the expected votes stay at \(info.expectedVotes): \(last); lower them with corosync-quorumtool -e \(votes)"
    }
}
