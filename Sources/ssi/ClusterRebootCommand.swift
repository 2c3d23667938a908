#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership
import SSITools

/// `ssi cluster reboot NODE...`: a rolling reboot. Each named member is
/// rebooted through its process agent, seen gone, and seen UP again before
/// the next one goes (RebootPlan says which may go: quorum must stand with
/// one node away). A GFS2 node leaves its lockspace on the way down (the
/// exit root), so nobody is fenced; its expected votes stay, since it comes
/// back. What it is for: a new kernel or image, and making a journal added
/// with add-journal known to the nodes that mounted before it.
struct ClusterRebootCommand {
    static let command = CLICommand(
        "reboot",
        abstract: "Reboot members one at a time, each back in the cluster before the next goes.",
        discussion: """
            Each NODE (a number or a name; all: every other member, highest number first) is rebooted in turn: asked \
            through its process agent, seen gone, then seen UP again in this node's view, with the boot stages it \
            reports on the way. Refused, before anything is done, for this node (it drives the reboot), for the CFS \
            root's server (the diskless nodes' roots would hang; stop the whole cluster with ssi cluster shutdown), \
            for a node that is down, and when one node away would take the cluster below quorum. When a node is not \
            seen gone or back within --timeout, or comes back to its emergency shell (its stage emergency:STEP, its \
            console says why), the command stops there and says which; the nodes after it are not touched.
            """,
        arguments: [CLIArgument("node", help: "A node's number or name, or all.", repeated: true)],
        options: [
            .flag("dry-run", help: "Print the order and do nothing."),
            .value("timeout", "seconds", help: "How long each node may take to go, and again to come back.", default: "900"),
            .value("state-dir", "dir", help: "Where the membership agent keeps the view.", default: ClusterView.defaultDirectory),
        ]) { try ClusterRebootCommand($0).run() }

    var words: [String]
    var dryRun: Bool
    var timeout: String
    var stateDirectory: String

    init(_ v: CLIValues) {
        words = v.argumentList("node")
        dryRun = v.flag("dry-run")
        timeout = v.string("timeout") ?? "900"
        stateDirectory = v.string("state-dir") ?? ClusterView.defaultDirectory
    }

    func run() throws {
        do {
            try reboot()
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }

    func reboot() throws(SSIError) {
        guard let seconds = Int(timeout), (1...7200).contains(seconds) else {
            throw SSIError("reboot", "--timeout \(printable(timeout)): want whole seconds from 1 to 7200")
        }
        let driver = MemberDriver(step: "reboot", stateDirectory: stateDirectory)
        let plan = try RebootPlan.make(view: try driver.view(), words: words, cfsServer: MemberDriver.cfsServer())
        driver.say(plan.summary)
        if dryRun { return }
        guard geteuid() == 0 else {
            throw SSIError("reboot", "rebooting nodes needs root", hint: "run it as root")
        }
        let done = try Self.roll(plan, driver: driver, seconds: seconds)
        driver.say(done.count == 1 ? "done" : "done: \(done.count) nodes rebooted, one at a time")
    }

    /// Reboots the plan's nodes one at a time, each seen gone and UP again
    /// before the next goes. Returns their names; throws at the first that
    /// fails, naming the ones done.
    static func roll(_ plan: RebootPlan, driver: MemberDriver, seconds: Int) throws(SSIError) -> [String] {
        var done: [String] = []
        for node in plan.nodes {
            let name = "node \(node.number) (\(printable(node.name)))"
            let stopped = "; stopped there" + (done.isEmpty ? "" : " after \(done.joined(separator: ", "))")
            // Quorum again, from the view as it is now: a member may have
            // gone since the plan was made.
            _ = try RebootPlan.make(view: try driver.view(), words: [String(node.number)], cfsServer: MemberDriver.cfsServer())
            driver.say("\(name): rebooting")
            let started = Process.now()
            let status = try driver.onnode(node.number, ["systemctl", "--no-block", "reboot"])
            guard status == 0 else {
                throw SSIError("reboot", "\(name) did not take the reboot (onnode exit \(status))\(stopped)",
                               hint: "look at \(name); reboot it by hand, then run ssi cluster reboot for the rest")
            }
            guard driver.waitGone(node.number, seconds: Double(seconds)) else {
                throw SSIError("reboot", "\(name) was not seen gone within \(seconds) s\(stopped)",
                               hint: "look at its console")
            }
            let down = Process.now()
            driver.say("\(name): gone after \(Int(down - started)) s")
            switch driver.waitBack(node, seconds: Double(seconds)) {
            case .up:
                break
            case .stopped(let step):
                throw SSIError("reboot", "\(name) stopped in its emergency shell at boot step '\(printable(step))'\(stopped)",
                               hint: "its console says why; mend the cause, leave the shell there to retry the step "
                               + "(or reboot it), then run ssi cluster reboot for the rest")
            case .timedOut:
                throw SSIError("reboot", "\(name) was not seen UP again within \(seconds) s of going"
                               + "; the view shows it \(driver.stateOf(node.number))\(stopped)",
                               hint: "look at its console; once it is back, run ssi cluster reboot for the rest")
            }
            driver.say("\(name): UP again after \(Int(Process.now() - down)) s (\(Int(Process.now() - started)) s in all)")
            done.append(name)
        }
        return done
    }
}
