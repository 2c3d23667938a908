import Foundation
import Testing
import SSITestSupport
import SSITrust

/// `ssi cluster node ...` and `ssi-mkinitrd --netboot`'s refusals, run as
/// an administrator would, on a scratch configuration.
@Suite struct NodeIdentityCLITests {
    static let ssi = CLIBinaryTests.ssi

    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "ssi-node-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = SampleConfigs.cfsWithIdentities(dir: dir, nodes: 2)
        try config.write(toFile: dir + "/cluster.conf", atomically: true, encoding: .utf8)
        return dir
    }

    @Test("key new/show, enroll from a key file, a changed key needs --replace, list, remove",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func enrollFlow() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conf = dir + "/cluster.conf"
        let made = try CLIBinaryTests.run(["cluster", "node", "key", "new", "-o", dir + "/node2.key"])
        #expect(made.status == 0, "\(made.err)")
        let fp = try #require(made.out.split(separator: "\n").first { $0.hasPrefix("fingerprint: ") }).dropFirst(13)
        let shown = try CLIBinaryTests.run(["cluster", "node", "key", "show", dir + "/node2.key"])
        #expect(shown.out.contains("fingerprint: \(fp)"))
        let again = try CLIBinaryTests.run(["cluster", "node", "key", "new", "-o", dir + "/node2.key"])
        #expect(again.status == 1 && again.err.contains("--force replaces it"), "\(again.err)")

        let enrolled = try CLIBinaryTests.run(["cluster", "node", "enroll", "node2", "--key", dir + "/node2.key", "--config", conf])
        #expect(enrolled.status == 0 && enrolled.out.contains("enrolled node2 as \(fp)"), "\(enrolled)")
        let known = try String(contentsOfFile: dir + "/identities", encoding: .utf8)
        #expect(known.hasPrefix("node2 ed25519:") && known.split(separator: "\n").count == 1, "\(known)")
        let same = try CLIBinaryTests.run(["cluster", "node", "enroll", "2", "--key", dir + "/node2.key", "--config", conf])
        #expect(same.status == 0 && same.out.contains("already enrolled"), "\(same)")

        _ = try CLIBinaryTests.run(["cluster", "node", "key", "new", "--force", "-o", dir + "/node2.key"])
        let changed = try CLIBinaryTests.run(["cluster", "node", "enroll", "node2", "--key", dir + "/node2.key", "--config", conf])
        #expect(changed.status == 1 && changed.err.contains("run again with --replace"), "\(changed.err)")
        #expect(try String(contentsOfFile: dir + "/identities", encoding: .utf8) == known, "nothing changed on a refusal")
        let replaced = try CLIBinaryTests.run(["cluster", "node", "enroll", "node2", "--replace", "--key", dir + "/node2.key", "--config", conf])
        #expect(replaced.status == 0, "\(replaced.err)")

        // No pending offer, no terminal: the errors say what to do.
        let nothing = try CLIBinaryTests.run(["cluster", "node", "enroll", "node1", "--config", conf])
        #expect(nothing.status == 1 && nothing.err.contains("node1 has offered no identity"), "\(nothing.err)")
        let stranger = try CLIBinaryTests.run(["cluster", "node", "enroll", "node9", "--key", dir + "/node2.key", "--config", conf])
        #expect(stranger.status == 1 && stranger.err.contains("node9 is not a node of") && stranger.err.contains("1 node1, 2 node2"),
                "\(stranger.err)")

        let list = try CLIBinaryTests.run(["cluster", "node", "list", "--config", conf])
        #expect(list.out.contains("1 node1: not enrolled") && list.out.contains("2 node2: SHA256:"), "\(list.out)")
        let removed = try CLIBinaryTests.run(["cluster", "node", "remove", "node2", "--config", conf])
        #expect(removed.status == 0 && removed.out.contains("removed node2's identity"), "\(removed)")
        let twice = try CLIBinaryTests.run(["cluster", "node", "remove", "node2", "--config", conf])
        #expect(twice.status == 1 && twice.err.contains("no enrolled identity"), "\(twice.err)")

        // A node dropped from the configuration first is still forgotten
        // by its enrolled name; an unknown name is still refused.
        try "node7 ed25519:\(known.split(separator: ":")[1])".write(toFile: dir + "/identities", atomically: true, encoding: .utf8)
        let dropped = try CLIBinaryTests.run(["cluster", "node", "remove", "node7", "--config", conf])
        #expect(dropped.status == 0 && dropped.out.contains("removed node7's identity"), "\(dropped)")
        let unknown = try CLIBinaryTests.run(["cluster", "node", "remove", "node8", "--config", conf])
        #expect(unknown.status == 1 && unknown.err.contains("node8 is not a node of"), "\(unknown.err)")
    }

    @Test("key seal: the key sealed to every enrolled node (enrolled by --identity), each opens its own; --remove-plain; the refusals",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func sealFlow() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conf = dir + "/cluster.conf"
        // [identity] sealed in the scratch folder, not the host's /etc.
        try (String(contentsOfFile: conf, encoding: .utf8).replacingOccurrences(of: "[identity]\n", with: "[identity]\nsealed = \"\(dir)/sealed-keys\"\n"))
            .write(toFile: conf, atomically: true, encoding: .utf8)
        let none = try CLIBinaryTests.run(["cluster", "key", "seal", "--config", conf])
        #expect(none.status == 1 && none.err.contains("authkey \(dir)/authkey") && none.err.contains("ssi cluster keygen"), "\(none.err)")
        #expect(try CLIBinaryTests.run(["cluster", "keygen", "-o", dir + "/authkey"]).status == 0)
        let nobody = try CLIBinaryTests.run(["cluster", "key", "seal", "--config", conf])
        #expect(nobody.status == 1 && nobody.err.contains("no node is enrolled in \(dir)/identities"), "\(nobody.err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/sealed-keys"), "nothing written on a refusal")

        // Two nodes, enrolled by their public identities as a disk node's
        // console prints them.
        var keys: [NodeKey] = []
        for n in 1...2 {
            let key = NodeKey.generate()
            keys.append(key)
            let enrolled = try CLIBinaryTests.run(["cluster", "node", "enroll", "node\(n)", "--identity", "\(key.identity)", "--config", conf])
            #expect(enrolled.status == 0 && enrolled.out.contains("enrolled node\(n) as \(key.identity.fingerprint)"), "\(enrolled)")
        }
        let bad = try CLIBinaryTests.run(["cluster", "node", "enroll", "node2", "--identity", "ed25519:AAAA", "--config", conf])
        #expect(bad.status == 1 && bad.err.contains("is not ed25519: and a 32-byte base64 key"), "\(bad.err)")
        let both = try CLIBinaryTests.run(["cluster", "node", "enroll", "node2", "--identity", "\(keys[0].identity)", "--key", dir + "/x", "--config", conf])
        #expect(both.status == 1 && both.err.contains("give one"), "\(both.err)")

        let sealed = try CLIBinaryTests.run(["cluster", "key", "seal", "--config", conf])
        #expect(sealed.status == 0, "\(sealed.err)")
        #expect(sealed.out.contains("sealed the cluster key from \(dir)/authkey to 2 nodes in \(dir)/sealed-keys"), "\(sealed.out)")
        #expect(sealed.out.contains("\(dir)/authkey still holds them in the clear"), "\(sealed.out)")
        let authkey = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/authkey")))
        let file = try SealedKeys.load(dir + "/sealed-keys")
        for (n, key) in keys.enumerated() {
            let opened = try file.open(for: "node\(n + 1)", with: key, source: "t")
            #expect(opened.files.map(\.path) == ["/etc/corosync/authkey"] && opened.files[0].bytes == authkey)
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: dir + "/sealed-keys")
        #expect((attributes[.posixPermissions] as? Int) == 0o644, "ciphertext: public")
        // A new enrollment of a node with a disk (the init node): the
        // command says the key is not sealed to it yet; a diskless node's
        // comes from the key server, so nothing is said.
        let replaced = NodeKey.generate()
        let re = try CLIBinaryTests.run(["cluster", "node", "enroll", "node1", "--replace", "--identity", "\(replaced.identity)", "--config", conf])
        #expect(re.status == 0 && re.out.contains("not sealed to this identity yet: run ssi cluster key seal"), "\(re.out)")
        let diskless = try CLIBinaryTests.run(["cluster", "node", "enroll", "node2", "--replace", "--identity", "\(NodeKey.generate().identity)", "--config", conf])
        #expect(diskless.status == 0 && !diskless.out.contains("not sealed"), "\(diskless.out)")

        let removed = try CLIBinaryTests.run(["cluster", "key", "seal", "--remove-plain", "--config", conf])
        #expect(removed.status == 0 && removed.out.contains("removed \(dir)/authkey"), "\(removed)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/authkey"))
        #expect(try SealedKeys.load(dir + "/sealed-keys").open(for: "node1", with: replaced, source: "t").files[0].bytes == authkey)
    }

    @Test("key seal takes the fence secrets [fence] names as @NAME with the key; a missing file or name is refused; --remove-plain deletes both",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func sealWithFenceSecrets() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conf = dir + "/cluster.conf"
        let text = try String(contentsOfFile: conf, encoding: .utf8)
            .replacingOccurrences(of: "[identity]\n", with: "[identity]\nsealed = \"\(dir)/sealed-keys\"\n")
            + "\n[fence]\nagent = \"/usr/sbin/fence_ipmilan\"\nargs = \"lanplus=1 password=@ipmi\"\nsecrets = \"\(dir)/fence-secrets\"\n"
        try text.write(toFile: conf, atomically: true, encoding: .utf8)
        #expect(try CLIBinaryTests.run(["cluster", "keygen", "-o", dir + "/authkey"]).status == 0)
        let key = NodeKey.generate()
        #expect(try CLIBinaryTests.run(["cluster", "node", "enroll", "node1", "--identity", "\(key.identity)", "--config", conf]).status == 0)
        let missing = try CLIBinaryTests.run(["cluster", "key", "seal", "--config", conf])
        #expect(missing.status == 1 && missing.err.contains("[fence] names @ipmi, but \(dir)/fence-secrets does not exist"), "\(missing.err)")
        try "other=x\n".write(toFile: dir + "/fence-secrets", atomically: true, encoding: .utf8)
        chmod(dir + "/fence-secrets", 0o644)
        let open = try CLIBinaryTests.run(["cluster", "key", "seal", "--config", conf])
        #expect(open.status == 1 && open.err.contains("mode 644: others can read the fence passwords"), "\(open.err)")
        chmod(dir + "/fence-secrets", 0o600)
        let noName = try CLIBinaryTests.run(["cluster", "key", "seal", "--config", conf])
        #expect(noName.status == 1 && noName.err.contains("has no ipmi"), "\(noName.err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/sealed-keys"), "nothing sealed on a refusal")
        try "ipmi=s3cret\n".write(toFile: dir + "/fence-secrets", atomically: true, encoding: .utf8)
        chmod(dir + "/fence-secrets", 0o600)
        let sealed = try CLIBinaryTests.run(["cluster", "key", "seal", "--remove-plain", "--config", conf])
        #expect(sealed.status == 0 && sealed.out.contains("and the fence secrets from \(dir)/fence-secrets to 1 node"), "\(sealed)")
        #expect(sealed.out.contains("removed \(dir)/authkey and \(dir)/fence-secrets"), "\(sealed.out)")
        let bundle = try SealedKeys.load(dir + "/sealed-keys").open(for: "node1", with: key, source: "t")
        #expect(bundle.files.map(\.path) == ["/etc/corosync/authkey", "/etc/ssi/fence-secrets"])
        #expect(String(decoding: bundle.files[1].bytes, as: UTF8.self) == "ipmi=s3cret\n" && bundle.files[1].mode == 0o400)
        #expect(!(try String(contentsOfFile: dir + "/sealed-keys", encoding: .utf8)).contains("s3cret"))
    }

    @Test("--netboot refuses --authkey, fence credentials and a missing identities file, each with the fix",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func netbootRefusals() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conf = dir + "/cluster.conf"
        func netboot(_ extra: [String] = [], config: String) throws -> (status: Int32, out: String, err: String) {
            // The refusals come before any module is looked at: an empty
            // module folder will do.
            try CLIBinaryTests.run(["mkinitrd", "--config", config, "--kver", "6.1.0-0-test", "--kmoddir", dir, "--netboot", dir + "/netboot",
                                    "--kernel-image", conf] + extra)
        }
        let noKnown = try netboot(config: conf)
        #expect(noKnown.status == 1 && noKnown.err.contains("\(dir)/identities does not exist")
                && noKnown.err.contains("ssi cluster node enroll node1 --key \(dir)/node.key"), "\(noKnown.err)")
        let withKey = try netboot(["--authkey", dir + "/authkey"], config: conf)
        #expect(withKey.status == 1 && withKey.err.contains("--authkey does not go with --netboot"), "\(withKey.err)")
        let fenced = dir + "/fenced.conf"
        try (try String(contentsOfFile: conf, encoding: .utf8) + "\n[fence]\nagent = \"/usr/sbin/fence_ipmilan\"\nargs = \"password=secret\"\n")
            .write(toFile: fenced, atomically: true, encoding: .utf8)
        let fence = try netboot(config: fenced)
        #expect(fence.status == 1 && fence.err.contains("would carry [fence]'s credentials"), "\(fence.err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/netboot/initrd.img"), "nothing written")
    }
}
