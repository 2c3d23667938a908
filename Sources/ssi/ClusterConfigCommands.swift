import ArgumentParser
import SSICore
import SSIConfig

/// `ssi cluster config ...`: the cluster configuration file.
struct ClusterConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check the cluster config, convert an OpenSSI clustertab, print the corosync.conf.",
        discussion: "The format and every key are described in configs/README.md.",
        subcommands: [ClusterConfigCheckCommand.self, ClusterConfigImportCommand.self, ClusterConfigCorosyncCommand.self])
}

struct ClusterConfigCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a cluster config; print every problem, one per line.",
        discussion: """
            Each problem is printed as FILE:LINE: FIELD: what is wrong; how to fix it. \
            Exit status 0 when the config is valid, 1 otherwise.
            """)

    @Argument(help: ArgumentHelp("The cluster config.", valueName: "file"))
    var file: String = ClusterConfig.defaultPath

    @Flag(name: .shortAndLong, help: "Print nothing when the config is valid.")
    var quiet = false

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

struct ClusterConfigImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-clustertab",
        abstract: "Convert an OpenSSI /etc/clustertab to a cluster config.",
        discussion: """
            clustertab lines are: node number, IP address, MAC address, boot protocol, \
            init node flag (1 or 0), boot device; # starts a comment. The init node becomes \
            the server of a cfs root and the other nodes diskless. The config is printed, \
            or written with -o; what to check (a guessed prefix, a placeholder name) is \
            printed on stderr and kept as comments in the config.
            """)

    @Argument(help: ArgumentHelp("The OpenSSI clustertab.", valueName: "file"))
    var file: String

    @Option(help: ArgumentHelp("The cluster name (default: openssi).", valueName: "name"))
    var name: String?

    @Option(help: ArgumentHelp("The cluster network, CIDR (default: guessed from the addresses).", valueName: "cidr"))
    var prefix: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Write the config to this file instead of stdout.", valueName: "file"))
    var output: String?

    @Flag(help: "Replace an existing output file.")
    var force = false

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

struct ClusterConfigCorosyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corosync",
        abstract: "Print the corosync.conf generated from a cluster config.")

    @Argument(help: ArgumentHelp("The cluster config.", valueName: "file"))
    var file: String = ClusterConfig.defaultPath

    @Option(help: ArgumentHelp("The authkey path corosync will read (default: the config's authkey).", valueName: "path"))
    var keyfile: String?

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
struct ClusterKeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make the cluster's authentication key (corosync authkey).",
        discussion: """
            Random bytes from getrandom(2), written mode 0400 to a temporary file that \
            then takes the key's name (a link, or a rename with --force), so no reader \
            ever sees half a key. Copy the same key to every \
            node (it goes into every image built with --config); a node with another \
            key cannot join.
            """)

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write the key.", valueName: "file"))
    var output: String = ClusterConfig.Cluster.defaultAuthkey

    @Option(help: ArgumentHelp("Key size in bytes, \(AuthKey.sizes.lowerBound)-\(AuthKey.sizes.upperBound).", valueName: "bytes"))
    var size: Int = AuthKey.defaultSize

    @Flag(help: "Replace an existing key (every node then needs the new one).")
    var force = false

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
