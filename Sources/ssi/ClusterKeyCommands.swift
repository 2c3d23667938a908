import SSICore
import SSILinux
import SSIConfig
import SSITools
import SSITrust

/// `ssi cluster key ...`: the cluster key at rest. A node that boots from
/// its own disk carries the key sealed to the enrolled identities, not
/// the key (DESIGN-NOTES.md, "Keys at rest").
enum ClusterKeyCommand {
    static let command = CLICommand(
        "key",
        abstract: "The cluster key at rest: seal it to the enrolled node identities.",
        subcommands: [ClusterKeySealCommand.command])
}

struct ClusterKeySealCommand {
    static let command = CLICommand(
        "seal",
        abstract: "Seal the cluster key to every enrolled node's identity ([identity] sealed).",
        discussion: """
            Writes one line per enrolled node: the key sealed (libsodium's sealed box) to that \
            node's identity, which only its TPM or key medium opens. Images built for nodes with \
            a disk (gfs2 nodes, the init node) then carry this file instead of the key. The key \
            is read from --authkey, else [cluster] authkey, else, on a running node, its copy in \
            RAM: after --remove-plain no disk holds it in the clear, and a member seals it again \
            when a node is enrolled. Run it again after every enroll, re-enroll or remove, and \
            rebuild the images.
            """,
        options: [
            .value("authkey", "file", help: "The key to seal (default: [cluster] authkey, else the running node's copy)."),
            .flag("remove-plain", help: "Remove the key file it read once the sealed file is written."),
            .value("config", "file", help: "The cluster config.", default: ClusterConfig.defaultPath),
        ]) { try ClusterKeySealCommand($0).run() }

    var authkey: String?
    var removePlain: Bool
    var config: String

    init(_ v: CLIValues) {
        authkey = v.string("authkey")
        removePlain = v.flag("remove-plain")
        config = v.string("config") ?? ClusterConfig.defaultPath
    }

    func run() throws {
        do throws(SSIError) {
            print(try seal())
        } catch {
            printError(tool: "ssi-cluster", error)
            throw ExitCode(1)
        }
    }

    func seal() throws(SSIError) -> String {
        let cfg = try ClusterConfig.load(path: config)
        let (key, from): ([UInt8], String)
        if let authkey {
            (key, from) = (try AuthKey.read(path: authkey), authkey)
        } else {
            (key, from) = try AuthKey.readConfiguredOrRunning(cfg.cluster.authkey)
        }
        let known = try KnownIdentities.load(cfg.identity.known)
        guard !known.entries.isEmpty else {
            throw SSIError("keys", "no node is enrolled in \(cfg.identity.known): there is nobody to seal the key to",
                           hint: "enroll the nodes first: ssi cluster node enroll NAME --identity ed25519:... (or --key FILE)")
        }
        var files: [KeyBundle.File] = [.init(path: "/etc/corosync/authkey", mode: 0o400, bytes: key)]
        // The fence agents' secrets travel with the key: from their file,
        // else (a member sealing again) the running node's copy in RAM.
        var secretsFrom: String?
        if let fence = cfg.fence {
            let running = AuthKey.runningRoot + FenceSecrets.runtimePath
            let path = FileSystem.exists(fence.secrets) ? fence.secrets : FileSystem.exists(running) ? running : nil
            if let path {
                let secrets = try FenceSecrets.load(path)
                for name in cfg.fenceSecretNames where secrets.values[name] == nil {
                    throw SSIError("keys", "\(path) has no \(name), which [fence] names as @\(name)",
                                   hint: "add \(name)=VALUE to \(fence.secrets); nothing was sealed")
                }
                files.append(.init(path: FenceSecrets.runtimePath, mode: 0o400, bytes: Array(secrets.text.utf8)))
                secretsFrom = path
            } else if let first = cfg.fenceSecretNames.first {
                throw SSIError("keys", "[fence] names @\(first), but \(fence.secrets) does not exist",
                               hint: "write \(fence.secrets) (mode 0600, NAME=value lines), then seal")
            }
        }
        let bundle = KeyBundle(files: files)
        let sealed = try SealedKeys.seal(bundle, to: known)
        // Ciphertext: public like the identities, so that any image may carry it.
        try ConfigFiles.writeAtomically(cfg.identity.sealed, Array(sealed.text.utf8), mode: 0o644, replace: true, step: "keys")
        var lines = ["ssi-cluster: sealed the cluster key from \(from)" + (secretsFrom.map { " and the fence secrets from \($0)" } ?? "")
                     + " to \(sealed.boxes.count) node" + (sealed.boxes.count == 1 ? "" : "s") + " in \(cfg.identity.sealed):"]
        for box in sealed.boxes { lines.append("  \(box.name) \(box.fingerprint)") }
        let unsealed = cfg.nodes.filter { known.identity(of: $0.name) == nil }.map(\.name)
        if !unsealed.isEmpty {
            lines.append("  not enrolled, so nothing sealed to them: \(unsealed.joined(separator: ", "))")
        }
        lines.append("  rebuild the images of the nodes that boot from a disk (ssi-mkinitrd --config \(cfg.file) ...)")
        let plain = [from, secretsFrom].compactMap { $0 }.filter { !$0.hasPrefix(AuthKey.runningRoot + "/") }
        if !plain.isEmpty {
            if removePlain {
                for path in plain {
                    do throws(SystemCallError) { try FileSystem.unlink(path) } catch {
                        throw SSIError("keys", "the sealed file is written, but removing \(path) failed: \(error.description)",
                                       hint: "remove it by hand")
                    }
                }
                lines.append("  removed \(plain.joined(separator: " and ")): no file on this disk holds them in the clear "
                             + "(running nodes keep them in RAM)")
            } else {
                lines.append("  \(plain.joined(separator: " and ")) still hold\(plain.count == 1 ? "s" : "") them in the clear: "
                             + "once the images are rebuilt, run again with --remove-plain")
            }
        }
        return lines.joined(separator: "\n")
    }
}
