import SSICore
import SSIConfig
import SSITools

/// `ssi cluster config ...`: the cluster configuration file.
enum ClusterConfigCommand {
    static let command = CLICommand(
        "config",
        abstract: "Check the cluster config, convert an OpenSSI clustertab, print the corosync.conf.",
        discussion: "The format and every key are described in configs/README.md.",
        subcommands: [ClusterConfigCheckCommand.command, ClusterConfigImportCommand.command, ClusterConfigCorosyncCommand.command])
}

struct ClusterConfigCheckCommand {
    static let command = CLICommand(
        "check",
        abstract: "Validate a cluster config; print every problem, one per line.",
        discussion: """
            Each problem is printed as FILE:LINE: FIELD: what is wrong; how to fix it. \
            Exit status 0 when the config is valid, 1 otherwise.
            """,
        arguments: [CLIArgument("file", help: "The cluster config.", default: ClusterConfig.defaultPath)],
        options: [.flag("quiet", short: "q", help: "Print nothing when the config is valid.")]) { try ClusterConfigCheckCommand($0).run() }

    var file: String
    var quiet: Bool

    init(_ v: CLIValues) {
        file = v.argument("file") ?? ClusterConfig.defaultPath
        quiet = v.flag("quiet")
    }

    func run() throws {
        let text: String
        do {
            text = try ConfigFiles.readText(file, what: "cluster config")
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
        let (config, problems) = ClusterConfig.check(text: text, file: file)
        if let config, problems.isEmpty {
            if !quiet { print("\(file): ok, \(config.summary)") }
            return
        }
        var report = ""
        for p in problems { report += p.description + "\n" }
        report += "\(file): \(problems.count) problem\(problems.count == 1 ? "" : "s")\n"
        writeAll(2, report)
        throw ExitCode(1)
    }
}

struct ClusterConfigImportCommand {
    static let command = CLICommand(
        "import-clustertab",
        abstract: "Convert an OpenSSI /etc/clustertab to a cluster config.",
        discussion: """
            clustertab lines are: node number, IP address, MAC address, boot protocol, \
            init node flag (1 or 0), boot device; # starts a comment. The init node becomes \
            the server of a cfs root and the other nodes diskless. The config is printed, \
            or written with -o; what to check (a guessed prefix, a placeholder name) is \
            printed on stderr and kept as comments in the config.
            """,
        arguments: [CLIArgument("file", help: "The OpenSSI clustertab.")],
        options: [
            .value("name", "name", help: "The cluster name (default: openssi)."),
            .value("prefix", "cidr", help: "The cluster network, CIDR (default: guessed from the addresses)."),
            .value("output", short: "o", "file", help: "Write the config to this file instead of stdout."),
            .flag("force", help: "Replace an existing output file."),
        ]) { try ClusterConfigImportCommand($0).run() }

    var file: String
    var name: String?
    var prefix: String?
    var output: String?
    var force: Bool

    init(_ v: CLIValues) {
        // Required: the parser refused the command line without it.
        file = v.argument("file") ?? ""
        name = v.string("name")
        prefix = v.string("prefix")
        output = v.string("output")
        force = v.flag("force")
    }

    func run() throws {
        do {
            let text = try ConfigFiles.readText(file, what: "clustertab")
            let conversion = try Clustertab.convert(text: text, file: file, clusterName: name, prefix: prefix)
            if let output {
                try ConfigFiles.writeAtomically(output, Array(conversion.text.utf8), mode: 0o644, replace: force, step: "import-clustertab")
                print("ssi-cluster: wrote \(output): \(conversion.entries.count) nodes from \(file)")
            } else {
                print(conversion.text, terminator: "")
            }
            for note in conversion.notes { writeAll(2, "ssi-cluster: check: \(note)\n") }
        } catch {
            printLines(error)
            throw ExitCode(1)
        }
    }
}

struct ClusterConfigCorosyncCommand {
    static let command = CLICommand(
        "corosync",
        abstract: "Print the corosync.conf generated from a cluster config.",
        arguments: [CLIArgument("file", help: "The cluster config.", default: ClusterConfig.defaultPath)],
        options: [.value("keyfile", "path", help: "The authkey path corosync will read (default: the config's authkey).")]) {
        try ClusterConfigCorosyncCommand($0).run()
    }

    var file: String
    var keyfile: String?

    init(_ v: CLIValues) {
        file = v.argument("file") ?? ClusterConfig.defaultPath
        keyfile = v.string("keyfile")
    }

    func run() throws {
        do {
            let config = try ClusterConfig.load(path: file)
            print(config.corosyncConf(keyfile: keyfile), terminator: "")
        } catch {
            printLines(error)
            throw ExitCode(1)
        }
    }
}

/// `ssi cluster keygen`: the cluster's corosync authkey.
struct ClusterKeygenCommand {
    static let command = CLICommand(
        "keygen",
        abstract: "Make the cluster's authentication key (corosync authkey).",
        discussion: """
            Random bytes from getrandom(2), written mode 0400 to a temporary file that \
            then takes the key's name (a link, or a rename with --force), so no reader \
            ever sees half a key. Copy the same key to every \
            node (it goes into every image built with --config); a node with another \
            key cannot join.
            """,
        options: [
            .value("output", short: "o", "file", help: "Where to write the key.", default: ClusterConfig.Cluster.defaultAuthkey),
            .integer("size", "bytes", as: Int.self, help: "Key size in bytes, \(AuthKey.sizes.lowerBound)-\(AuthKey.sizes.upperBound).",
                     default: AuthKey.defaultSize),
            .flag("force", help: "Replace an existing key (every node then needs the new one)."),
        ]) { try ClusterKeygenCommand($0).run() }

    var output: String
    var size: Int
    var force: Bool

    init(_ v: CLIValues) {
        output = v.string("output") ?? ClusterConfig.Cluster.defaultAuthkey
        size = v.integer("size") ?? AuthKey.defaultSize
        force = v.flag("force")
    }

    func run() throws {
        do {
            try AuthKey.write(to: output, size: size, force: force)
            print("ssi-cluster: wrote \(output): \(size)-byte key, mode 0400")
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}

/// A config error names one problem per line: print each as its own line.
private func printLines(_ e: SSIError) {
    let lines = e.messageLines
    if lines.count <= 1 {
        printError(tool: "ssi-cluster", e)
        return
    }
    var out = ""
    for l in lines { out += l + "\n" }
    writeAll(2, out)
}
