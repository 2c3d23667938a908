import Testing
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
}
