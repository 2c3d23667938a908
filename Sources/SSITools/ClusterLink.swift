#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership

/// The tools' way to the cluster: this node's membership agent (its
/// socket in /run/ssi) and the cluster mount table it keeps there. No
/// agent listening means no cluster: the tools are util-linux's then.
struct ClusterLink {
    let localNode: UInt32
    let directory: String

    static func current(directory: String = ClusterView.defaultDirectory) -> ClusterLink? {
        guard let fd = AgentClient.connect(directory: directory) else { return nil }
        Descriptor(owning: fd).close()
        let view = try? ClusterView.load(directory: directory)
        return ClusterLink(localNode: view?.localNode ?? 0, directory: directory)
    }

    func table() -> [ClusterMount] {
        ClusterMount.table(parsing: (try? FileSystem.readText(directory + "/" + ClusterMount.tableFile)) ?? "")
    }

    /// One request to the agent; its answer lines go to `each`.
    func ask(_ request: AgentRequest, timeoutMs: Int = 180_000) throws(SSIError) -> AgentClient.Answer {
        guard let fd = AgentClient.connect(directory: directory) else {
            throw SSIError("cluster", "the membership agent is not running", hint: "ssi cluster status")
        }
        let connection = Descriptor(owning: fd)
        return try AgentClient.exchange(connection.rawValue, request, timeoutMs: timeoutMs)
    }

    /// A cluster mount: the agents do it on every member; one line per
    /// node says how it went.
    func mount(_ entry: ClusterMount, tool: MountTool, verbose: Bool) -> Int32 {
        let name = basename(of: tool.program)
        let answer: AgentClient.Answer
        do {
            answer = try ask(.mount(entry))
        } catch {
            tool.output.error("\(name): \(entry.target): \(error.description)")
            return MountContext.ExitCode.fail
        }
        let where_ = entry.rule.owner.map { "node=\($0)" } ?? "node=*"
        if answer.code == 0 {
            tool.output.out("\(name): \(entry.target): mounted on every member (\(where_)): "
                + answer.lines.joined(separator: "; "))
        } else {
            for line in answer.lines { tool.output.error("\(name): \(entry.target): \(line)") }
        }
        return answer.code
    }

    func umount(target: String, program: String, output: Output) -> Int32 {
        let name = basename(of: program)
        let answer: AgentClient.Answer
        do {
            answer = try ask(.umount(target: target))
        } catch {
            output.error("\(name): \(target): \(error.description)")
            return MountContext.ExitCode.fail
        }
        if answer.code == 0 {
            output.out("\(name): \(target): unmounted on every member: "
                + answer.lines.joined(separator: "; "))
        } else {
            for line in answer.lines { output.error("\(name): \(target): \(line)") }
        }
        return answer.code
    }
}

