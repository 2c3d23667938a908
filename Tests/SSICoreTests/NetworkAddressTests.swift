import Testing
import SSICore

/// Address text as a cluster file, a clustertab or the kernel command line
/// gives it, and as netlink needs it.
@Suite struct NetworkAddressTests {
    // MARK: IPv4Address

    @Test func parsesAndFormatsIPv4() throws {
        let a = try IPv4Address(parsing: "10.77.0.1")
        #expect(a.value == 0x0A4D_0001)
        #expect(a.octets == [10, 77, 0, 1])
        #expect(a.description == "10.77.0.1")
        #expect(a == IPv4Address(10, 77, 0, 1))
        #expect(a == IPv4Address(0x0A4D_0001))
        #expect(try IPv4Address(parsing: "0.0.0.0") == .any)
        #expect(try IPv4Address(parsing: "255.255.255.255").value == .max)
        #expect(try IPv4Address(parsing: "255.255.255.255").description == "255.255.255.255")
        #expect(try IPv4Address(parsing: "127.0.0.1").isLoopback)
        #expect(IPv4Address.loopback == IPv4Address(127, 0, 0, 1))
        #expect(try !IPv4Address(parsing: "128.0.0.1").isLoopback)
        #expect(IPv4Address(10, 0, 0, 2) < IPv4Address(10, 0, 1, 1))
    }

    @Test(arguments: [
        ("", "invalid IPv4 address \"\": empty"),
        ("10.0.0", "invalid IPv4 address \"10.0.0\": expected four numbers separated by dots, found 3 parts"),
        ("1.2.3", "invalid IPv4 address \"1.2.3\": expected four numbers separated by dots, found 3 parts"),
        ("1.2.3.4.5", "invalid IPv4 address \"1.2.3.4.5\": expected four numbers separated by dots, found 5 parts"),
        ("10.0.0.256", "invalid IPv4 address \"10.0.0.256\": 256 is more than 255"),
        ("10.0.0.1000", "invalid IPv4 address \"10.0.0.1000\": 1000 is more than 255"),
        ("10..0.1", "invalid IPv4 address \"10..0.1\": empty number between dots"),
        ("10.0.0.x", "invalid IPv4 address \"10.0.0.x\": \"x\" is not a decimal number"),
        (" 10.0.0.1", "invalid IPv4 address \" 10.0.0.1\": \" 10\" is not a decimal number"),
        (" 1.2.3.4", "invalid IPv4 address \" 1.2.3.4\": \" 1\" is not a decimal number"),
        ("10.0.0.-1", "invalid IPv4 address \"10.0.0.-1\": \"-1\" is not a decimal number"),
        ("1.2.3.-4", "invalid IPv4 address \"1.2.3.-4\": \"-4\" is not a decimal number"),
        ("010.0.0.1", "invalid IPv4 address \"010.0.0.1\": \"010\" has a leading zero (octal is not accepted)"),
        ("fe80::1", "invalid IPv4 address \"fe80::1\": expected four numbers separated by dots, found 1 part"),
    ])
    func rejectsBadIPv4(text: String, message: String) {
        #expect(throws: AddressParseError.self) { try IPv4Address(parsing: text) }
        do {
            _ = try IPv4Address(parsing: text)
        } catch {
            #expect(error.description == message)
            #expect(error.input == text)
        }
    }

    // MARK: IPv4CIDR

    @Test func parsesCIDR() throws {
        let c = try IPv4CIDR(parsing: "10.77.0.5/24")
        #expect(c.address == IPv4Address(10, 77, 0, 5))
        #expect(c.prefixLength == 24)
        #expect(c.netmask == IPv4Address(255, 255, 255, 0))
        #expect(c.network.description == "10.77.0.0/24")
        #expect(c.broadcast == IPv4Address(10, 77, 0, 255))
        #expect(c.contains(IPv4Address(10, 77, 0, 254)))
        #expect(!c.contains(IPv4Address(10, 77, 1, 1)))
        #expect(c.description == "10.77.0.5/24")

        #expect(try IPv4CIDR(parsing: "0.0.0.0/0") == IPv4CIDR.defaultRoute)
        #expect(IPv4CIDR.defaultRoute.netmask == .any)
        #expect(IPv4CIDR.defaultRoute.contains(IPv4Address(192, 0, 2, 1)))
        #expect(try IPv4CIDR(parsing: "0.0.0.0/0").contains(IPv4Address(8, 8, 8, 8)))
        // RFC 3021 point-to-point and host routes have no broadcast.
        #expect(try IPv4CIDR(parsing: "10.0.0.0/31").broadcast == nil)
        #expect(try IPv4CIDR(parsing: "10.0.0.7/32").broadcast == nil)
        #expect(try IPv4CIDR(parsing: "10.0.0.7/32").netmask.value == .max)
        #expect(try IPv4CIDR(parsing: "172.16.0.0/12").broadcast == IPv4Address(172, 31, 255, 255))
    }

    @Test func hostAddresses() throws {
        let p = try IPv4CIDR(parsingNetwork: "192.168.4.0/22")
        #expect(p.netmask.description == "255.255.252.0")
        #expect(p.broadcast?.description == "192.168.7.255")
        #expect(p.contains(IPv4Address(192, 168, 7, 1)))
        #expect(!p.contains(IPv4Address(192, 168, 8, 1)))
        #expect(p.isHostAddress(IPv4Address(192, 168, 5, 0)))
        #expect(!p.isHostAddress(IPv4Address(192, 168, 4, 0)))
        #expect(!p.isHostAddress(IPv4Address(192, 168, 7, 255)))
        #expect(!p.isHostAddress(IPv4Address(192, 168, 8, 1)))
        // /31 and /32 have no network or broadcast address to keep free.
        #expect(try IPv4CIDR(parsing: "10.0.0.0/31").isHostAddress(IPv4Address(10, 0, 0, 0)))
        #expect(try IPv4CIDR(parsing: "10.0.0.0/31").isHostAddress(IPv4Address(10, 0, 0, 1)))
        #expect(try IPv4CIDR(parsing: "10.0.0.7/32").isHostAddress(IPv4Address(10, 0, 0, 7)))
        #expect(try !IPv4CIDR(parsing: "10.0.0.7/32").isHostAddress(IPv4Address(10, 0, 0, 6)))
        // An interface address answers for its network.
        #expect(try IPv4CIDR(parsing: "10.77.0.5/24").isHostAddress(IPv4Address(10, 77, 0, 9)))
        #expect(try !IPv4CIDR(parsing: "10.77.0.5/24").isHostAddress(IPv4Address(10, 77, 0, 0)))
    }

    @Test(arguments: [
        ("10.77.0.0", "no prefix length (write it as 10.77.0.1/24)"),
        ("10.77.0.0/", "prefix length \"\" is not a number between 0 and 32"),
        ("10.77.0.0/33", "prefix length \"33\" is not a number between 0 and 32"),
        ("10.77.0.0/-1", "prefix length \"-1\" is not a number between 0 and 32"),
        ("10.77.0.0/24/8", "prefix length \"24/8\" is not a number between 0 and 32"),
        ("10.77.0.0/0x8", "prefix length \"0x8\" is not a number between 0 and 32"),
        ("10.77.0/24", "expected four numbers separated by dots, found 3 parts"),
    ])
    func rejectsBadCIDR(text: String, reason: String) {
        do {
            _ = try IPv4CIDR(parsing: text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description == "invalid IPv4 address/prefix \"\(text)\": \(reason)")
        }
    }

    @Test func parsesNetworks() throws {
        let n = try IPv4CIDR(parsingNetwork: "10.77.0.0/24")
        #expect(n.address == IPv4Address(10, 77, 0, 0))
        #expect(n.network == n)
        #expect(try IPv4CIDR(parsingNetwork: "0.0.0.0/0") == .defaultRoute)
        #expect(try IPv4CIDR(parsingNetwork: "10.0.0.7/32").description == "10.0.0.7/32")
    }

    @Test(arguments: [
        ("10.77.0.1/24", "host bits are set: the network is 10.77.0.0/24"),
        ("172.16.5.0/12", "host bits are set: the network is 172.16.0.0/12"),
        ("10.77.0.0", "no prefix length (write it as 10.77.0.0/24)"),
        ("10.77.0.0/33", "prefix length \"33\" is not a number between 0 and 32"),
        ("10.256.0.0/16", "256 is more than 255"),
        ("010.77.0.0/24", "\"010\" has a leading zero (octal is not accepted)"),
    ])
    func rejectsBadNetwork(text: String, reason: String) {
        #expect(throws: AddressParseError(kind: "IPv4 network", input: text, reason: reason)) {
            try IPv4CIDR(parsingNetwork: text)
        }
    }

    @Test func checksPrefixLength() throws {
        #expect(throws: AddressParseError(kind: "IPv4 address/prefix", input: "10.0.0.1/33",
                                          reason: "prefix length 33 is not between 0 and 32")) {
            try IPv4CIDR(IPv4Address(10, 0, 0, 1), prefixLength: 33)
        }
        #expect(throws: AddressParseError.self) { try IPv4CIDR(.any, prefixLength: -1) }
        #expect(try IPv4CIDR(IPv4Address(10, 0, 0, 1), prefixLength: 8).description == "10.0.0.1/8")
    }

    // MARK: MACAddress

    @Test func parsesMACInEitherCase() throws {
        let lower = try MACAddress(parsing: "52:54:00:ab:cd:0f")
        #expect(lower.bytes == [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f])
        #expect(try MACAddress(parsing: "52:54:00:AB:CD:0F") == lower)
        #expect(try MACAddress(parsing: "52-54-00-Ab-cD-0f") == lower)
        #expect(try MACAddress(parsing: "52:54:00:AB:cd:0e").description == "52:54:00:ab:cd:0e")
        #expect(lower.description == "52:54:00:ab:cd:0f")
        #expect(MACAddress([0, 0, 0, 0, 0, 0]).description == "00:00:00:00:00:00")
        #expect(MACAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]) == lower)
    }

    @Test func classifiesMACs() throws {
        #expect(try MACAddress(parsing: "ff:ff:ff:ff:ff:ff").isMulticast)
        #expect(try MACAddress(parsing: "01:00:5e:00:00:01").isMulticast)
        #expect(try !MACAddress(parsing: "52:54:00:00:00:01").isMulticast)
        #expect(try MACAddress(parsing: "00:00:00:00:00:00").isZero)
        #expect(try !MACAddress(parsing: "00:00:00:00:00:01").isZero)
        #expect(try MACAddress(parsing: "52:54:00:00:00:01") < MACAddress(parsing: "52:54:00:00:00:02"))
        #expect(try MACAddress(parsing: "52:54:00:00:00:ff") < MACAddress(parsing: "52:54:00:00:01:00"))
        // Other link types report other lengths (the kernel's bytes, kept).
        #expect(MACAddress([10, 0, 0, 1]).description == "0a:00:00:01")
        #expect(!MACAddress([]).isMulticast)
    }

    @Test(arguments: [
        ("52:54:00:ab:cd", "expected six hexadecimal pairs separated by \":\", found 5 parts"),
        ("52:54:00:ab:cd:0f:11", "expected six hexadecimal pairs separated by \":\", found 7 parts"),
        ("52:54:00:ab:cd:0g", "\"0g\" is not a hexadecimal byte"),
        ("52:54:00:ab:cd:100", "\"100\" is not a hexadecimal byte"),
        ("52:54::ab:cd:0f", "\"\" is not a hexadecimal byte"),
        ("525400abcd0f", "expected six hexadecimal pairs separated by \":\", found 1 part"),
        ("5254.00ab.cd0e", "expected six hexadecimal pairs separated by \":\", found 1 part"),
        ("52:54:0:ab:cd:0f", "\"0\" is not two hexadecimal digits"),
        ("52:54:00:ab:cd:e", "\"e\" is not two hexadecimal digits"),
    ])
    func rejectsBadMAC(text: String, reason: String) {
        do {
            _ = try MACAddress(parsing: text)
            Issue.record("\(text) parsed")
        } catch {
            #expect(error.description == "invalid MAC address \"\(text)\": \(reason)")
        }
    }
}
