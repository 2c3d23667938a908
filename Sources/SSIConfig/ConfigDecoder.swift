public import SSICore

extension ClusterConfig {
    /// Reads and validates `path`. Throws SSIError (step "config") naming
    /// every problem, one per line of its message.
    public static func load(path: String) throws(SSIError) -> ClusterConfig {
        let text = try ConfigFiles.readText(path, what: "cluster config")
        return try parse(text: text, file: path)
    }

    /// Parses and validates `text`; `file` is the name the errors use.
    public static func parse(text: String, file: String) throws(SSIError) -> ClusterConfig {
        let (config, problems) = check(text: text, file: file)
        guard let config, problems.isEmpty else { throw SSIError.config(problems) }
        return config
    }

    /// Parses and validates without throwing: the config when it is valid,
    /// and every problem found, in line order. A TOML syntax error stops
    /// the check after the syntax pass (like a compiler: what follows
    /// would mostly be noise), but every syntax error is reported.
    public static func check(text: String, file: String) -> (config: ClusterConfig?, problems: [ConfigProblem]) {
        let (doc, errors) = TOML.parse(text)
        if !errors.isEmpty {
            let problems = errors.map { ConfigProblem(file: file, line: $0.line, field: "", $0.message, hint: $0.hint) }
            return (nil, problems)
        }
        var decoder = ConfigDecoder(file: file)
        let config = decoder.decode(doc)
        let problems = decoder.sortedProblems()
        return (problems.isEmpty ? config : nil, problems)
    }
}

/// Turns the TOML tree into a ClusterConfig, collecting every problem.
struct ConfigDecoder {
    let file: String
    private(set) var problems: [ConfigProblem] = []

    init(file: String) { self.file = file }

    /// Every section and its keys, in the order hints look them up.
    static let sections: [(name: String, keys: [String])] = [
        ("", ["cluster", "network", "quorum", "root", "private", "netboot", "identity", "tunnel", "fence", "node", "agent"]),
        ("cluster", ["name", "authkey", "crypto_cipher", "crypto_hash", "token_timeout_ms"]),
        ("network", ["prefix", "gateway", "interface", "mtu"]),
        ("quorum", ["expected_votes", "wait_for_all", "two_node", "boot_wait_seconds", "on_timeout"]),
        ("root", ["type", "server", "export", "device", "lock_table", "options", "wait_seconds", "cached", "cache_seconds", "cache_private"]),
        ("private", ["paths", "directory"]),
        ("netboot", ["enabled", "directory", "kernel_arguments"]),
        ("identity", ["known", "key", "device", "sealed", "enroll_wait_seconds"]),
        ("tunnel", ["prefix", "port"]),
        ("fence", ["agent", "args", "files", "post_join_delay", "secrets"]),
        ("node", ["number", "name", "mac", "address", "role", "votes", "swap", "private", "on_timeout", "fence_args", "identity"]),
        ("agent", ["name", "command", "files"]),
    ]

    static func keys(of section: String) -> [String] {
        sections.first { $0.name == section }?.keys ?? []
    }

    func sortedProblems() -> [ConfigProblem] {
        // Stable: problems on one line keep the order they were found in.
        problems.enumerated().sorted { a, b in
            a.element.line != b.element.line ? a.element.line < b.element.line : a.offset < b.offset
        }.map(\.element)
    }

    mutating func report(_ line: Int, _ field: String, _ message: String, hint: String? = nil) {
        problems.append(ConfigProblem(file: file, line: line, field: field, message, hint: hint))
    }

    // MARK: Generic readers

    /// Reports keys that are not in `section`'s list, with the closest
    /// known key, or the section a known key belongs in.
    mutating func checkKeys(_ t: TOMLTable, section: String, allowed: [String]? = nil) {
        let known = allowed ?? ConfigDecoder.keys(of: section)
        for e in t.entries where !known.contains(e.key) {
            let field = section.isEmpty ? e.key : "\(section).\(e.key)"
            if section.isEmpty {
                let isSection = e.value.table != nil || e.value.array?.first?.table != nil
                if !isSection, let home = ConfigDecoder.sections.first(where: { $0.name != "" && $0.keys.contains(e.key) })?.name {
                    report(e.line, field, "a key outside any section", hint: "\(e.key) belongs in \(home == "node" ? "[[node]]" : "[\(home)]")")
                    continue
                }
                let hint = closest(e.key, in: known).map { "did you mean [\($0 == "node" ? "[node]" : $0)]?" }
                    ?? "known sections: [cluster], [network], [quorum], [root], [[node]]"
                report(e.line, field, "unknown \(isSection ? "section" : "key")", hint: hint)
                continue
            }
            if let near = closest(e.key, in: known) {
                report(e.line, field, "unknown key", hint: "did you mean \(near)?")
            } else if let home = ConfigDecoder.sections.first(where: { $0.name != "" && $0.name != section && $0.keys.contains(e.key) })?.name {
                report(e.line, field, "unknown key in [\(section)]", hint: "\(e.key) belongs in \(home == "node" ? "[[node]]" : "[\(home)]")")
            } else {
                report(e.line, field, "unknown key", hint: "known keys: \(known.joined(separator: ", "))")
            }
        }
    }

    mutating func string(_ t: TOMLTable, _ key: String, _ section: String) -> (value: String, line: Int)? {
        guard let e = t.entry(key) else { return nil }
        guard let s = e.value.string else {
            report(e.line, "\(section).\(key)", "must be a string, not \(e.value.typeName)", hint: quoteHint(e.value))
            return nil
        }
        return (s, e.value.line)
    }

    mutating func integer(_ t: TOMLTable, _ key: String, _ section: String, range: ClosedRange<Int>) -> (value: Int, line: Int)? {
        guard let e = t.entry(key) else { return nil }
        guard let i = e.value.integer else {
            var hint: String? = nil
            if let s = e.value.string, Int(s) != nil { hint = "drop the quotes: \(key) = \(s)" }
            report(e.line, "\(section).\(key)", "must be an integer, not \(e.value.typeName)", hint: hint)
            return nil
        }
        guard i >= Int64(range.lowerBound) && i <= Int64(range.upperBound) else {
            report(e.value.line, "\(section).\(key)", "\(i) is out of range \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return (Int(i), e.value.line)
    }

    mutating func boolean(_ t: TOMLTable, _ key: String, _ section: String) -> (value: Bool, line: Int)? {
        guard let e = t.entry(key) else { return nil }
        guard let b = e.value.boolean else {
            var hint: String? = nil
            if let s = e.value.string, s == "true" || s == "false" { hint = "drop the quotes: \(key) = \(s)" }
            else if let i = e.value.integer, i == 0 || i == 1 { hint = "write \(key) = \(i == 1 ? "true" : "false")" }
            report(e.line, "\(section).\(key)", "must be true or false, not \(e.value.typeName)", hint: hint)
            return nil
        }
        return (b, e.value.line)
    }

    /// A string or an array of strings (when `single` is true), or an array
    /// of strings; each element with its line.
    mutating func strings(_ t: TOMLTable, _ key: String, _ section: String, single: Bool) -> [(value: String, line: Int)]? {
        guard let e = t.entry(key) else { return nil }
        if single, let s = e.value.string { return [(s, e.value.line)] }
        guard let a = e.value.array else {
            report(e.line, "\(section).\(key)", "must be \(single ? "a string or " : "")an array of strings, not \(e.value.typeName)")
            return nil
        }
        var out: [(String, Int)] = []
        for v in a {
            guard let s = v.string else {
                report(v.line, "\(section).\(key)", "must be an array of strings; found \(v.typeName)", hint: quoteHint(v))
                return nil
            }
            out.append((s, v.line))
        }
        return out
    }

    mutating func oneOf<T: RawRepresentable & CaseIterable>(_ t: TOMLTable, _ key: String, _ section: String, _ type: T.Type) -> (value: T, line: Int)? where T.RawValue == String {
        guard let (s, line) = string(t, key, section) else { return nil }
        guard let v = T(rawValue: s) else {
            let all = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            let near = closest(s, in: T.allCases.map(\.rawValue))
            report(line, "\(section).\(key)", "\"\(s)\" is not one of \(all)", hint: near.map { "did you mean \"\($0)\"?" })
            return nil
        }
        return (v, line)
    }

    func quoteHint(_ v: TOMLValue) -> String? {
        if let i = v.integer { return "quote it: \"\(i)\"" }
        if let b = v.boolean { return "quote it: \"\(b)\"" }
        return nil
    }

    // MARK: The document

    mutating func decode(_ doc: TOMLTable) -> ClusterConfig? {
        checkKeys(doc, section: "")

        let clusterTable = section(doc, "cluster", required: true)
        let networkTable = section(doc, "network", required: true)
        let quorumTable = section(doc, "quorum", required: false)
        let rootTable = section(doc, "root", required: true)

        let cluster = clusterTable.flatMap { decodeCluster($0) }
        let network = networkTable.flatMap { decodeNetwork($0) }

        var drafts: [NodeDraft] = []
        if let e = doc.entry("node") {
            if let elements = e.value.array, elements.allSatisfy({ $0.table != nil }) {
                for v in elements {
                    drafts.append(decodeNode(v.table!, network: network?.value))
                }
                if elements.isEmpty { report(e.line, "node", "no nodes", hint: "add a [[node]] section per node") }
            } else if e.value.table != nil {
                report(e.line, "node", "[node] is a single table; each node is an element of an array of tables", hint: "write [[node]] before each node")
            } else {
                report(e.line, "node", "must be [[node]] sections, not \(e.value.typeName)")
            }
        } else {
            report(0, "node", "no nodes", hint: "add a [[node]] section per node, with number, name, mac and address")
        }
        checkUniqueness(drafts)
        if let network { checkNetwork(network, drafts) }

        let root = rootTable.flatMap { decodeRoot($0, clusterName: cluster?.name, nodes: drafts) }
        let quorum = decodeQuorum(quorumTable, nodes: drafts, rootType: root?.root.type ?? rootTable?["type"]?.string)
        let agents = decodeAgents(doc)
        let privatePaths = decodePrivate(section(doc, "private", required: false))
        let netboot = decodeNetboot(section(doc, "netboot", required: false))
        let identity = decodeIdentity(section(doc, "identity", required: false))
        let tunnel = decodeTunnel(section(doc, "tunnel", required: false), network: network?.value, nodes: drafts)
        let fence = decodeFence(section(doc, "fence", required: false),
                                rootType: root?.root.type ?? rootTable?["type"]?.string, rootLine: rootTable?.line ?? 0)

        guard let cluster, let network, network.valid, let root, let quorum, let agents, let privatePaths, let netboot,
              let identity, let tunnel, let fence, !drafts.isEmpty, drafts.allSatisfy(\.valid) else { return nil }
        return ClusterConfig(file: file, cluster: cluster.value, network: network.value, quorum: quorum,
                             root: root.root, nodes: drafts.map(\.node), agents: agents,
                             privatePaths: privatePaths, netboot: netboot, identity: identity, tunnel: tunnel,
                             fence: fence)
    }

    // MARK: [[agent]]

    /// nil when an agent has a problem (reported).
    mutating func decodeAgents(_ doc: TOMLTable) -> [ClusterConfig.Agent]? {
        guard let e = doc.entry("agent") else { return [] }
        guard let elements = e.value.array, elements.allSatisfy({ $0.table != nil }) else {
            report(e.line, "agent", "must be [[agent]] sections, not \(e.value.typeName)", hint: "write [[agent]] before each agent")
            return nil
        }
        var agents: [ClusterConfig.Agent] = []
        var agentLines: [String: Int] = [:]
        var ok = true
        for v in elements {
            let t = v.table!
            checkKeys(t, section: "agent")
            var agent = ClusterConfig.Agent(name: "", command: [], files: [], line: v.line)
            if let (name, line) = string(t, "name", "agent") {
                if name.isEmpty || name.count > 32 || !(name.first!.isLetter && name.first!.isASCII)
                    || !name.allSatisfy({ ($0.isLetter || $0.isNumber || $0 == "-") && $0.isASCII }) {
                    report(line, "agent.name", "\(name) is not a name", hint: "letters, digits and '-', starting with a letter, at most 32")
                    ok = false
                } else if ClusterConfig.Agent.reserved.contains(name) {
                    report(line, "agent.name", "\(name) is ssi's own daemon", hint: "choose another name")
                    ok = false
                } else if let otherLine = agentLines[name] {
                    report(line, "agent.name", "\(name) is already the name of the agent at line \(otherLine)")
                    ok = false
                }
                agent.name = name
            } else {
                if t.entry("name") == nil { report(v.line, "agent.name", "missing", hint: "name = \"my-agent\"") }
                ok = false
            }
            if let command = strings(t, "command", "agent", single: false) {
                if command.isEmpty {
                    report(t.entry("command")!.line, "agent.command", "is empty", hint: "command = [\"/usr/sbin/daemon\", \"--foreground\"]")
                    ok = false
                } else if let problem = absolutePathProblem(command[0].value) {
                    report(command[0].line, "agent.command", "the program \(problem)", hint: "give the program's absolute path")
                    ok = false
                }
                agent.command = command.map(\.value)
            } else {
                if t.entry("command") == nil { report(v.line, "agent.command", "missing", hint: "command = [\"/usr/sbin/daemon\", \"--foreground\"]") }
                ok = false
            }
            if let files = strings(t, "files", "agent", single: false) {
                for f in files {
                    if let problem = absolutePathProblem(f.value) {
                        report(f.line, "agent.files", "\(f.value): \(problem)")
                        ok = false
                    }
                }
                agent.files = files.map(\.value)
            } else if t.entry("files") != nil {
                ok = false
            }
            agents.append(agent)
            // A dictionary, not a search of `agents`: quadratic in a file
            // of many thousand [[agent]] sections.
            if agentLines[agent.name] == nil { agentLines[agent.name] = agent.line }
        }
        return ok ? agents : nil
    }

    mutating func section(_ doc: TOMLTable, _ name: String, required: Bool) -> TOMLTable? {
        guard let e = doc.entry(name) else {
            if required { report(0, name, "missing [\(name)] section") }
            return nil
        }
        guard let t = e.value.table else {
            report(e.line, name, "must be a [\(name)] section, not \(e.value.typeName)")
            return nil
        }
        return t
    }

    // MARK: [cluster]

    struct ClusterDraft { var value: ClusterConfig.Cluster; var name: String { value.name } }

    mutating func decodeCluster(_ t: TOMLTable) -> ClusterDraft? {
        checkKeys(t, section: "cluster")
        var ok = true
        var name = ""
        if let (n, line) = string(t, "name", "cluster") {
            if let why = clusterNameProblem(n) {
                report(line, "cluster.name", why, hint: "1-\(ClusterConfig.Cluster.maxNameLength) letters, digits, - or _ (corosync's cluster_name, the lock table's cluster part)")
                ok = false
            }
            name = n
        } else {
            if t.entry("name") == nil { report(t.line, "cluster.name", "missing", hint: "name = \"mycluster\"") }
            ok = false
        }
        var authkey = ClusterConfig.Cluster.defaultAuthkey
        if let (a, line) = string(t, "authkey", "cluster") {
            if let why = absolutePathProblem(a) { report(line, "cluster.authkey", why); ok = false }
            authkey = a
        } else if t.entry("authkey") != nil { ok = false }
        var cipher = ClusterConfig.CryptoCipher.aes256
        var cipherLine = t.line
        if let (c, line) = oneOf(t, "crypto_cipher", "cluster", ClusterConfig.CryptoCipher.self) {
            cipher = c; cipherLine = line
        } else if t.entry("crypto_cipher") != nil { ok = false }
        var hash = ClusterConfig.CryptoHash.sha256
        if let (h, _) = oneOf(t, "crypto_hash", "cluster", ClusterConfig.CryptoHash.self) {
            hash = h
        } else if t.entry("crypto_hash") != nil { ok = false }
        if cipher != .none && hash == .none {
            report(cipherLine, "cluster.crypto_cipher", "\(cipher.rawValue) needs a crypto_hash (corosync refuses encryption without authentication)",
                   hint: "set crypto_hash = \"sha256\"")
            ok = false
        }
        var token = ClusterConfig.Cluster.defaultTokenTimeoutMs
        if let (v, _) = integer(t, "token_timeout_ms", "cluster", range: 100...600_000) {
            token = v
        } else if t.entry("token_timeout_ms") != nil { ok = false }
        guard ok else { return nil }
        return ClusterDraft(value: .init(name: name, authkey: authkey, cryptoCipher: cipher, cryptoHash: hash, tokenTimeoutMs: token))
    }

    // MARK: [network]

    /// The network as far as it is valid: with a good prefix, the node
    /// addresses are checked against it even if another key is wrong.
    struct NetworkDraft { var value: ClusterConfig.Network; var prefixLine: Int; var gatewayLine: Int; var valid: Bool }

    mutating func decodeNetwork(_ t: TOMLTable) -> NetworkDraft? {
        checkKeys(t, section: "network")
        var ok = true
        var prefix: IPv4CIDR? = nil
        var prefixLine = t.line
        if let (p, line) = string(t, "prefix", "network") {
            prefixLine = line
            do {
                let parsed = try IPv4CIDR(parsingNetwork: p)
                if parsed.prefixLength > 30 || parsed.prefixLength < 8 {
                    report(line, "network.prefix", "/\(parsed.prefixLength) is not a usable cluster network", hint: "use a prefix length between /8 and /30")
                    ok = false
                }
                prefix = parsed
            } catch {
                report(line, "network.prefix", error.description, hint: error.ipv6Hint)
                ok = false
            }
        } else if t.entry("prefix") == nil {
            report(t.line, "network.prefix", "missing", hint: "prefix = \"10.77.0.0/24\"")
            ok = false
        } else { ok = false }
        var gateway: IPv4Address? = nil
        var gatewayLine = 0
        if let (g, line) = string(t, "gateway", "network") {
            gatewayLine = line
            do {
                let a = try IPv4Address(parsing: g)
                if let prefix, !prefix.isHostAddress(a) {
                    report(line, "network.gateway", prefix.contains(a)
                           ? "\(a) is the network or broadcast address of \(prefix)"
                           : "\(a) is not in network.prefix \(prefix) (line \(prefixLine))")
                    ok = false
                }
                gateway = a
            } catch {
                report(line, "network.gateway", error.description, hint: error.ipv6Hint)
                ok = false
            }
        } else if t.entry("gateway") != nil { ok = false }
        var interface: String? = nil
        if let (n, line) = string(t, "interface", "network") {
            if let why = interfaceNameProblem(n) { report(line, "network.interface", why); ok = false }
            interface = n
        } else if t.entry("interface") != nil { ok = false }
        var mtu: Int? = nil
        if let (m, _) = integer(t, "mtu", "network", range: ClusterConfig.Network.mtuRange) {
            mtu = m
        } else if t.entry("mtu") != nil { ok = false }
        guard let prefix else { return nil }
        return NetworkDraft(value: .init(prefix: prefix, gateway: gateway, interface: interface, mtu: mtu),
                            prefixLine: prefixLine, gatewayLine: gatewayLine, valid: ok)
    }

    // MARK: [[node]]

    struct NodeDraft {
        var node: ClusterConfig.Node
        var numberLine: Int
        var nameLine: Int
        var macLines: [Int]
        var addressLine: Int
        var roleLine: Int
        var onTimeoutLine: Int
        /// Every field was valid; cross-checks still look at the fields
        /// that were, so one typo does not hide (or fake) other problems.
        var valid: Bool
        var hasNumber: Bool
        var hasAddress: Bool
    }

    mutating func decodeNode(_ t: TOMLTable, network: ClusterConfig.Network?) -> NodeDraft {
        checkKeys(t, section: "node")
        var ok = true
        var number = 0
        var numberLine = t.line
        if let (n, line) = integer(t, "number", "node", range: 1...Int(Int32.max)) {
            number = n; numberLine = line
        } else {
            if t.entry("number") == nil { report(t.line, "node.number", "missing", hint: "every [[node]] needs number = N (corosync's node id, 1 or more)") }
            ok = false
        }
        var name = number > 0 ? "node\(number)" : "node"
        var nameLine = t.line
        if let (n, line) = string(t, "name", "node") {
            nameLine = line
            if let why = hostNameProblem(n) {
                report(line, "node.name", why, hint: "a host name: 1-63 letters, digits or -, not starting or ending with -")
                ok = false
            }
            name = n
        } else if t.entry("name") != nil { ok = false }

        var macs: [MACAddress] = []
        var macLines: [Int] = []
        // Where each MAC was first listed: a search of `macs` was quadratic
        // in a long list.
        var firstLine: [MACAddress: Int] = [:]
        if let list = strings(t, "mac", "node", single: true) {
            if list.isEmpty, let e = t.entry("mac") {
                report(e.line, "node.mac", "an empty list", hint: "give the node's MAC, or remove the key")
                ok = false
            }
            for (s, line) in list {
                do {
                    let m = try MACAddress(parsing: s)
                    if m.isMulticast || m.isZero {
                        report(line, "node.mac", "\(m) is a \(m.isZero ? "null" : "multicast") address, not a network card's")
                        ok = false
                    } else if let first = firstLine[m] {
                        report(line, "node.mac", "\(m) is listed twice for this node (line \(first))")
                        ok = false
                    } else {
                        macs.append(m)
                        macLines.append(line)
                        firstLine[m] = line
                    }
                } catch {
                    report(line, "node.mac", error.description)
                    ok = false
                }
            }
        } else if t.entry("mac") != nil { ok = false }

        var address = IPv4Address(0)
        var addressLine = t.line
        var hasAddress = false
        if let (a, line) = string(t, "address", "node") {
            addressLine = line
            do {
                address = try IPv4Address(parsing: a)
                hasAddress = true
            } catch {
                report(line, "node.address", error.description, hint: error.ipv6Hint)
                ok = false
            }
        } else {
            if t.entry("address") == nil {
                report(t.line, "node.address", "missing", hint: "the node's address on the cluster network, e.g. address = \"10.77.0.\(max(number, 1))\"")
            }
            ok = false
        }

        var role = ClusterConfig.Role.member
        var roleLine = t.line
        if let (r, line) = oneOf(t, "role", "node", ClusterConfig.Role.self) {
            role = r; roleLine = line
        } else if t.entry("role") != nil { ok = false }

        var votes = 1
        if let (v, _) = integer(t, "votes", "node", range: 0...255) { votes = v } else if t.entry("votes") != nil { ok = false }

        var swap: String? = nil
        if let (s, line) = string(t, "swap", "node") {
            if let why = deviceProblem(s) { report(line, "node.swap", why); ok = false }
            swap = s
        } else if t.entry("swap") != nil { ok = false }

        var privatePaths: [String] = []
        if let list = strings(t, "private", "node", single: false) {
            if let paths = privatePathList(list, field: "node.private") { privatePaths = paths } else { ok = false }
        } else if t.entry("private") != nil { ok = false }

        var onTimeout: ClusterConfig.OnTimeout? = nil
        var onTimeoutLine = 0
        if let (o, line) = oneOf(t, "on_timeout", "node", ClusterConfig.OnTimeout.self) {
            onTimeout = o; onTimeoutLine = line
        } else if t.entry("on_timeout") != nil { ok = false }

        let fenceArguments = fenceArguments(t)
        if fenceArguments == nil { ok = false }

        // This node's key source, over [identity] device: a cluster may
        // mix nodes with a TPM and nodes with a key medium.
        var identity: String? = nil
        if let (d, line) = string(t, "identity", "node") {
            if let why = keySourceProblem(d) {
                report(line, "node.identity", why)
                ok = false
            }
            identity = d
        } else if t.entry("identity") != nil { ok = false }

        if macs.isEmpty && t.entry("mac") == nil && network != nil && network?.interface == nil {
            report(t.line, "node.mac", "node \(number > 0 ? String(number) : "") has no mac and [network] names no interface: ssi-init could not tell which interface to configure",
                   hint: "add mac = \"...\" (also lets ssi-init find the node without ssi.node=), or set interface in [network]")
            ok = false
        }
        return NodeDraft(node: .init(number: number, name: name, macs: macs, address: address, role: role, votes: votes,
                                     swap: swap, privatePaths: privatePaths, onTimeout: onTimeout,
                                     fenceArguments: fenceArguments ?? [], identity: identity, line: t.line),
                         numberLine: numberLine, nameLine: nameLine, macLines: macLines, addressLine: addressLine,
                         roleLine: roleLine, onTimeoutLine: onTimeoutLine,
                         valid: ok, hasNumber: number > 0, hasAddress: hasAddress)
    }

    func describe(_ d: NodeDraft) -> String {
        "node \(d.node.number) (\(d.node.name), line \(d.node.line))"
    }

    /// Duplicate numbers, names, MACs and addresses, each reported at the
    /// later occurrence, naming the earlier one.
    mutating func checkUniqueness(_ drafts: [NodeDraft]) {
        var byNumber: [Int: NodeDraft] = [:]
        var byName: [String: NodeDraft] = [:]
        var byMAC: [MACAddress: (NodeDraft, Int)] = [:]
        var byAddress: [IPv4Address: NodeDraft] = [:]
        for d in drafts {
            let n = d.node
            if d.hasNumber {
                if let other = byNumber[n.number] {
                    report(d.numberLine, "node.number", "node number \(n.number) is used twice: also \(describe(other))", hint: "give each node its own number")
                } else { byNumber[n.number] = d }
            }
            if let other = byName[n.name.lowercased()] {
                report(d.nameLine, "node.name", "\(n.name) is also the name of \(describe(other))", hint: "give each node its own name")
            } else { byName[n.name.lowercased()] = d }
            for (m, line) in zip(n.macs, d.macLines) {
                if let (other, otherLine) = byMAC[m] {
                    report(line, "node.mac", "\(m) is on two nodes: node \(n.number) (\(n.name)) and node \(other.node.number) (\(other.node.name), line \(otherLine))",
                           hint: "a MAC identifies one node at boot")
                } else { byMAC[m] = (d, line) }
            }
            if d.hasAddress {
                if let other = byAddress[n.address] {
                    report(d.addressLine, "node.address", "\(n.address) is also the address of \(describe(other))", hint: "give each node its own address")
                } else { byAddress[n.address] = d }
            }
        }
    }

    mutating func checkNetwork(_ network: NetworkDraft, _ drafts: [NodeDraft]) {
        let prefix = network.value.prefix
        for d in drafts where d.hasAddress {
            let a = d.node.address
            if !prefix.contains(a) {
                report(d.addressLine, "node.address", "\(a) is outside the cluster network \(prefix) (network.prefix, line \(network.prefixLine))",
                       hint: "use an address in \(prefix), or widen the prefix")
            } else if !prefix.isHostAddress(a) {
                report(d.addressLine, "node.address", "\(a) is the \(a == prefix.address ? "network" : "broadcast") address of \(prefix), not a host address")
            }
            if let g = network.value.gateway, g == a {
                report(d.addressLine, "node.address", "\(a) is also network.gateway (line \(network.gatewayLine))")
            }
        }
    }

    // MARK: [root]

    struct RootDraft { var root: ClusterConfig.Root }

    mutating func decodeRoot(_ t: TOMLTable, clusterName: String?, nodes: [NodeDraft]) -> RootDraft? {
        guard let (type, typeLine) = string(t, "type", "root") else {
            if t.entry("type") == nil {
                report(t.line, "root.type", "missing", hint: "type = \"cfs\" (the init node serves its disk) or \"gfs2\" (one shared disk)")
            }
            checkKeys(t, section: "root")
            return nil
        }
        let initNodes = nodes.filter { $0.node.role == .initNode }
        switch type {
        case "cfs":
            checkKeys(t, section: "root", allowed: ["type", "server", "export", "device", "options", "lock_table", "wait_seconds",
                                                    "cached", "cache_seconds", "cache_private"])
            if let e = t.entry("lock_table") {
                report(e.line, "root.lock_table", "only for type = \"gfs2\"", hint: "remove it: a cfs root has no lock table")
            }
            var ok = true
            var server: Int? = nil
            var serverLine = typeLine
            if let (s, line) = integer(t, "server", "root", range: 1...Int(Int32.max)) {
                server = s; serverLine = line
            } else if t.entry("server") != nil { ok = false }

            if initNodes.isEmpty {
                let which = server.map { "node \($0)" } ?? "the node that owns the root disk"
                report(typeLine, "root.type", "a cfs root needs one node with role = \"init\" (it owns the disk and serves it); none has it",
                       hint: "set role = \"init\" on \(which)")
                ok = false
            }
            for extra in initNodes.dropFirst() {
                report(extra.roleLine, "node.role", "node \(extra.node.number) (\(extra.node.name)) is a second init node; a cfs root has exactly one (\(describe(initNodes[0])))",
                       hint: "make one of them role = \"member\"")
                ok = false
            }
            if let s = server {
                if let n = nodes.first(where: { $0.node.number == s }) {
                    // With no init node at all, the error above already
                    // says which node to make one.
                    if n.node.role != .initNode && !initNodes.isEmpty {
                        let fix = initNodes.count == 1
                            ? "set server = \(initNodes[0].node.number) (the init node, \(initNodes[0].node.name)), or make node \(s) the init node"
                            : "set role = \"init\" on node \(s) (line \(n.node.line))"
                        report(serverLine, "root.server", "node \(s) (\(n.node.name)) is not the init node; the server of a cfs root must be", hint: fix)
                        ok = false
                    }
                } else if !nodes.isEmpty {
                    report(serverLine, "root.server", "no node has number \(s)",
                           hint: "nodes: " + nodes.map { String($0.node.number) }.joined(separator: ", "))
                    ok = false
                }
            }
            var export = "/"
            if let (x, line) = string(t, "export", "root") {
                if let why = absolutePathProblem(x) { report(line, "root.export", why); ok = false }
                export = x
            } else if t.entry("export") != nil { ok = false }
            var device: String? = nil
            if let (d, line) = string(t, "device", "root") {
                if let why = deviceProblem(d) { report(line, "root.device", why); ok = false }
                device = d
            } else if t.entry("device") != nil { ok = false }
            let options = rootOptions(t, &ok)
            var wait = ClusterConfig.CFS.defaultWaitSeconds
            if let (w, _) = integer(t, "wait_seconds", "root", range: 1...86400) { wait = w } else if t.entry("wait_seconds") != nil { ok = false }
            let cached = cachedTrees(t, &ok)
            var cacheSeconds = ClusterConfig.CFS.defaultCacheSeconds
            if let (c, _) = integer(t, "cache_seconds", "root", range: ClusterConfig.CFS.cacheSecondsRange) {
                cacheSeconds = c
            } else if t.entry("cache_seconds") != nil { ok = false }
            var cachePrivate = true
            if let (b, _) = boolean(t, "cache_private", "root") { cachePrivate = b } else if t.entry("cache_private") != nil { ok = false }
            guard ok, let serverNumber = server ?? initNodes.first?.node.number else { return nil }
            return RootDraft(root: .cfs(.init(server: serverNumber, export: export, device: device, options: options,
                                              waitSeconds: wait, cached: cached, cacheSeconds: cacheSeconds, cachePrivate: cachePrivate)))

        case "gfs2":
            checkKeys(t, section: "root", allowed: ["type", "device", "lock_table", "options", "server", "export", "wait_seconds",
                                                    "cached", "cache_seconds", "cache_private"])
            for key in ["server", "export", "wait_seconds", "cached", "cache_seconds", "cache_private"] {
                if let e = t.entry(key) {
                    report(e.line, "root.\(key)", "only for type = \"cfs\"", hint: "remove it: every node mounts the gfs2 device itself")
                }
            }
            var ok = true
            var device = ""
            if let (d, line) = string(t, "device", "root") {
                if let why = deviceProblem(d) { report(line, "root.device", why); ok = false }
                device = d
            } else {
                if t.entry("device") == nil { report(t.line, "root.device", "missing", hint: "the shared disk: device = \"UUID=...\" or \"LABEL=...\"") }
                ok = false
            }
            var lockTable = ""
            if let (l, line) = string(t, "lock_table", "root") {
                if let (why, hint) = lockTableProblem(l, clusterName: clusterName) {
                    report(line, "root.lock_table", why, hint: hint); ok = false
                }
                lockTable = l
            } else {
                if t.entry("lock_table") == nil {
                    report(t.line, "root.lock_table", "missing", hint: "lock_table = \"\(clusterName ?? "CLUSTER"):root\" (as given to mkfs.gfs2 -t)")
                }
                ok = false
            }
            for extra in initNodes.dropFirst() {
                report(extra.roleLine, "node.role", "node \(extra.node.number) (\(extra.node.name)) is a second init node; a gfs2 cluster has at most one (\(describe(initNodes[0])))",
                       hint: "make it role = \"member\"")
                ok = false
            }
            let options = rootOptions(t, &ok)
            guard ok else { return nil }
            return RootDraft(root: .gfs2(.init(device: device, lockTable: lockTable, options: options)))

        default:
            checkKeys(t, section: "root")
            let near = closest(type, in: ["cfs", "gfs2"])
            report(typeLine, "root.type", "\"\(type)\" is not \"cfs\" or \"gfs2\"",
                   hint: near.map { "did you mean \"\($0)\"?" } ?? (type == "gfs" ? "did you mean \"gfs2\"?" : nil))
            return nil
        }
    }

    /// `[root] cached`: absolute, normalized trees below the root, none
    /// inside another; `[]` turns the cached mounts off.
    mutating func cachedTrees(_ t: TOMLTable, _ ok: inout Bool) -> [String] {
        guard let list = strings(t, "cached", "root", single: false) else {
            if t.entry("cached") != nil { ok = false }
            return ClusterConfig.CFS.defaultCached
        }
        let limit = 16
        if list.count > limit {
            report(list[limit].line, "root.cached", "more than \(limit) trees", hint: "cache the few trees a boot reads most, such as /usr")
            ok = false
            return []
        }
        var trees: [String] = []
        for (p, line) in list {
            if let why = absolutePathProblem(p) {
                report(line, "root.cached", why, hint: "an absolute path on the shared root, such as \"/usr\""); ok = false
            } else if p == "/" {
                report(line, "root.cached", "\"/\" is the root itself; its mount stays coherent",
                       hint: "name the trees to cache, such as \"/usr\"; [root] options changes the root's own mount"); ok = false
            } else if let outer = trees.first(where: { p == $0 || p.hasPrefix($0 + "/") || $0.hasPrefix(p + "/") }) {
                report(line, "root.cached", p == outer ? "\"\(p)\" is listed twice" : "\"\(p)\" and \"\(outer)\" overlap",
                       hint: "list each tree once; a tree's mount covers what is below it"); ok = false
            } else {
                trees.append(p)
            }
        }
        return trees
    }

    mutating func rootOptions(_ t: TOMLTable, _ ok: inout Bool) -> String? {
        guard let (o, line) = string(t, "options", "root") else {
            if t.entry("options") != nil { ok = false }
            return nil
        }
        if o.isEmpty || o.contains(where: { $0 == " " || $0 == "\t" }) || o.hasPrefix(",") || o.hasSuffix(",") {
            report(line, "root.options", "\"\(o)\" is not a mount option list", hint: "comma separated, no spaces: \"noatime,nodiratime\"")
            ok = false
        }
        return o
    }

    // MARK: [quorum]

    mutating func decodeQuorum(_ t: TOMLTable?, nodes: [NodeDraft], rootType: String?) -> ClusterConfig.Quorum? {
        let t = t ?? TOMLTable(line: 0)
        checkKeys(t, section: "quorum")
        var ok = true
        let totalVotes = nodes.reduce(0) { $0 + $1.node.votes }
        if !nodes.isEmpty && totalVotes == 0 {
            report(nodes[0].node.line, "node.votes", "no node has a vote: the cluster could never be quorate", hint: "leave votes at its default, 1")
            ok = false
        }

        var twoNode = false
        var twoNodeLine = 0
        if let (b, line) = boolean(t, "two_node", "quorum") {
            twoNode = b; twoNodeLine = line
        } else if t.entry("two_node") != nil { ok = false }
        if twoNode && !nodes.isEmpty && (nodes.count != 2 || totalVotes != 2) {
            report(twoNodeLine, "quorum.two_node", "two_node is for a cluster of exactly 2 nodes with one vote each; this one has \(nodes.count) node\(nodes.count == 1 ? "" : "s") and \(totalVotes) vote\(totalVotes == 1 ? "" : "s")",
                   hint: "remove two_node")
            ok = false
        }

        var expected = totalVotes
        if let (e, line) = integer(t, "expected_votes", "quorum", range: 1...65535) {
            expected = e
            if twoNode {
                if e != 2 {
                    report(line, "quorum.expected_votes", "must be 2 with two_node (line \(twoNodeLine))", hint: "remove expected_votes")
                    ok = false
                }
            } else if totalVotes > 0 {
                let needed = e / 2 + 1
                if needed > totalVotes {
                    report(line, "quorum.expected_votes", "\(e) expected votes make quorum \(needed) votes, but the nodes have only \(totalVotes): the cluster could never be quorate",
                           hint: "remove expected_votes (the default is the sum of the votes, \(totalVotes))")
                    ok = false
                } else if 2 * needed <= totalVotes {
                    let minSafe = (1...totalVotes).first { 2 * ($0 / 2 + 1) > totalVotes } ?? totalVotes
                    report(line, "quorum.expected_votes", "\(e) is smaller than a majority: quorum would be \(needed) of \(totalVotes) votes, so two partitions could both be quorate (split brain)",
                           hint: "use at least \(minSafe), or remove it (default \(totalVotes))")
                    ok = false
                }
            }
        } else if t.entry("expected_votes") != nil { ok = false }

        let defaultWait = ClusterConfig.defaultWaitForAll(rootType: rootType ?? "", twoNode: twoNode)
        var waitForAll = defaultWait
        if let (b, line) = boolean(t, "wait_for_all", "quorum") {
            waitForAll = b
            if twoNode && !b {
                report(line, "quorum.wait_for_all", "false with two_node lets each node become quorate alone at boot (split brain)",
                       hint: "remove wait_for_all (two_node turns it on)")
                ok = false
            }
        } else if t.entry("wait_for_all") != nil { ok = false }

        var bootWait = ClusterConfig.Quorum.defaultBootWaitSeconds
        if let (v, _) = integer(t, "boot_wait_seconds", "quorum", range: 0...86_400) {
            bootWait = v
        } else if t.entry("boot_wait_seconds") != nil { ok = false }

        var onTimeout: ClusterConfig.OnTimeout? = nil
        if let (o, line) = oneOf(t, "on_timeout", "quorum", ClusterConfig.OnTimeout.self) {
            onTimeout = o
            if o == .continue && rootType == "gfs2" {
                report(line, "quorum.on_timeout", "\"continue\" is refused with a gfs2 root: a node must never mount the shared disk without quorum (from a partitioned minority)",
                       hint: "remove it (gfs2 default: stop)")
                ok = false
            }
        } else if t.entry("on_timeout") != nil { ok = false }
        if rootType == "gfs2" {
            for d in nodes where d.node.onTimeout == .continue {
                report(d.onTimeoutLine, "node.on_timeout", "\"continue\" is refused with a gfs2 root: node \(d.node.number) must never mount the shared disk without quorum",
                       hint: "remove it")
                ok = false
            }
        }
        guard ok else { return nil }
        return ClusterConfig.Quorum(expectedVotes: twoNode ? 2 : expected, waitForAll: waitForAll, twoNode: twoNode,
                                    bootWaitSeconds: bootWait, onTimeout: onTimeout)
    }
}

// MARK: - Field rules

func clusterNameProblem(_ s: String) -> String? {
    if s.isEmpty { return "empty" }
    if s.count > ClusterConfig.Cluster.maxNameLength {
        return "\"\(s)\" is \(s.count) characters; at most \(ClusterConfig.Cluster.maxNameLength)"
    }
    if let bad = s.first(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_")) }) {
        return "\"\(s)\" contains \"\(bad)\""
    }
    return nil
}

func hostNameProblem(_ s: String) -> String? {
    if s.isEmpty { return "empty" }
    if s.count > 63 { return "\"\(s)\" is \(s.count) characters; a host name label has at most 63" }
    if s.contains(".") { return "\"\(s)\" has a dot; use the short host name" }
    if let bad = s.first(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-")) }) {
        return "\"\(s)\" contains \"\(bad)\""
    }
    if s.hasPrefix("-") || s.hasSuffix("-") { return "\"\(s)\" starts or ends with -" }
    return nil
}

func interfaceNameProblem(_ s: String) -> String? {
    if s.isEmpty { return "empty" }
    if s.utf8.count > 15 { return "\"\(s)\" is longer than 15 bytes (IFNAMSIZ)" }
    if s == "." || s == ".." || s.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
        return "\"\(s)\" is not an interface name"
    }
    return nil
}

/// Absolute, normalized: no empty, "." or ".." components, no trailing /.
/// Where a node's key comes from ([identity] device, a node's identity):
/// "tpm" (its TPM derives it) or a key medium's absolute path.
func keySourceProblem(_ p: String) -> String? {
    p == "tpm" ? nil : absolutePathProblem(p).map { "\($0), or \"tpm\"" }
}

func absolutePathProblem(_ p: String) -> String? {
    guard p.hasPrefix("/") else { return "\"\(p)\" is not an absolute path" }
    if p == "/" { return nil }
    if p.hasSuffix("/") { return "\"\(p)\" ends with /; write \(p.dropLast())" }
    // Scalars, not Characters: "\r\n" is one Character, equal to neither.
    if p.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "the path contains a control character" }
    for c in p.dropFirst().split(separator: "/", omittingEmptySubsequences: false) where c.isEmpty || c == "." || c == ".." {
        return "\"\(p)\" is not a normalized path (empty, . or .. component)"
    }
    return nil
}

/// A block device as ssi-init finds it: a tag libblkid resolves, or a path.
func deviceProblem(_ s: String) -> String? {
    for tag in ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="] where s.hasPrefix(tag) {
        return s.count > tag.count ? nil : "\(tag) needs a value"
    }
    if s.hasPrefix("/dev/") && s.count > 5 { return nil }
    let upper = s.uppercased()
    if let tag = ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="].first(where: { upper.hasPrefix($0) }) {
        return "\"\(s)\": write the tag in capitals, \(tag)\(s.dropFirst(tag.count))"
    }
    return "\"\(s)\" is not a device: want UUID=..., LABEL=..., PARTUUID=..., PARTLABEL=... or a /dev/ path"
}

/// CLUSTER:FSNAME, as mkfs.gfs2 -t checks it (cluster part at most 32,
/// file system part at most 30 letters, digits, - or _), and the cluster
/// part must be the cluster name: dlm joins the lockspace under corosync's
/// cluster_name and refuses a mount whose lock table names another.
func lockTableProblem(_ l: String, clusterName: String?) -> (String, String?)? {
    let parts = l.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2 else {
        return ("\"\(l)\" is not CLUSTER:FSNAME", "e.g. \"\(clusterName ?? "mycluster"):root\", as given to mkfs.gfs2 -t")
    }
    let cluster = String(parts[0]), fs = String(parts[1])
    if let why = clusterNameProblem(cluster) { return ("cluster part: \(why)", nil) }
    if fs.isEmpty { return ("the file system name after : is empty", nil) }
    if fs.count > 30 { return ("file system name \"\(fs)\" is \(fs.count) characters; at most 30", nil) }
    if let bad = fs.first(where: { !($0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_")) }) {
        return ("file system name \"\(fs)\" contains \"\(bad)\"", "letters, digits, - or _")
    }
    if let clusterName, cluster != clusterName {
        return ("the lock table's cluster \"\(cluster)\" is not the cluster name \"\(clusterName)\": dlm would refuse the mount",
                "use lock_table = \"\(clusterName):\(fs)\" (tunegfs2 -o locktable=\(clusterName):\(fs) DEVICE changes it on the disk)")
    }
    return nil
}

// MARK: - Suggestions

/// The known word nearest `word` by edit distance, when near enough to
/// be a typo.
func closest(_ word: String, in known: [String]) -> String? {
    // The edit distance costs the product of the lengths: a key of a
    // megabyte, repeated, made the check take minutes. No typo of a known
    // word is that long.
    guard word.utf8.count <= 64 else { return nil }
    let w = word.lowercased()
    // Nearest first; on a tie, the one sharing the longest prefix ("gfs"
    // is "gfs2" rather than "cfs").
    func sharedPrefix(_ k: String) -> Int { zip(w, k.lowercased()).prefix(while: { $0 == $1 }).count }
    var best: (String, Int)? = nil
    for k in known {
        let d = editDistance(w, k.lowercased())
        if best == nil || d < best!.1 || (d == best!.1 && sharedPrefix(k) > sharedPrefix(best!.0)) { best = (k, d) }
    }
    guard let (k, d) = best else { return nil }
    let limit = max(1, min(3, w.count / 3))
    if d <= limit { return k }
    // "wait_for_all" vs "waitforall", "expected" vs "expected_votes"
    let strip: (String) -> String = { $0.lowercased().filter { $0 != "_" && $0 != "-" } }
    if let k = known.first(where: { strip($0) == strip(word) }) { return k }
    if w.count >= 4, let k = known.first(where: { $0.hasPrefix(w) || w.hasPrefix($0) && $0.count >= 4 }) { return k }
    return nil
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    // Optimal string alignment: insertions, deletions, substitutions and
    // transpositions of neighbours each count one.
    var before = [Int](repeating: 0, count: b.count + 1)
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = min(cur[j], before[j - 2] + 1)
            }
        }
        (before, prev, cur) = (prev, cur, before)
    }
    return prev[b.count]
}
