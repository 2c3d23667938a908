import SSICore
import SSIProcess
import SSITools

// Process migration's commands. ssi-migrate (migrate), onnode and
// where_pid parse their own command lines (OpenSSI's names, util-linux
// style); main.swift runs them by name. These are for the help, the man
// pages and the completions, and run the tool if reached anyway.

enum ProcDocCommands {
    static let migrate = ownCommandLine(.migrate, usage: "[-t] PID NODE",
        abstract: "Move a running process to another node (ssi-migrate).",
        discussion: """
            migrate [-t] PID NODE. CRIU freezes and dumps the process on its node and restores it on NODE under the \
            same PID. Files on the cluster root and on node=N cluster mounts are reopened there; pipes, FIFOs, \
            connected stream sockets (unix and TCP) and terminals stay on their home node and the process gets \
            stand-ins whose data is shipped home by the process agents. -t moves the process with its \
            descendants. It prints where the process went and how long it was frozen. If the target cannot \
            restore it, the process goes on running where it was (exit 1, with the reason). Refused: listening \
            or datagram sockets, node-local files and devices (other than ttys and /dev/null-like ones), device \
            mappings, PIDs already used on the target.
            """)

    static let onnode = ownCommandLine(.onnode, usage: "[-p] NODE COMMAND [ARG...]",
        abstract: "Run a command on another node, its stdio shipped back here.",
        discussion: """
            onnode [-p] NODE COMMAND [ARG...]. The command runs on NODE as the caller (uid, gid, groups), with the \
            caller's environment and working directory; its stdin, stdout and stderr stay here and are shipped. \
            onnode exits with the command's exit status (128+N when a signal N killed it). SIGINT, SIGTERM, SIGHUP, \
            SIGQUIT, SIGUSR1 and SIGUSR2 sent to onnode go to the command, wherever it runs by then (a terminal's \
            keys, such as Ctrl-C, reach it through the shipped terminal). -p leaves the command running there and \
            returns at once.
            """)

    static let wherePID = ownCommandLine(.wherePID, usage: "PID...",
        abstract: "Print the node a process runs on.",
        discussion: """
            where_pid PID... A PID is a process's cluster-wide identity: processes started after a node's boot get \
            PIDs from that node's range (node N: from N×65536), and a process keeps its PID when it migrates.
            """)
}

struct ClusterPSCommand {
    static let command = CLICommand(
        "ps",
        abstract: "List the processes of every node, with their node.",
        options: [.flag("json", help: "JSON: a list of {node, pid, uid, command}.")]) { try ClusterPSCommand($0).run() }

    var json: Bool

    init(_ v: CLIValues) { json = v.flag("json") }

    func run() throws {
        let rc = ProcTools(program: "ssi-cluster ps").ps(json: json)
        if rc != 0 { throw ExitCode(rc) }
    }
}

struct ProcAgentCommand {
    static let command = CLICommand(
        "proc-agent",
        abstract: "Run the process agent: migration, fd shipping, onnode (started by ssi-init).",
        options: [
            .value("state-dir", "dir", help: "The membership agent's state directory.", default: Defaults.stateDirectory),
            .integer("port", as: UInt16.self, help: "TCP port on the node's cluster address.", default: Defaults.port),
            .value("authkey", "file", help: "The cluster key.", default: Defaults.authkey),
            .value("system-root", "dir", help: "The system's root (criu and users' commands run there).", default: Defaults.systemRoot),
        ]) { try ProcAgentCommand($0).run() }

    enum Defaults {
        static let stateDirectory = "/run/ssi"
        static let port: UInt16 = 7791
        static let authkey = "/etc/corosync/authkey"
        static let systemRoot = "/proc/1/root"
    }

    var stateDirectory: String
    var port: UInt16
    var authkey: String
    var systemRoot: String

    init(_ v: CLIValues) {
        stateDirectory = v.string("state-dir") ?? Defaults.stateDirectory
        port = v.integer("port") ?? Defaults.port
        authkey = v.string("authkey") ?? Defaults.authkey
        systemRoot = v.string("system-root") ?? Defaults.systemRoot
    }

    func run() throws {
        var options = ProcAgent.Options()
        options.stateDirectory = stateDirectory
        options.port = port
        options.authkeyPath = authkey
        options.systemRoot = systemRoot
        let agent = ProcAgent(options: options) { line in writeAll(2, "ssi-cluster: \(line)\n") }
        do {
            try agent.run()
        } catch {
            printError(tool: "ssi-cluster proc-agent", error)
            throw ExitCode(1)
        }
    }
}
