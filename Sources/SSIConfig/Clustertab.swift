public import SSICore

/// OpenSSI's /etc/clustertab, converted to our cluster config.
///
/// The format, as OpenSSI's own tools read it (openssi-webview splits a
/// line on tabs into id, ip, mac, netboot, init, devboot; keepalived's
/// CI-LINUX checker reads the number and the IP with fscanf): one node per
/// line, whitespace-separated fields, `#` starts a comment:
///
///     # node  IP address     MAC address         boot  init  boot device
///     1       10.0.0.1       00:0c:29:aa:bb:01   P     1     /dev/sda1
///     2       10.0.0.2       00:0c:29:aa:bb:02   P     0
///
/// 1. node number; 2. the node's IP address on the interconnect; 3. the MAC
/// address of that interface; 4. the network boot protocol of a node that
/// boots from the network (`P` PXE, `E` Etherboot); 5. `1` for a potential
/// init node (CLMS master: it boots from its own disk and can serve the
/// root), else `0`; 6. the init node's boot device. Fields 4-6 may be
/// missing at the end of a line.
///
/// The conversion: a cfs root served by the init node (the first in the
/// file when several are flagged: OpenSSI's failover init nodes have no
/// equivalent in a cfs root, and become members, with a note), the other
/// nodes diskless, names node<N>, and the network prefix from `--prefix` or
/// guessed (the /24, or wider, that holds every address).
public enum Clustertab {
    public struct Entry: Sendable, Equatable {
        public var number: Int
        public var address: IPv4Address
        public var mac: MACAddress
        public var bootProtocol: String?
        public var initNode: Bool
        public var bootDevice: String?
        /// The line in the clustertab.
        public var line: Int
    }

    public struct Conversion: Sendable {
        /// The cluster config, TOML, commented.
        public var text: String
        /// What the admin should check (also written as comments in `text`).
        public var notes: [String]
        public var entries: [Entry]
    }

    /// Parses a clustertab; every bad line is reported (SSIError step
    /// "clustertab", one `FILE:LINE: ...` per line of the message).
    public static func parse(text: String, file: String) throws(SSIError) -> [Entry] {
        var entries: [Entry] = []
        var problems: [ConfigProblem] = []
        func report(_ line: Int, _ field: String, _ message: String, hint: String? = nil) {
            problems.append(ConfigProblem(file: file, line: line, field: field, message, hint: hint))
        }
        let names = ["node number", "IP address", "MAC address", "boot protocol", "init node flag", "boot device"]

        // CRLF files read as LF: see textLines.
        for (k, raw) in textLines(text).enumerated() {
            let line = k + 1
            let content = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            if fields.isEmpty { continue }
            guard fields.count >= 3 else {
                report(line, "", "\(fields.count) field\(fields.count == 1 ? "" : "s"); a clustertab line has at least 3: node number, IP address, MAC address")
                continue
            }
            guard fields.count <= 6 else {
                report(line, "", "\(fields.count) fields; a clustertab line has at most 6: node number, IP address, MAC address, boot protocol, init node flag, boot device")
                continue
            }
            var ok = true
            let number = Int(fields[0]) ?? 0
            if !(1...Int(Int32.max)).contains(number) || fields[0].hasPrefix("+") {
                report(line, "field 1 (\(names[0]))", "\"\(fields[0])\" is not a node number (1 or more)")
                ok = false
            }
            var address = IPv4Address(0)
            do { address = try IPv4Address(parsing: fields[1]) } catch {
                report(line, "field 2 (\(names[1]))", error.description, hint: error.ipv6Hint); ok = false
            }
            var mac = MACAddress([0, 0, 0, 0, 0, 0])
            do {
                mac = try MACAddress(parsing: fields[2])
                if mac.isMulticast || mac.isZero {
                    report(line, "field 3 (\(names[2]))", "\(mac) is not a network card's address"); ok = false
                }
            } catch {
                report(line, "field 3 (\(names[2]))", error.description); ok = false
            }
            var initNode = false
            if fields.count >= 5 {
                switch fields[4] {
                case "1": initNode = true
                case "0": initNode = false
                default:
                    report(line, "field 5 (\(names[4]))", "\"\(fields[4])\" is not 0 or 1"); ok = false
                }
            }
            guard ok else { continue }
            entries.append(Entry(number: number, address: address, mac: mac,
                                 bootProtocol: fields.count >= 4 && fields[3] != "-" ? fields[3] : nil,
                                 initNode: initNode,
                                 bootDevice: fields.count >= 6 && fields[5] != "-" ? fields[5] : nil,
                                 line: line))
        }

        var byNumber: [Int: Entry] = [:], byMAC: [MACAddress: Entry] = [:], byAddress: [IPv4Address: Entry] = [:]
        for e in entries {
            if let o = byNumber[e.number] {
                report(e.line, "field 1 (node number)", "node \(e.number) is also on line \(o.line)")
            } else { byNumber[e.number] = e }
            if let o = byMAC[e.mac] {
                report(e.line, "field 3 (MAC address)", "\(e.mac) is on two nodes: node \(e.number) and node \(o.number) (line \(o.line))")
            } else { byMAC[e.mac] = e }
            if let o = byAddress[e.address] {
                report(e.line, "field 2 (IP address)", "\(e.address) is also node \(o.number)'s (line \(o.line))")
            } else { byAddress[e.address] = e }
        }
        if problems.isEmpty && entries.isEmpty {
            report(0, "", "no nodes", hint: "one line per node: number, IP address, MAC address, boot protocol, init node flag, boot device")
        }
        if problems.isEmpty && !entries.contains(where: \.initNode) {
            report(0, "", "no init node (field 5 = 1)", hint: "mark the node that owns the root disk with 1 in field 5")
        }
        if !problems.isEmpty {
            problems.sort { $0.line < $1.line }
            throw SSIError("clustertab", problems.map(\.description).joined(separator: "\n"))
        }
        return entries
    }

    /// Converts a clustertab to a cluster config (validated before it is
    /// returned). `clusterName` default "openssi"; `prefix` default: guessed.
    public static func convert(text: String, file: String, clusterName: String? = nil, prefix: String? = nil) throws(SSIError) -> Conversion {
        let entries = try parse(text: text, file: file)
        var notes: [String] = []

        let name = clusterName ?? "openssi"
        if let why = clusterNameProblem(name) {
            throw SSIError("clustertab", "--name \(printable(name)): \(why)", hint: "1-32 letters, digits, - or _")
        }
        if clusterName == nil {
            notes.append("the cluster name \"openssi\" is a placeholder: choose one with --name (a gfs2 lock table must match it)")
        }

        let net: IPv4CIDR
        if let prefix {
            do { net = try IPv4CIDR(parsingNetwork: prefix) } catch {
                throw SSIError("clustertab", "--prefix: \(printable(error.description))", hint: error.ipv6Hint)
            }
            var problems: [String] = []
            for e in entries where !net.isHostAddress(e.address) {
                problems.append(ConfigProblem(file: file, line: e.line, field: "field 2 (IP address)",
                                              net.contains(e.address)
                                                ? "\(e.address) is the network or broadcast address of --prefix \(net)"
                                                : "\(e.address) is outside --prefix \(net)").description)
            }
            if !problems.isEmpty { throw SSIError("clustertab", problems.joined(separator: "\n")) }
        } else {
            net = guessPrefix(entries.map(\.address))
            notes.append("network.prefix \(net) is a guess from the addresses (clustertab has no netmask): check it, or pass --prefix")
        }

        let inits = entries.filter(\.initNode)
        let server = inits[0]
        for extra in inits.dropFirst() {
            notes.append("node \(extra.number) (clustertab line \(extra.line)) was also a potential init node: a cfs root has one init node (node \(server.number)), so node \(extra.number) is a member here; for a root that survives its server, use a gfs2 root on the shared disk")
        }

        // Names from the file and its path go into comments escaped: a
        // newline in them would end the comment and write config lines.
        var out = """
            # Cluster config imported from the OpenSSI clustertab \(printable(file))
            # by `ssi cluster config import-clustertab`. Check it with
            # `ssi cluster config check`; every key is described in
            # configs/README.md.

            """
        if !notes.isEmpty {
            out += "#\n# Check:\n"
            for n in notes { out += "#   - " + wrapComment(n, indent: "#     ") + "\n" }
        }
        out += """

            [cluster]
            name = \(quotedString(name))

            [network]
            prefix = \(quotedString(net.description))

            [root]
            # OpenSSI's CFS: the init node serves its root disk to the others.
            type = "cfs"
            server = \(server.number)
            export = "/"

            """
        for e in entries {
            let role = e.number == server.number && e.line == server.line ? "init" : (e.initNode ? "member" : "diskless")
            out += """

                [[node]]
                # clustertab line \(e.line)\(e.bootProtocol.map { ", boot protocol \(printable(bootProtocolName($0)))" } ?? "")\(e.bootDevice.map { ", boot device \(printable($0))" } ?? "")
                number = \(e.number)
                name = "node\(e.number)"
                mac = \(quotedString(e.mac.description))
                address = \(quotedString(e.address.description))
                role = "\(role)"

                """
        }

        let generatedName = "\(file) (converted)"
        let (config, problems) = ClusterConfig.check(text: out, file: generatedName)
        guard config != nil else {
            throw SSIError("clustertab", "the converted config is not valid:\n" + problems.map(\.description).joined(separator: "\n"))
        }
        return Conversion(text: out, notes: notes, entries: entries)
    }

    static func bootProtocolName(_ p: String) -> String {
        switch p.uppercased() {
        case "P", "PXE": return "PXE"
        case "E", "ETHERBOOT": return "Etherboot"
        default: return p
        }
    }

    /// The narrowest prefix, /24 or wider, in which every address is a host
    /// address.
    static func guessPrefix(_ addresses: [IPv4Address]) -> IPv4CIDR {
        var length = 24
        while length > 8 {
            let p = IPv4CIDR(unchecked: addresses[0], prefixLength: length).network
            if addresses.allSatisfy(p.isHostAddress) { return p }
            length -= 1
        }
        return IPv4CIDR(unchecked: addresses[0], prefixLength: 8).network
    }

    static func wrapComment(_ text: String, indent: String, width: Int = 72) -> String {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            if !current.isEmpty && current.count + 1 + word.count > width - indent.count {
                lines.append(current)
                current = ""
            }
            current += current.isEmpty ? String(word) : " " + word
        }
        if !current.isEmpty { lines.append(current) }
        return lines.joined(separator: "\n" + indent)
    }
}

