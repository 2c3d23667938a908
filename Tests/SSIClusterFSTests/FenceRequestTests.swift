import Testing
import SSICore
@testable import SSIClusterFS

@Suite struct FenceRequestTests {
    @Test func dlmStdinBecomesAnOffLine() throws {
        // What dlm_controld writes: the device's args, the node's, then its own.
        let r = try FenceRequest.parse(["ipaddr=10.77.0.254", "ipport=7071", "node=3", "fail_time=1764480000"]).get()
        #expect(r.line == "off 3")
        #expect(r.address.description == "10.77.0.254")
        #expect(r.port == 7071)
        #expect(r.timeoutSeconds == 60)
    }

    @Test func aPasswordGoesAfterTheLineAndIsNotPartOfIt() throws {
        let r = try FenceRequest.parse(["ipaddr=10.77.0.254", "password=s3cret", "node=3"]).get()
        #expect(r.line == "off 3" && r.password == "s3cret" && r.wireLine == "off 3 s3cret")
        let p = try FenceRequest.parse(["ipaddr=10.77.0.254", "passwd=x", "action=monitor"]).get()
        #expect(p.wireLine == "monitor x")
        #expect(try FenceRequest.parse(["ipaddr=10.77.0.254", "node=3"]).get().wireLine == "off 3")
    }

    @Test func rebootMeansOffAndPlugNamesTheNode() throws {
        let r = try FenceRequest.parse(["--ip=10.0.0.1", "action=reboot", "plug=2", "timeout=5"]).get()
        #expect(r.line == "off 2")
        #expect(r.port == FenceRequest.defaultPort)
        #expect(r.timeoutSeconds == 5)
        #expect(try FenceRequest.parse(["ipaddr=10.0.0.1", "action=monitor"]).get().line == "monitor")
        #expect(try FenceRequest.parse(["ipaddr=10.0.0.1", "action=on", "node=4"]).get().line == "on 4")
    }

    @Test(arguments: [
        (["node=3"], "no ipaddr="),
        (["ipaddr=switch1", "node=3"], "not an IPv4 address"),
        (["ipaddr=10.0.0.1"], "no node="),
        (["ipaddr=10.0.0.1", "node=x"], "not a node id"),
        (["ipaddr=10.0.0.1", "node=1", "action=cycle"], "not off, reboot, on or monitor"),
        (["ipaddr=10.0.0.1", "node=1", "ipport=0"], "not a port number"),
        (["ipaddr", "node=1"], "is not key=value"),
    ])
    func badInputIsNamed(words: [String], message: String) {
        switch FenceRequest.parse(words) {
        case .success(let r): Issue.record("accepted \(words): \(r)")
        case .failure(let f): #expect(f.description.contains(message), "\(f)")
        }
    }
}
