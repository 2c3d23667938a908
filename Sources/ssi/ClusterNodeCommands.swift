#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSIConfig
import SSITools
import SSITrust

/// `ssi cluster node ...`: node identities, in the spirit of SSH host
/// keys. The init node gives the cluster key only to a node whose key is
/// enrolled here and that signs a fresh challenge with it.
enum ClusterNodeCommand {
    static let command = CLICommand(
        "node",
        abstract: "Node identities: make a node key, enroll, re-enroll or remove a node, list pending and enrolled ones.",
        discussion: """
            A node proves who it is with its own key (a file of mode 0400 on a node with a disk, \
            or a small block device on a diskless one) before the init node gives it the cluster \
            key; a served image holds no secret. INSTALL.md, "Node identity", walks through it.
            """,
        subcommands: [NodeKeyCommand.command, NodeEnrollCommand.command, NodeRemoveCommand.command, NodeListCommand.command])
}

private func configOption() -> CLIOption {
    .value("config", "file", help: "The cluster config.", default: ClusterConfig.defaultPath)
}

enum NodeKeyCommand {
    static let command = CLICommand(
        "key",
        abstract: "Make or show a node key.",
        subcommands: [NodeKeyNewCommand.command, NodeKeyShowCommand.command])
}

struct NodeKeyNewCommand {
    static let command = CLICommand(
        "new",
        abstract: "Make a node key: a file (mode 0400) or the first 4 KiB of a block device.",
        discussion: """
            Prints the public identity and its fingerprint. On a diskless node's key medium \
            (a USB stick, a small virtual disk) the node reads it at boot; a node booted with \
            ssi.enroll makes its own on a blank medium instead.
            """,
        options: [
            .value("output", short: "o", "path", help: "Where to write the key.", default: ClusterConfig.Identity.defaultKey),
            .flag("force", help: "Replace a key already there (the node must then be enrolled again)."),
        ]) { try NodeKeyNewCommand($0).run() }

    var output: String
    var force: Bool
    init(_ v: CLIValues) {
        output = v.string("output") ?? ClusterConfig.Identity.defaultKey
        force = v.flag("force")
    }

    func run() throws {
        do throws(SSIError) {
            let key = NodeKey.generate()
            try NodeKeyFile.write(key, to: output, force: force)
            print("ssi-cluster: wrote a node key to \(output)")
            print("identity: \(key.identity)")
            print("fingerprint: \(key.identity.fingerprint)")
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}

struct NodeKeyShowCommand {
    static let command = CLICommand(
        "show",
        abstract: "Print a node key's public identity and fingerprint.",
        discussion: "`tpm` shows the identity this machine's TPM 2.0 derives (what a diskless node without a key medium offers).",
        arguments: [CLIArgument("path", help: "The key file or device, or tpm.", default: ClusterConfig.Identity.defaultKey)]) {
        try NodeKeyShowCommand($0).run()
    }

    var path: String
    init(_ v: CLIValues) { path = v.argument("path") ?? ClusterConfig.Identity.defaultKey }

    func run() throws {
        do throws(SSIError) {
            switch try NodeKeyFile.load(path == KeySource.tpmName ? .tpm : .medium(path)) {
            case .blank:
                throw SSIError("identity", "\(path) holds no node key (blank)", hint: "ssi cluster node key new -o \(path)")
            case .key(let key):
                print("identity: \(key.identity)")
                print("fingerprint: \(key.identity.fingerprint)")
            }
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}

/// The node a command names: by name or number, from the configuration.
private func configuredNode(_ config: ClusterConfig, _ given: String) throws(SSIError) -> ClusterConfig.Node {
    if let n = Int(given), let node = config.node(number: n) { return node }
    if let node = config.node(named: given) { return node }
    throw SSIError("identity", "\(given) is not a node of \(config.file)",
                   hint: "nodes: " + config.nodes.map { "\($0.number) \($0.name)" }.joined(separator: ", "))
}

private func writeKnown(_ known: KnownIdentities, _ path: String) throws(SSIError) {
    try ConfigFiles.writeAtomically(path, Array(known.text.utf8), mode: 0o644, replace: true, step: "identity")
}

struct NodeEnrollCommand {
    static let command = CLICommand(
        "enroll",
        abstract: "Enroll a node's identity: the one it offered the key server, or a key file's.",
        discussion: """
            Run on the init node. A node booted with ssi.enroll prints its fingerprint on its \
            console and waits; the key server records what it offers in /run/ssi/enroll. Compare \
            the fingerprints, then enroll: with --fingerprint the command checks it matches; \
            without, it asks on the terminal. A node whose enrolled identity differs (a replaced \
            board or key medium) needs --replace. --key FILE enrolls a key file's identity (the \
            init node's own, or a key made ahead for a node). --identity ed25519:KEY enrolls a \
            public identity as a node that boots from its own disk prints it on its console \
            (gfs2 nodes: no key server takes offers there); then seal the key again \
            (ssi cluster key seal).
            """,
        arguments: [CLIArgument("node", help: "The node's name or number.")],
        options: [
            .value("fingerprint", "SHA256:...", help: "The fingerprint the node's console shows; must match."),
            .value("key", "path", help: "Enroll the identity of this key file or device instead of a pending offer."),
            .value("identity", "ed25519:KEY", help: "Enroll this public identity (what a node that boots from its disk prints)."),
            .flag("replace", help: "Replace the node's enrolled identity."),
            configOption(),
        ]) { try NodeEnrollCommand($0).run() }

    var node: String
    var fingerprint: String?
    var key: String?
    var identity: String?
    var replace: Bool
    var config: String
    var pendingDirectory = "/run/ssi/enroll"

    init(_ v: CLIValues) {
        node = v.argument("node") ?? ""
        fingerprint = v.string("fingerprint")
        key = v.string("key")
        identity = v.string("identity")
        replace = v.flag("replace")
        config = v.string("config") ?? ClusterConfig.defaultPath
    }

    func run() throws {
        do throws(SSIError) {
            print(try enroll())
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }

    func enroll() throws(SSIError) -> String {
        let cfg = try ClusterConfig.load(path: config)
        let target = try configuredNode(cfg, node)
        var known = try KnownIdentities.load(cfg.identity.known)
        let offered: PublicIdentity
        var source: String
        if key != nil && identity != nil {
            throw SSIError("identity", "--key and --identity both name an identity: give one")
        }
        if let identity {
            guard let given = PublicIdentity(identity) else {
                throw SSIError("identity", "--identity \"\(printable(identity.prefix(80)))\" is not ed25519: and a 32-byte base64 key",
                               hint: "copy the whole ed25519:... word from the node's console")
            }
            offered = given
            source = "--identity"
        } else if let key {
            guard case .key(let k) = try NodeKeyFile.read(key) else {
                throw SSIError("identity", "\(key) holds no node key", hint: "ssi cluster node key new -o \(key)")
            }
            offered = k.identity
            source = key
        } else {
            guard let pending = PendingEnrollment.load(directory: pendingDirectory, name: target.name) else {
                throw SSIError("identity", "\(target.name) has offered no identity to this node's key server",
                               hint: "boot \(target.name) with ssi.enroll (it waits, showing its fingerprint), or give --key FILE")
            }
            offered = pending.identity
            source = "\(pending.address) (\(pending.mac))"
        }
        if let fingerprint {
            guard fingerprint == offered.fingerprint else {
                throw SSIError("identity", "\(target.name) offers \(offered.fingerprint) from \(source), not \(fingerprint): nothing enrolled",
                               hint: "compare with the node's console again; a different fingerprint may be another machine")
            }
        } else if key == nil && identity == nil {
            guard isatty(0) == 1 else {
                throw SSIError("identity", "no terminal to confirm \(target.name)'s fingerprint \(offered.fingerprint)",
                               hint: "give --fingerprint with what the node's console shows")
            }
            print("\(target.name) offers \(offered.fingerprint) from \(source).")
            print("Does \(target.name)'s console show the same fingerprint? Type yes to enroll it: ", terminator: "")
            guard readLine() == "yes" else { throw SSIError("identity", "not confirmed: nothing enrolled") }
        }
        if let enrolled = known.identity(of: target.name) {
            if enrolled == offered { return "ssi-cluster: \(target.name) is already enrolled as \(offered.fingerprint)" }
            guard replace else {
                throw SSIError("identity", "\(target.name) is enrolled as \(enrolled.fingerprint); it now offers \(offered.fingerprint)",
                               hint: "if its board or key medium was replaced, run again with --replace")
            }
        }
        known.set(target.name, offered)
        try writeKnown(known, cfg.identity.known)
        unlink(pendingDirectory + "/" + target.name)
        var lines = ["ssi-cluster: enrolled \(target.name) as \(offered.fingerprint) in \(cfg.identity.known)"]
        // A diskless node gets the key from the key server; a node with a
        // disk opens the sealed file, which must name its new identity.
        if target.role != .diskless && access(cfg.identity.sealed, F_OK) == 0 {
            lines.append("  the key in \(cfg.identity.sealed) is not sealed to this identity yet: run ssi cluster key seal, "
                         + "then rebuild the images of the nodes that boot from a disk")
        }
        if target.number == cfg.cfsServer?.number {
            lines.append("  the init node's identity is in the served image: rebuild it (ssi-mkinitrd --config \(cfg.file) --netboot \(cfg.netboot.directory))")
        }
        return lines.joined(separator: "\n")
    }
}

struct NodeRemoveCommand {
    static let command = CLICommand(
        "remove",
        abstract: "Remove a node's enrolled identity: it gets no cluster key at its next boot.",
        arguments: [CLIArgument("node", help: "The node's name or number.")],
        options: [configOption()]) { try NodeRemoveCommand($0).run() }

    var node: String
    var config: String
    init(_ v: CLIValues) {
        node = v.argument("node") ?? ""
        config = v.string("config") ?? ClusterConfig.defaultPath
    }

    func run() throws {
        do throws(SSIError) {
            let cfg = try ClusterConfig.load(path: config)
            var known = try KnownIdentities.load(cfg.identity.known)
            // A node already dropped from the configuration is forgotten
            // by the name it was enrolled under.
            let name = known.identity(of: node) != nil && cfg.nodes.allSatisfy({ $0.name != node }) ? node
                : try configuredNode(cfg, node).name
            guard known.remove(name) else {
                throw SSIError("identity", "\(name) has no enrolled identity in \(cfg.identity.known)")
            }
            try writeKnown(known, cfg.identity.known)
            if (try? SealedKeys.load(cfg.identity.sealed))?.box(of: name) != nil {
                print("ssi-cluster: \(cfg.identity.sealed) still seals the key to \(name): run ssi cluster key seal and rebuild the images")
            }
            print("ssi-cluster: removed \(name)'s identity from \(cfg.identity.known); a running node keeps the cluster key it has "
                  + "until it reboots (change the cluster key to cut it off now); its key leaves every node's tunnel")
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}

struct NodeListCommand {
    static let command = CLICommand(
        "list",
        abstract: "List the nodes with their enrolled and pending identities.",
        options: [configOption()]) { try NodeListCommand($0).run() }

    var config: String
    init(_ v: CLIValues) { config = v.string("config") ?? ClusterConfig.defaultPath }

    func run() throws {
        do throws(SSIError) {
            let cfg = try ClusterConfig.load(path: config)
            let known = try KnownIdentities.load(cfg.identity.known)
            for node in cfg.nodes {
                var line = "\(node.number) \(node.name): " + (known.identity(of: node.name)?.fingerprint ?? "not enrolled")
                if let pending = PendingEnrollment.load(name: node.name) {
                    line += "; offers \(pending.identity.fingerprint) from \(pending.address) (\(pending.mac))"
                }
                print(line)
            }
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}

struct KeyServerCommand {
    static let command = CLICommand(
        "keyserver",
        abstract: "Serve the cluster key to enrolled nodes that prove their identity (the init node's ssi-keys.service).",
        options: [
            configOption(),
            .value("listen", "address", help: "The address to listen on (default: the init node's cluster address)."),
        ]) { try KeyServerCommand($0).run() }

    var config: String
    var listen: String?
    init(_ v: CLIValues) {
        config = v.string("config") ?? ClusterConfig.defaultPath
        listen = v.string("listen")
    }

    func run() throws {
        do throws(SSIError) {
            try KeyServer(configPath: config).run(listenAddress: listen)
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }
}
