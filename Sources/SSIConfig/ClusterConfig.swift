public import SSICore

/// The cluster configuration, `/etc/ssi/cluster.conf` (TOML, see
/// configs/README.md for every key).
///
/// Defaults that depend on the root type:
///
/// | key                      | root `gfs2`        | root `cfs`                               |
/// |--------------------------|--------------------|------------------------------------------|
/// | `quorum.wait_for_all`    | `true`             | `false` (`true` when `two_node`)         |
/// | `quorum.on_timeout`      | `stop` on every node | `continue` on the init node, `stop` on the others |
///
/// Why: with GFS2 every node mounts the shared disk, so no node may mount it
/// from a partitioned minority; quorum comes first and the cluster waits
/// for all nodes once (`wait_for_all`). `continue` is refused with gfs2.
/// With CFS only the init node touches the disk, and the diskless nodes
/// boot from it, so the init node must be able to come up alone; the other
/// nodes never go on without quorum.
///
/// Other defaults: `cluster.authkey` /etc/ssi/authkey, `crypto_cipher`
/// aes256, `crypto_hash` sha256, `token_timeout_ms` 3000,
/// `quorum.expected_votes` the sum of the nodes' votes,
/// `quorum.two_node` false, `quorum.boot_wait_seconds` 60, `root.export`
/// "/", `root.server` the init node, `root.cached` ["/usr"],
/// `root.cache_seconds` 10, `root.cache_private` true, `node.name` "node<number>",
/// `node.role` member, `node.votes` 1.
public struct ClusterConfig: Sendable, Equatable {
    /// Where the config was read from, as given (for messages).
    public var file: String
    public var cluster: Cluster
    public var network: Network
    public var quorum: Quorum
    public var root: Root
    /// In file order.
    public var nodes: [Node]
    /// Extra cluster agents ssi-init starts before the hand-off, after
    /// corosync and the membership agent, in file order.
    public var agents: [Agent]
    /// The node-private paths on a shared root.
    public var privatePaths: PrivatePaths
    /// What the CFS init node serves to network-booting nodes.
    public var netboot: Netboot
    /// Where the nodes' identities are kept (`[identity]`).
    public var identity: Identity
    /// The encrypted cluster network (`[tunnel]`); nil: the cluster
    /// network itself carries the cluster's traffic.
    public var tunnel: Tunnel?
    /// How dlm_controld cuts a failed node off the shared disk (required
    /// with a gfs2 root).
    public var fence: Fence?

    public static let defaultPath = "/etc/ssi/cluster.conf"

    public init(file: String, cluster: Cluster, network: Network, quorum: Quorum, root: Root, nodes: [Node],
                agents: [Agent] = [], privatePaths: PrivatePaths = PrivatePaths(), netboot: Netboot = Netboot(),
                identity: Identity = Identity(), tunnel: Tunnel? = nil, fence: Fence? = nil) {
        self.file = file
        self.cluster = cluster
        self.network = network
        self.quorum = quorum
        self.root = root
        self.nodes = nodes
        self.agents = agents
        self.privatePaths = privatePaths
        self.netboot = netboot
        self.identity = identity
        self.tunnel = tunnel
        self.fence = fence
    }

    /// `[private]`: the paths of a shared root that each node keeps for
    /// itself (OpenSSI's context-dependent links). Node N sees
    /// `DIRECTORY/NAME/PATH` of the shared root at `PATH`, bind-mounted by
    /// ssi-init before the hand-off; a node's first boot seeds its copy
    /// from the shared path. `/etc/hostname` holds the node's name and
    /// `/etc/machine-id` a machine id made once per node.
    public struct PrivatePaths: Sendable, Equatable {
        public var paths: [String]
        public var directory: String

        public static let defaultPaths = ["/etc/hostname", "/etc/machine-id", "/var", "/tmp"]
        public static let defaultDirectory = "/cluster/nodes"

        public init(paths: [String] = PrivatePaths.defaultPaths, directory: String = PrivatePaths.defaultDirectory) {
            self.paths = paths
            self.directory = directory
        }
    }

    /// `[netboot]`: DHCP and TFTP on the CFS init node for the nodes that
    /// boot from the network (qemu's and real PXE ROMs, iPXE).
    public struct Netboot: Sendable, Equatable {
        /// Serve DHCP and TFTP from the init node (dnsmasq, on the cluster
        /// interface only).
        public var enabled: Bool
        /// Where `ssi-mkinitrd --netboot` writes the kernel, the image and
        /// the boot script, on the init node's root; the TFTP root.
        public var directory: String
        /// The kernel command line of network-booted nodes.
        public var kernelArguments: String

        public static let defaultDirectory = "/srv/ssi/netboot"
        public static let defaultKernelArguments = "console=tty0 console=ttyS0,115200n8"

        public init(enabled: Bool = true, directory: String = Netboot.defaultDirectory,
                    kernelArguments: String = Netboot.defaultKernelArguments) {
            self.enabled = enabled
            self.directory = directory
            self.kernelArguments = kernelArguments
        }
    }

    /// `[identity]`: how a node proves who it is before the init node
    /// gives it the cluster key (DESIGN-NOTES.md, "Node identity").
    public struct Identity: Sendable, Equatable {
        /// The enrolled nodes' public identities, one `NAME ed25519:KEY`
        /// line each, kept by `ssi cluster node enroll` on the init node.
        /// Public: images carry it so that a node can check the init node.
        public var known: String
        /// This node's own key file on a node with a disk (the init node
        /// reads it from its root). Mode 0400, root's.
        public var key: String
        /// Where a diskless node's key comes from: `"tpm"` (the node's TPM
        /// 2.0 derives it, nothing stored; the default when unset), or the
        /// local medium holding it: a small block device (a USB stick, a
        /// virtual disk) or a file on one; ssi-init reads it before it asks
        /// for the cluster key. `ssi.identity=` on the kernel command line
        /// overrides it.
        public var device: String?
        /// How long a node booted with `ssi.enroll` waits for the
        /// administrator to enroll it.
        public var enrollWaitSeconds: Int
        /// The cluster key sealed to each enrolled node's identity
        /// (`ssi cluster key seal`): what a node that boots from its own
        /// disk (a gfs2 node, the init node) carries instead of the key,
        /// and opens with its TPM or key medium. Ciphertext only: public.
        public var sealed: String

        public static let defaultKnown = "/etc/ssi/identities"
        public static let defaultKey = "/etc/ssi/node.key"
        public static let defaultEnrollWaitSeconds = 900
        public static let defaultSealed = "/etc/ssi/sealed-keys"

        public init(known: String = Identity.defaultKnown, key: String = Identity.defaultKey, device: String? = nil,
                    enrollWaitSeconds: Int = Identity.defaultEnrollWaitSeconds, sealed: String = Identity.defaultSealed) {
            self.known = known
            self.key = key
            self.device = device
            self.enrollWaitSeconds = enrollWaitSeconds
            self.sealed = sealed
        }
    }

    /// `[tunnel]`: a WireGuard network between the nodes, keyed by their
    /// identities (DESIGN-NOTES.md, "The tunnel"). Node N's tunnel address
    /// is host N of `prefix`; corosync, the NFS root, cluster mounts and
    /// the agents use it, and the cluster network (`[network]`) carries
    /// only DHCP, the served image, the key exchange and the tunnel's own
    /// UDP packets.
    public struct Tunnel: Sendable, Equatable {
        /// The tunnel's addresses, in network form; must not overlap
        /// `[network] prefix`.
        public var prefix: IPv4CIDR
        /// The UDP port every node listens on.
        public var port: Int

        public static let defaultPort = 51820
        /// What WireGuard adds to a packet over IPv4 (20 IP, 8 UDP, 32
        /// WireGuard) plus 20 of margin: wg-quick's rule, and the
        /// kernel's default 1420 on a 1500 link.
        public static let overhead = 80

        /// The tunnel link's MTU on a cluster network link of `linkMTU`.
        public static func mtu(onLink linkMTU: Int) -> Int { max(linkMTU - overhead, 576) }
        /// The link's name on every node.
        public static let interface = "ssi0"

        public init(prefix: IPv4CIDR, port: Int = Tunnel.defaultPort) {
            self.prefix = prefix
            self.port = port
        }

        /// Node `number`'s address in the tunnel.
        public func address(of number: Int) -> IPv4Address {
            IPv4Address(prefix.address.value &+ UInt32(truncatingIfNeeded: number))
        }
    }

    /// The address the cluster's traffic uses for `node`: its tunnel
    /// address with `[tunnel]`, else its `address`. (DHCP, the served
    /// image, the key exchange and the tunnel's endpoints use `address`.)
    public func clusterAddress(_ node: Node) -> IPv4Address {
        tunnel?.address(of: node.number) ?? node.address
    }

    /// The network the cluster's traffic comes from: what exports and
    /// agents accept.
    public var clusterNetwork: IPv4CIDR { tunnel?.prefix ?? network.prefix }

    /// The private paths of `node`: `[private] paths`, then the node's own
    /// `private` entries.
    public func privatePaths(for node: Node) -> [String] {
        var paths = privatePaths.paths
        for p in node.privatePaths where !paths.contains(p) { paths.append(p) }
        return paths
    }

    /// A daemon that must outlive the initramfs: ssi-mkinitrd carries its
    /// program and files (with their shared libraries) among the daemons'
    /// files, and ssi-init starts it chrooted there with them, argv[0]
    /// "@" + its path, so that systemd's shutdown spares it, and SSI_AGENT=NAME
    /// in its environment.
    public struct Agent: Sendable, Equatable {
        /// Letters, digits and '-', starting with a letter, at most 32.
        public var name: String
        /// The program (an absolute path on the build host, the same in
        /// the image) and its arguments.
        public var command: [String]
        /// More host files the agent needs at run time (data, dlopen()ed
        /// plugins), absolute paths.
        public var files: [String]
        public var line: Int

        public init(name: String, command: [String], files: [String], line: Int) {
            self.name = name
            self.command = command
            self.files = files
            self.line = line
        }

        /// Names ssi itself uses for its daemons.
        public static let reserved = ["corosync", "ssi-agent", "dlm"]
    }

    // MARK: Sections

    public struct Cluster: Sendable, Equatable {
        /// corosync's `totem.cluster_name`; dlm takes it from there and a
        /// GFS2 lock table must start with it. 1-32 letters, digits, `-`,
        /// `_` (mkfs.gfs2's limit for the lock table's cluster part).
        public var name: String
        /// The corosync authkey on the host building images (and where the
        /// image puts it). Default /etc/ssi/authkey.
        public var authkey: String
        public var cryptoCipher: CryptoCipher
        public var cryptoHash: CryptoHash
        /// corosync `totem.token`, ms: how long until a silent node is
        /// declared gone. Default 3000.
        public var tokenTimeoutMs: Int

        public static let defaultAuthkey = "/etc/ssi/authkey"
        public static let defaultTokenTimeoutMs = 3000
        public static let maxNameLength = 32
    }

    public enum CryptoCipher: String, Sendable, CaseIterable {
        case none, aes256, aes192, aes128
    }

    public enum CryptoHash: String, Sendable, CaseIterable {
        case none, md5, sha1, sha256, sha384, sha512
    }

    public struct Network: Sendable, Equatable {
        /// The cluster network, in network form (host bits zero: `address`
        /// is the network address); every node address is a host address in it.
        public var prefix: IPv4CIDR
        public var gateway: IPv4Address?
        /// The interface to configure, when it cannot be found by the
        /// node's MAC (required when a node has no MAC).
        public var interface: String?
        /// The cluster network's MTU (jumbo frames: 9000), set on each
        /// node's interface by ssi-init and handed out by the init node's
        /// DHCP; nil leaves the link's own (1500 on Ethernet). The
        /// tunnel's link is always this less `Tunnel.overhead`.
        public var mtu: Int? = nil

        public static let mtuRange = 1280...65535
    }

    public struct Quorum: Sendable, Equatable {
        /// votequorum `expected_votes`; default: the sum of the votes.
        public var expectedVotes: Int
        public var waitForAll: Bool
        public var twoNode: Bool
        /// How long ssi-init waits for quorum at boot. Default 60.
        public var bootWaitSeconds: Int
        /// As set in [quorum]; nil means the default per root type and
        /// role (see `ClusterConfig.onTimeout(for:)`).
        public var onTimeout: OnTimeout?

        public static let defaultBootWaitSeconds = 60

        /// Votes needed for quorum: a simple majority of expected_votes.
        public var quorumVotes: Int { expectedVotes / 2 + 1 }
    }

    /// What a node does when it has no quorum at the end of the boot wait.
    public enum OnTimeout: String, Sendable, CaseIterable {
        /// Stop with a clear message (emergency shell when there is one).
        case stop
        /// Go on without quorum.
        case `continue`
    }

    public enum Root: Sendable, Equatable {
        case cfs(CFS)
        case gfs2(GFS2)

        public var type: String {
            switch self {
            case .cfs: return "cfs"
            case .gfs2: return "gfs2"
            }
        }
    }

    /// The init node's disk, exported over NFSv4 to the other nodes.
    public struct CFS: Sendable, Equatable {
        /// The serving node's number (the init node).
        public var server: Int
        /// The NFSv4 path the server exports and the others mount. Default "/".
        public var export: String
        /// The init node's root device; nil: the kernel's `root=`.
        public var device: String?
        /// Extra mount options, after the defaults (a later option wins).
        public var options: String?
        /// How long a node waits for the server's NFS service at boot.
        public var waitSeconds: Int = CFS.defaultWaitSeconds
        /// Trees of the shared root that the other nodes mount a second
        /// time with the NFS client's caches on (`[root] cached`): the
        /// distro's read-mostly code. A change there is seen elsewhere
        /// within `cacheSeconds`, not at once.
        public var cached: [String] = CFS.defaultCached
        /// The cached mounts' bound on staleness (`actimeo=`).
        public var cacheSeconds: Int = CFS.defaultCacheSeconds
        /// A node's private directories (/var, /tmp) mounted with the same
        /// caching rather than bound from the coherent root: only that
        /// node writes them, so there is nothing to be coherent with
        /// (`[root] cache_private`).
        public var cachePrivate: Bool = true

        public static let defaultWaitSeconds = 180
        /// /usr holds the programs, libraries, udev rules and systemd
        /// units of a merged-/usr distro: what a booting node reads
        /// thousands of times and what changes only when packages are
        /// installed. Uncached, systemd's unit loading alone took 42 s of a
        /// diskless boot under TCG (BENCHMARKS.md).
        public static let defaultCached = ["/usr"]
        public static let defaultCacheSeconds = 10
        public static let cacheSecondsRange = 1...3600
        /// The mount options of a cached tree: the coherent root's, with
        /// attribute and lookup caching bounded by `seconds` (a name
        /// created or removed, a size or mtime changed on another node is
        /// seen within that time; close-to-open still revalidates a file
        /// at open).
        public static func cachedMountOptions(seconds: Int) -> String {
            "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=\(seconds),lookupcache=all"
        }
        /// Coherence first: hard mounts (a server restart stalls I/O, never
        /// fails it), no attribute cache (a size or mtime changed on
        /// another node is seen at the next stat), no lookup cache (a file
        /// created or removed on another node is seen at the next lookup).
        /// Data follows NFS's close-to-open rule: what a node wrote and
        /// closed is read by the next open anywhere.
        public static let defaultMountOptions = "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=0,lookupcache=none"

        public init(server: Int, export: String, device: String?, options: String?, waitSeconds: Int = CFS.defaultWaitSeconds,
                    cached: [String] = CFS.defaultCached, cacheSeconds: Int = CFS.defaultCacheSeconds, cachePrivate: Bool = true) {
            self.server = server
            self.export = export
            self.device = device
            self.options = options
            self.waitSeconds = waitSeconds
            self.cached = cached
            self.cacheSeconds = cacheSeconds
            self.cachePrivate = cachePrivate
        }
    }

    /// One shared block device, mounted by every node with lock_dlm.
    public struct GFS2: Sendable, Equatable {
        /// UUID=..., LABEL=..., PARTUUID=..., PARTLABEL=... or /dev/...
        public var device: String
        /// CLUSTER:FSNAME as given to `mkfs.gfs2 -t`; CLUSTER is the
        /// cluster name.
        public var lockTable: String
        public var options: String?
    }

    public struct Node: Sendable, Equatable {
        /// corosync's node id; 1...2^31-1.
        public var number: Int
        /// Host name (one DNS label); default "node<number>".
        public var name: String
        /// The NICs that identify this node at boot; may be empty (then
        /// the node needs `ssi.node=` and [network] interface).
        public var macs: [MACAddress]
        /// The node's address on the cluster network (corosync ring0_addr).
        public var address: IPv4Address
        public var role: Role
        /// votequorum `quorum_votes`; default 1.
        public var votes: Int
        /// The node's own swap device, if any (used by ssi-swapon).
        public var swap: String?
        /// Node-private paths on the shared root.
        public var privatePaths: [String]
        /// Overrides [quorum] on_timeout for this node.
        public var onTimeout: OnTimeout?
        /// key=value words the fence agent gets for this node (its IPMI
        /// address, its switch port), after [fence] args.
        public var fenceArguments: [String] = []
        /// Where this node's key comes from ("tpm" or a medium's path),
        /// over [identity] device.
        public var identity: String?
        /// The line of the node's [[node]] header.
        public var line: Int
    }

    public enum Role: String, Sendable, CaseIterable {
        /// Owns the root disk (serves it, for CFS).
        case initNode = "init"
        /// Boots from the network and has no root disk of its own.
        case diskless
        case member
    }

    // MARK: Lookups

    public func node(number: Int) -> Node? {
        nodes.first { $0.number == number }
    }

    public func node(named name: String) -> Node? {
        nodes.first { $0.name.lowercased() == name.lowercased() }
    }

    public func nodeForMAC(_ mac: MACAddress) -> Node? {
        nodes.first { $0.macs.contains(mac) }
    }

    /// `text` as in /sys/class/net/IF/address, any case, ':' or '-'.
    public func nodeForMAC(_ text: String) -> Node? {
        guard let mac = try? MACAddress(parsing: text) else { return nil }
        return nodeForMAC(mac)
    }

    /// The first node (in file order) whose MAC is one of `macs`: ssi-init
    /// passes every NIC's MAC and learns which node it is.
    public func nodeForAnyMAC(_ macs: [MACAddress]) -> Node? {
        nodes.first { node in node.macs.contains(where: macs.contains) }
    }

    public var initNode: Node? { nodes.first { $0.role == .initNode } }


    /// The node serving a CFS root (nil for gfs2).
    public var cfsServer: Node? {
        guard case .cfs(let c) = root else { return nil }
        return node(number: c.server)
    }

    /// The sum of all nodes' votes.
    public var totalVotes: Int { nodes.reduce(0) { $0 + $1.votes } }

    /// What `node` does when the boot wait for quorum ends without quorum:
    /// its own `on_timeout`, else [quorum] `on_timeout`, else the default
    /// for the root type (gfs2: stop; cfs: continue on the init node, stop
    /// on the others).
    public func onTimeout(for node: Node) -> OnTimeout {
        if let own = node.onTimeout { return own }
        if let all = quorum.onTimeout { return all }
        return ClusterConfig.defaultOnTimeout(root: root, role: node.role)
    }

    public static func defaultOnTimeout(root: Root, role: Role) -> OnTimeout {
        switch root {
        case .gfs2: return .stop
        case .cfs: return role == .initNode ? .continue : .stop
        }
    }

    public static func defaultWaitForAll(rootType: String, twoNode: Bool) -> Bool {
        rootType == "gfs2" || twoNode
    }

    /// "3 nodes, root cfs from node 1" for `config check`.
    public var summary: String {
        let count = nodes.count == 1 ? "1 node" : "\(nodes.count) nodes"
        switch root {
        case .cfs(let c):
            let server = node(number: c.server).map { " (\($0.name))" } ?? ""
            return "\(count), root cfs from node \(c.server)\(server), export \(c.export)"
        case .gfs2(let g):
            return "\(count), root gfs2 on \(g.device), lock table \(g.lockTable)"
        }
    }
}
