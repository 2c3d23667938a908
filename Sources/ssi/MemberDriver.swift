#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership
import SSIConfig

/// What `ssi cluster shutdown` and `ssi cluster reboot` share: the agent's
/// view read in the command's own words, another member told what to do
/// through its process agent (onnode), and waits on the view for a node
/// to go and to come back, with progress lines on stdout.
struct MemberDriver {
    /// "shutdown" or "reboot": the progress lines' and errors' step.
    var step: String
    var stateDirectory: String

    /// The agent's view, or an error in the command's own words: without
    /// an agent there is no cluster to act on from here.
    func view() throws(SSIError) -> ClusterView {
        var view: ClusterView
        do { view = try ClusterView.load(directory: stateDirectory) } catch {
            throw SSIError(step, "\(error.message): this node is not a running member of a cluster",
                           hint: "run ssi cluster \(step) on a node booted into the cluster (ssi cluster status works there)")
        }
        // The votes from votequorum itself when it answers: the agent
        // writes them on membership and quorum changes only, so after a
        // reload that lowered the expected votes its view still had the
        // old ones (the CFS VM test saw 4 expected where corosync had 3).
        if let info = try? VotequorumClient().info() {
            view.expectedVotes = info.expectedVotes
            view.totalVotes = info.totalVotes
            view.quorum = info.quorum
        }
        return view
    }

    /// The CFS root's server (its init node), nil for another root or
    /// without a configuration: it goes last at a shutdown and is never
    /// rebooted with the others.
    static func cfsServer() -> UInt32? {
        guard let config = try? ClusterConfig.load(path: ClusterConfig.defaultPath), case .cfs = config.root else { return nil }
        return config.nodes.first { $0.role == .initNode }.map { UInt32($0.number) }
    }

    /// A node's state as the view has it now, for an error: "COMINGUP
    /// membership", "DOWN", or "gone from the view".
    func stateOf(_ node: UInt32) -> String {
        guard let n = (try? ClusterView.load(directory: stateDirectory))?.nodes.first(where: { $0.number == node }) else {
            return "gone from the view"
        }
        return n.state.rawValue + (n.state == .comingUp && !n.stage.isEmpty ? " " + printable(n.stage) : "")
    }

    func say(_ line: String) {
        print("ssi-cluster: \(step): \(line)")
        fflush(nil)
    }

    /// `ssi onnode NODE COMMAND...`, its exit status.
    func onnode(_ node: UInt32, _ command: [String]) throws(SSIError) -> Int32 {
        let exe = (try? FileSystem.readLink("/proc/self/exe")) ?? "/usr/sbin/ssi"
        do throws(SystemCallError) {
            let pid = try Process.spawn(exe, ["ssi", "onnode", String(node)] + command, environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            switch try Process.wait(for: pid) {
            case .exited(let code): return code
            case .signaled(let s): return 128 + s
            }
        } catch {
            throw SSIError(step, "running onnode \(node): \(error.description)")
        }
    }

    /// Until the agent's view has the node down (or gone), polling.
    func waitGone(_ node: UInt32, seconds: Double) -> Bool {
        let deadline = Process.now() + seconds
        while Process.now() < deadline {
            if let v = try? ClusterView.load(directory: stateDirectory),
               !v.nodes.contains(where: { $0.number == node && $0.state != .down }) { return true }
            Process.sleep(milliseconds: 200)
        }
        return false
    }

    /// How a wait for a node to come back ended.
    enum Back: Equatable {
        case up
        /// COMINGUP with the stage `emergency:STEP`: its boot failed at
        /// STEP and waits in the emergency shell, so waiting longer is
        /// pointless (the node says why on its console).
        case stopped(step: String)
        case timedOut
    }

    /// Until the agent's view has the node UP again, or stopped in its
    /// emergency shell, polling; each boot stage it reports on the way
    /// (COMINGUP and its stage) is printed once.
    func waitBack(_ node: NodeRecord, seconds: Double) -> Back {
        let deadline = Process.now() + seconds
        var last = ""
        while Process.now() < deadline {
            if let v = try? ClusterView.load(directory: stateDirectory), let now = v.nodes.first(where: { $0.number == node.number }) {
                if now.state == .up { return .up }
                let seen = now.state == .comingUp ? "COMINGUP " + (now.stage.isEmpty ? "-" : printable(now.stage)) : ""
                if !seen.isEmpty && seen != last {
                    say("node \(node.number) (\(printable(node.name))): \(seen)")
                    last = seen
                }
                if let step = now.failedStep { return .stopped(step: step) }
            }
            Process.sleep(milliseconds: 200)
        }
        return .timedOut
    }
}
