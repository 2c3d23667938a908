#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIMembership
import SSIConfig
import SSITools

/// `ssi cluster reload [FILE]`: give every running member a new cluster
/// configuration (a node added or removed, a changed token) and have
/// corosync apply it, without a reboot.
struct ClusterReloadCommand {
    static let command = CLICommand(
        "reload",
        abstract: "Give every running member a new cluster configuration and have corosync apply it.",
        discussion: """
            The configuration is checked here; the membership agents write it, with the \
            corosync.conf made from it, into every member's daemons' root; when every member \
            has answered, corosync is told to reload (corosync-cfgtool -R). A member that \
            could not write it is named and corosync is not told: nothing changes in the \
            running cluster. After adding a node, also rebuild what the init node serves \
            (ssi-mkinitrd --config FILE --netboot DIR).
            """,
        arguments: [CLIArgument("file", help: "The configuration (default: /etc/ssi/cluster.conf).", default: ClusterConfig.defaultPath)],
        options: [
            .value("state-dir", "dir", help: "Where the membership agent keeps its state.", default: ClusterView.defaultDirectory),
            .integer("timeout", "s", as: Int.self, help: "Seconds to wait for every member's answer.", default: defaultTimeout),
        ]) { try ClusterReloadCommand($0).run() }

    static let defaultTimeout = 30

    var file: String
    var stateDirectory: String
    var timeout: Int

    init(_ v: CLIValues) {
        file = v.argument("file") ?? ClusterConfig.defaultPath
        stateDirectory = v.string("state-dir") ?? ClusterView.defaultDirectory
        timeout = v.integer("timeout") ?? Self.defaultTimeout
    }

    func run() throws {
        do {
            try reload()
        } catch {
            printError(tool: "ssi-cluster reload", error)
            throw ExitCode(1)
        }
    }

    func reload() throws(SSIError) {
        let config = try ClusterConfig.load(path: file)
        let text: String
        do { text = try FileSystem.readText(file) } catch { throw SSIError("reload", "\(file): \(error.description)") }
        try LazyLibrary.load(LazyLibrary.corosync)
        let quorum: QuorumClient
        do { quorum = try QuorumClient() } catch {
            throw SSIError("reload", "corosync is not running on this node", hint: "run it on a booted cluster member")
        }
        var members = try quorum.currentMembers()
        guard !members.isEmpty else {
            throw SSIError("reload", "corosync did not say who the members are within 5 s")
        }
        let asked = members
        let events = try quorum.fileDescriptor()
        guard let pidText = try? FileSystem.readText(stateDirectory + "/agent.pid"),
              let agent = pid_t(pidText.lines().first ?? ""), kill(agent, 0) == 0 else {
            throw SSIError("reload", "the membership agent is not running on this node (no \(stateDirectory)/agent.pid)",
                           hint: "it is started by ssi-init; reboot the node with an image built with --config")
        }
        let dir = ClusterReload.directory
        let id = "\(getpid())-\(Int(Process.now() * 1000))"
        do {
            try FileSystem.makeDirectories(dir)
            // 0600: the configuration carries the fence agents' passwords.
            try FileSystem.writeFile(dir + "/request.new", id + "\n" + text, mode: 0o600)
            try FileSystem.rename(dir + "/request.new", dir + "/request")
        } catch {
            throw SSIError("reload", "writing \(dir)/request: \(error.description)")
        }
        kill(agent, SIGUSR1)
        let deadline = Process.now() + Double(timeout)
        var answers: [UInt32: String] = [:]
        while Process.now() < deadline {
            for line in ((try? FileSystem.readText(dir + "/" + id)) ?? "").lines() {
                let f = line.split(separator: " ", maxSplits: 1).map(String.init)
                if f.count == 2, let n = UInt32(f[0]) { answers[n] = f[1] }
            }
            if members.allSatisfy({ answers[$0] != nil }) { break }
            // A member that leaves meanwhile (a node just stopped, not yet
            // declared gone when we asked) is no longer waited for.
            var p = pollfd(fd: events, events: Int16(POLLIN), revents: 0)
            if pollRetrying(&p, timeoutMs: 100) > 0 {
                try quorum.dispatch()
                if !quorum.members.isEmpty { members = quorum.members.sorted() }
            }
        }
        try? FileSystem.unlink(dir + "/" + id)
        var report: [String] = []
        var failed: [String] = []
        for m in asked where !members.contains(m) && answers[m] == nil {
            report.append("  \(config.node(number: Int(m))?.name ?? "node \(m)") (\(m)): left the cluster during the reload")
        }
        for m in members {
            let name = config.node(number: Int(m))?.name ?? "node \(m)"
            let answer = answers[m] ?? "no answer within \(timeout) s"
            report.append("  \(name) (\(m)): \(answer)")
            if answer != "ok" { failed.append(name) }
        }
        guard failed.isEmpty else {
            throw SSIError("reload", "not applied: \(failed.joined(separator: ", ")) could not take the configuration\n" + report.joined(separator: "\n"),
                           hint: "corosync was not told to reload; the members that answered ok have the new files and apply them at their next corosync start")
        }
        guard let tool = ["/usr/sbin/corosync-cfgtool", "/sbin/corosync-cfgtool"].first(where: FileSystem.isExecutableFile) else {
            throw SSIError("reload", "every member has the new configuration, but corosync-cfgtool is not installed here to apply it",
                           hint: "apt-get install corosync, then run corosync-cfgtool -R")
        }
        do {
            let pid = try Process.spawn(tool, [tool, "-R"], environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            let status = try Process.wait(for: pid)
            guard status == .exited(0) else {
                throw SSIError("reload", "corosync-cfgtool -R: \(status)", hint: "corosync's log says why it refused the configuration")
            }
        } catch let e as SSIError {
            throw e
        } catch {
            throw SSIError("reload", "corosync-cfgtool -R: \(error)")
        }
        print("ssi-cluster reload: \(config.summary); applied on \(members.count) members:\n" + report.joined(separator: "\n"))
    }
}
