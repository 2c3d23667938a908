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

    static let onnode = ownCommandLine(.onnode, usage: "[-p] [-b] NODE COMMAND [ARG...]",
        abstract: "Run a command on another node, its stdio shipped back here.",
        discussion: """
            onnode [-p] [-b] NODE COMMAND [ARG...]. The command runs on NODE as the caller (uid, gid, groups), with the \
            caller's environment and working directory; its stdin, stdout and stderr stay here and are shipped. \
            onnode exits with the command's exit status (128+N when a signal N killed it). SIGINT, SIGTERM, SIGHUP, \
            SIGQUIT, SIGUSR1 and SIGUSR2 sent to onnode go to the command, wherever it runs by then (a terminal's \
            keys, such as Ctrl-C, reach it through the shipped terminal). -p pins it to NODE, as OpenSSI's -p did: the \
            load leveler never moves it (SSI_LL_PIN=1 in its environment). -b leaves the command running there and \
            returns at once (it was -p before ssi had load leveling).
            """)

    static let kill = ownCommandLine(.kill, usage: "[-s SIGNAL | -SIGNAL] PID...",
        abstract: "Send a signal to processes wherever they run in the cluster.",
        discussion: """
            ssi kill [-s SIGNAL | -SIGNAL] PID... (also ssi-kill; -l lists the names). The signal (TERM by default, \
            by name or number) goes to each process on the node where it runs now, as the caller: that node's \
            process agent checks the caller may signal it, as kill(2) does. A process that moved away keeps a deputy \
            under its PID on its home node, so kill PID there reaches it too (the deputy forwards it); ssi kill works \
            from any node. Exit 1 if any PID could not be signalled.
            """)

    static let loadlevel = ownCommandLine(.loadlevel, usage: "[-a | -n NODE] [on | off]",
        abstract: "Turn load leveling on or off, cluster-wide or for one node.",
        discussion: """
            loadlevel [-a | -n NODE] [on | off] (OpenSSI's name). -a on|off: every node (the cluster line of \
            /etc/ssi/loadlevel, and no node line any more); on|off: this node, or NODE with -n. Without on or off it \
            shows where leveling is on. Off by default. Leveled are the programs named in /etc/ssi/loadlevellist (one \
            name per line; without the file: cc, gcc, c++, g++, clang, clang++) when run under ssi-ll: each starts on \
            the least loaded node where leveling is on, and a node with more than one runnable process per CPU moves \
            its busiest leveled process to a node lighter by one per CPU (a moved process waits 30 s before it moves \
            again). A leveled process keeps a deputy at home, so its parent sees nothing move.
            """)

    static let ll = ownCommandLine(.ll, usage: "[COMMAND [ARG...]]",
        abstract: "Run a command (default: your shell) whose leveled programs are load-leveled (OpenSSI's bash-ll).",
        discussion: """
            ssi-ll [COMMAND [ARG...]]. COMMAND runs with /run/ssi/ll first in PATH and SSI_LL=1 in its environment: a \
            program of /etc/ssi/loadlevellist it runs asks its node's process agent where to start (here while this node \
            has a CPU to spare) and runs there as onnode would run it, its stdio, signals and exit status here; and the \
            leveler may move it while it runs. SSI_LL_PIN=1 in a process's environment keeps the leveler from moving it.
            """)

    static let loads = ownCommandLine(.loads, usage: "",
        abstract: "Show each node's load as the load leveler sees it.",
        discussion: """
            loads. Each node's runnable processes (smoothed over a few seconds), its CPUs, the load per CPU, and \
            whether leveling is on there. Each membership agent publishes its node's load over CPG when it changes by a \
            quarter, or every 10 s; every node keeps what it heard in /run/ssi/loads.
            """)

    static let onall = ownCommandLine(.onall, usage: "COMMAND [ARG...]",
        abstract: "Run a command on every node, its output prefixed by the node (OpenSSI's onall).",
        discussion: """
            onall COMMAND [ARG...]. COMMAND runs on each node that is up, one after the other, as onnode runs it (the \
            caller, the caller's environment and directory; its stdin /dev/null); each line of its output and errors \
            is printed prefixed with the node's name. The exit status is the highest of theirs.
            """)

    static let clusterNodeNum = ownCommandLine(.clusterNodeNum, usage: "",
        abstract: "Print this node's number (OpenSSI's clusternode_num).",
        discussion: """
            clusternode_num. The number of the node it runs on, from the membership agent's view (the same number \
            as ssi cluster node-num, which asks corosync).
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
