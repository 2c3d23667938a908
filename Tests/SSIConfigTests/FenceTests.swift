import Testing
import SSITestSupport
@testable import SSIConfig

@Suite struct FenceTests {
    @Test func gfs2ConfigCarriesTheFenceDeviceAndEveryNode() throws {
        let text = replacing("address = \"10.77.0.2\"\n", with: "address = \"10.77.0.2\"\nfence_args = \"port=2 plug=node2\"\n", in: baseGFS2)
        let c = try valid(text)
        let fence = try #require(c.fence)
        #expect(fence.agent == "/usr/sbin/fence_ssi")
        #expect(fence.arguments == ["ipaddr=10.77.0.254", "ipport=7070"])
        #expect(fence.postJoinDelay == 30)
        #expect(c.nodes[1].fenceArguments == ["port=2", "plug=node2"])
        let lines = c.dlmConf().split(separator: "\n").map(String.init)
        #expect(lines.contains("protocol=tcp"))
        #expect(lines.contains("enable_fencing=1"))
        #expect(lines.contains("post_join_delay=30"))
        #expect(lines.contains("device ssi /usr/sbin/fence_ssi ipaddr=10.77.0.254 ipport=7070"))
        #expect(lines.filter { $0.hasPrefix("connect ") } == [
            "connect ssi node=1", "connect ssi node=2 port=2 plug=node2", "connect ssi node=3",
        ])
    }

    @Test func gfs2WithoutFenceIsRefusedAtTheRootSection() {
        var text = baseGFS2
        let start = text.range(of: "[fence]")!.lowerBound
        let end = text.range(of: "ipport=7070\"\n")!.upperBound
        text.removeSubrange(start..<end)
        expectOneProblem(text, line: line(of: "[root]", in: text), field: "fence", "a gfs2 root needs a [fence] section", "fence_ipmilan")
    }

    @Test func badFenceFieldsNameTheLine() {
        var text = replacing("agent = \"/usr/sbin/fence_ssi\"", with: "agent = \"fence_ssi\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "agent =", in: text), field: "fence.agent", "absolute path")
        text = replacing("args = \"ipaddr=10.77.0.254 ipport=7070\"", with: "args = \"ipaddr 10.77.0.254\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "args =", in: text), field: "fence.args", "\"ipaddr\" is not key=value")
        text = replacing("address = \"10.77.0.3\"\n", with: "address = \"10.77.0.3\"\nfence_args = \"=x\"\n", in: baseGFS2)
        expectOneProblem(text, line: line(of: "fence_args", in: text), field: "node.fence_args", "not key=value")
        text = replacing("ipport=7070\"\n", with: "ipport=7070\"\nagnet = \"x\"\n", in: baseGFS2)
        expectOneProblem(text, line: line(of: "agnet", in: text), field: "fence.agnet", "unknown key")
    }

    @Test func cfsConfigNeedsNoFence() throws {
        let c = try valid(baseCFS)
        #expect(c.fence == nil)
    }

    // MARK: fence secrets: key=@NAME, the values only in RAM

    @Test func secretReferencesResolveOnlyWithTheSecrets() throws {
        var text = replacing("args = \"ipaddr=10.77.0.254 ipport=7070\"", with: "args = \"ipaddr=10.77.0.254 password=@switch\"\nsecrets = \"/root/fence\"", in: baseGFS2)
        text = replacing("address = \"10.77.0.2\"\n", with: "address = \"10.77.0.2\"\nfence_args = \"ip=10.0.1.2 passwd=@bmc2\"\n", in: text)
        let c = try valid(text)
        #expect(c.fence?.secrets == "/root/fence")
        #expect(c.fenceSecretNames == ["bmc2", "switch"])
        #expect(!c.holdsFenceCredentials, "references only: the configuration holds no password")
        // The image's copy keeps the names.
        #expect(c.dlmConf().contains("device ssi /usr/sbin/fence_ssi ipaddr=10.77.0.254 password=@switch\n"))
        let secrets = try FenceSecrets.parse("# the switch\nswitch=s3cret\nbmc2=pa=ss\n", source: "f")
        let resolved = try c.dlmConf(secrets: secrets, source: "f")
        #expect(resolved.contains("device ssi /usr/sbin/fence_ssi ipaddr=10.77.0.254 password=s3cret\n"))
        #expect(resolved.contains("connect ssi node=2 ip=10.0.1.2 passwd=pa=ss\n"))
        #expect(!resolved.contains("@"))
        do {
            _ = try c.dlmConf(secrets: try FenceSecrets.parse("switch=x\n", source: "/etc/ssi/fence-secrets"), source: "/etc/ssi/fence-secrets")
            Issue.record("a missing secret is refused")
        } catch {
            #expect(error.message.contains("the fence secret bmc2 (in the fence_args of node2) is not in /etc/ssi/fence-secrets"), "\(error)")
            #expect(error.hint?.contains("add bmc2=VALUE to /root/fence") == true, "\(error)")
        }
    }

    @Test func aPasswordInTheClearMakesTheConfigurationRootsAlone() throws {
        for (args, holds) in [("ipaddr=1.2.3.4 ipport=7070", false), ("password=x", true), ("community=public", true),
                              ("secret-key=x", true), ("hexadecimal_kg=00", true), ("api_token=@tok", false), ("login=admin", false)] {
            let text = replacing("args = \"ipaddr=10.77.0.254 ipport=7070\"", with: "args = \"\(args)\"", in: baseGFS2)
            #expect(try valid(text).holdsFenceCredentials == holds, "\(args)")
        }
    }

    @Test func badReferencesAndSecretsFilesAreNamed() {
        let text = replacing("args = \"ipaddr=10.77.0.254 ipport=7070\"", with: "args = \"password=@bad/name\"", in: baseGFS2)
        expectOneProblem(text, line: line(of: "args =", in: text), field: "fence.args", "\"@bad/name\" is not @NAME")
        let relative = replacing("ipport=7070\"\n", with: "ipport=7070\"\nsecrets = \"fence\"\n", in: baseGFS2)
        expectOneProblem(relative, line: line(of: "secrets =", in: relative), field: "fence.secrets", "absolute")
        func message(_ text: String) -> String {
            do { _ = try FenceSecrets.parse(text, source: "/etc/ssi/fence-secrets"); return "parsed" } catch { return error.description }
        }
        #expect(message("a=1\r\n\n  # c\nb-2=x\n") == "parsed")
        #expect(message("a=1\na=2\n").contains("line 2: a is also on line 1"))
        #expect(message("novalue\n").contains("line 1: expected NAME=value"))
        #expect(message("a b=1\n").contains("line 1: \"a b\" is not a secret name"))
        #expect(message("a=two words\n").contains("line 1: a's value is empty or has white space"))
        #expect(message("a=\n").contains("empty"))
    }

    @Test func fenceSecretsFuzz() {
        Fuzz.run("fence-secrets", seeds: Fuzz.seeds(["# c\nipmi=s3cret\nbmc-2=x=y\n", ""]), iterations: Fuzz.iterations(default: 800)) { bytes in
            let parsed = try FenceSecrets.parse(String(decoding: bytes, as: UTF8.self), source: "fuzz")
            _ = try FenceSecrets.parse(parsed.text, source: "again")
        }
    }
}
