#if canImport(Glibc)
import Glibc
#endif
import SSICore
import SSILinux
import SSIConfig
import SSITrust

/// A served image holds no secret (DESIGN-NOTES.md, "Node identity"): a
/// node booted from one proves who it is to the init node's key server
/// and receives the cluster key, which lives only in RAM. An image built
/// for a node with a disk (gfs2 nodes, the init node) carries the key
/// sealed to the enrolled identities ("Keys at rest"), which the node
/// opens itself, or, built with --authkey or before any seal, the key.
struct KeyPlan: Equatable {
    var server: ClusterConfig.Node
    var serverIdentity: PublicIdentity
    /// The node's TPM unless a key medium is named.
    var source: KeySource
    /// How long to wait for the init node to answer: as long as for its
    /// NFS server (ssi.root_wait=, [root] wait_seconds), as the node cannot
    /// boot without either.
    var unreachableSeconds: Int
    /// How long a node in enrollment mode waits for the administrator.
    var enrollSeconds: Int
    var enroll: Bool

    static let keyPath = "/etc/corosync/authkey"

    /// For an image that carries no key.
    static func decide(config: ClusterConfig, node: ClusterConfig.Node, params: BootParameters,
                       known: KnownIdentities) throws(SSIError) -> KeyPlan {
        guard let server = config.cfsServer, server.number != node.number else {
            throw SSIError("keys", "this image carries neither the cluster key nor the key sealed to the enrolled nodes (\(config.identity.sealed)), "
                           + "and only a CFS cluster's init node gives the key to a booting node",
                           hint: "enroll \(node.name) and seal the key (ssi cluster node enroll, ssi cluster key seal), then build its image "
                           + "with ssi-mkinitrd --config \(config.file) (without --netboot)")
        }
        guard let serverIdentity = known.identity(of: server.name) else {
            throw SSIError("keys", "the image does not know the init node \(server.name)'s identity (\(config.identity.known)), "
                           + "so it cannot tell the real init node from an impostor",
                           hint: "on \(server.name): ssi cluster node key new -o \(config.identity.key); ssi cluster node enroll \(server.name) "
                           + "--key \(config.identity.key); then rebuild the served image (ssi-mkinitrd --config ... --netboot ...)")
        }
        let source = try Self.source(config: config, node: node, params: params)
        var rootWait = params.clusterRootWait ?? 180
        if case .cfs(let cfs) = config.root { rootWait = params.clusterRootWait ?? cfs.waitSeconds }
        return KeyPlan(server: server, serverIdentity: serverIdentity, source: source, unreachableSeconds: rootWait,
                       enrollSeconds: config.identity.enrollWaitSeconds, enroll: params.enroll)
    }

    /// Where the node's key comes from: the command line, the node's own
    /// line, [identity] device; none of them: the TPM.
    static func source(config: ClusterConfig, node: ClusterConfig.Node, params: BootParameters) throws(SSIError) -> KeySource {
        guard let named = params.identityDevice ?? node.identity ?? config.identity.device else { return .tpm }
        guard let given = KeySource(named) else {
            throw SSIError("keys", "the key medium \"\(printable(named))\" is neither \"tpm\" nor an absolute path")
        }
        return given
    }

    /// Where a node that boots from its own disk reads its node key (to
    /// open its sealed cluster key, or for the tunnel when its image has
    /// the key itself): ssi.identity=, else the key file its image carries
    /// (the init node's, built on it), else as any node: its own line,
    /// [identity] device, its TPM.
    static func diskNodeSource(config: ClusterConfig, node: ClusterConfig.Node, params: BootParameters,
                               imageHasKeyFile: Bool) throws(SSIError) -> KeySource {
        if params.identityDevice == nil && imageHasKeyFile { return .medium(config.identity.key) }
        return try source(config: config, node: node, params: params)
    }

    /// What a refusal means for the boot: wait (enrollment mode, for the
    /// administrator) or stop with the init node's reason.
    static func waits(after refusal: KeyExchange.Refusal, enroll: Bool) -> Bool {
        enroll && (refusal == .unknownIdentity || refusal == .identityChanged)
    }
}

extension Boot {
    /// Part of the membership step, before corosync starts: the cluster
    /// key from the init node when the image has none. Returns the node
    /// key it proved itself with (nil when the image has the cluster key),
    /// which the tunnel uses next.
    func fetchClusterKey(_ identity: NodeIdentity, _ params: BootParameters) throws(SSIError) -> NodeKey? {
        // An image with the key (the init node's, a gfs2 node's) reads
        // nothing more on the boot path.
        if FileSystem.exists(KeyPlan.keyPath) { return nil }
        let config = identity.config, node = identity.node
        // An image for a node with a disk carries the key sealed to the
        // enrolled identities instead (ssi cluster key seal).
        if FileSystem.exists(config.identity.sealed) { return try openSealedKey(identity, params) }
        let known = try KnownIdentities.load(config.identity.known)
        let plan = try KeyPlan.decide(config: config, node: node, params: params, known: known)
        let key = try loadNodeKey(plan.source, enroll: plan.enroll, node: node)
        let who = "\(plan.server.name) (\(plan.server.address))"
        log.info("keys", "\(node.name) is \(key.identity.fingerprint) (key from \(plan.source)); asking \(who) for the cluster key")
        let started = Process.now()
        var deadline = started + Double(plan.unreachableSeconds)
        var said = ""
        var waitingForEnrollment = false
        while true {
            var problem = SSIError("keys", "no answer from \(who)")
            // A refusal ends the boot's wait at once, unless enrolling: it
            // is the init node's answer, not a network problem. (Thrown
            // after the do/catch, which would otherwise take it for one.)
            var refusal: SSIError?
            var waits = false
            do throws(SSIError) {
                switch try KeyClient.request(server: plan.server.address.description, node: UInt32(node.number), key: key,
                                             serverIdentity: plan.serverIdentity) {
                case .delivered(let bundle):
                    try install(bundle)
                    let ms = Int((Process.now() - started) * 1000)
                    log.info("keys", "received the cluster key from \(who) in \(ms) ms; it is kept in RAM, mode 0400")
                    return key
                case .refused(let why, let text):
                    refusal = SSIError("keys", "\(who) refused this node: \(why.summary): \(text)",
                                       hint: why == .unknownIdentity || why == .identityChanged
                                          ? "enroll it on the init node (the command above), with ssi.enroll on this node's command line to wait for it"
                                          : nil)
                    waits = KeyPlan.waits(after: why, enroll: plan.enroll)
                }
            } catch {
                problem = error.message.hasPrefix("connecting to")
                    ? SSIError("keys", "the init node \(who) is unreachable (\(error.message))",
                               hint: "is it up, and its ssi-keys.service running? ssi.root_wait=N waits longer")
                    : error
            }
            if let refusal {
                guard waits else { throw refusal }
                if !waitingForEnrollment {
                    waitingForEnrollment = true
                    deadline = Process.now() + Double(plan.enrollSeconds)
                }
                problem = refusal
            }
            let now = Process.now()
            if now >= deadline {
                throw SSIError("keys", "no cluster key: \(problem.message)", hint: problem.hint)
            }
            if problem.message != said {
                log.warning("keys", "\(problem.message); trying again for up to \(Int(deadline - now)) s"
                            + (plan.enroll ? " (enrollment mode: this node's identity is \(key.identity.fingerprint))" : ""))
                said = problem.message
            }
            Process.sleep(milliseconds: 3000)
        }
    }

    /// The node's key: from its TPM, or from its medium (waiting for the
    /// device to appear; a blank medium gets a new key in enrollment mode).
    func loadNodeKey(_ source: KeySource, enroll: Bool, node: ClusterConfig.Node) throws(SSIError) -> NodeKey {
        let device: String
        switch source {
        case .tpm: device = TPM.device
        case .medium(let path): device = path
        }
        // A TPM's driver is built in (Debian) or loaded by the coldplug
        // before this step; a USB stick may take its time.
        let deadline = Process.now() + (source == .tpm ? 5 : 30)
        while !FileSystem.exists(device) && Process.now() < deadline { Process.sleep(milliseconds: 250) }
        if source == .tpm && !FileSystem.exists(device) {
            throw SSIError("keys", "\(node.name) takes its key from its TPM (no key medium is named for it, or \"tpm\" is), "
                           + "and it has none: \(TPM.device) is missing; the served image holds no secret, so the node needs a key of its own",
                           hint: "enable the TPM 2.0 in the firmware, or set [identity] device (e.g. \"/dev/vdb\", a small disk or "
                           + "USB stick) or boot with ssi.identity=PATH; boot once with ssi.enroll to make the key")
        }
        switch try NodeKeyFile.load(source) {
        case .key(let key):
            if source == .tpm { log.info("keys", "node identity from the TPM (\(TPM.device)): \(key.identity.fingerprint)") }
            return key
        case .blank:
            guard enroll else {
                throw SSIError("keys", "\(device) holds no node key",
                               hint: "boot once with ssi.enroll: the node makes its key there and waits to be enrolled")
            }
            let key = NodeKey.generate()
            try NodeKeyFile.write(key, to: device, force: false)
            log.info("keys", "made a new node key on \(device): \(key.identity.fingerprint)")
            return key
        }
    }

    /// A node that boots from its own disk: its cluster key sealed to its
    /// identity in the image (DESIGN-NOTES.md, "Keys at rest"), opened
    /// with the key its TPM or medium gives. Nothing is asked of the
    /// network, so the first node of a cold cluster boots like the last.
    func openSealedKey(_ identity: NodeIdentity, _ params: BootParameters) throws(SSIError) -> NodeKey {
        let config = identity.config, node = identity.node, path = config.identity.sealed
        let sealed = try SealedKeys.load(path)
        let source = try KeyPlan.diskNodeSource(config: config, node: node, params: params,
                                                imageHasKeyFile: FileSystem.exists(config.identity.key))
        let key = try loadNodeKey(source, enroll: params.enroll, node: node)
        // On failure the hint names the whole public key to enroll (a
        // fingerprint alone cannot be sealed to): no init node is there to
        // take an offer.
        let bundle = try sealed.open(for: node.name, with: key, source: path)
        try install(bundle)
        log.info("keys", "opened the cluster key sealed to \(node.name)'s identity \(key.identity.fingerprint) (key from \(source)); "
                 + "it is kept in RAM, mode 0400")
        return key
    }

    /// Writes what the init node gave, each file root's alone, in the
    /// initramfs (RAM; the agents root copies it into /run's tmpfs).
    func install(_ bundle: KeyBundle) throws(SSIError) {
        for file in bundle.files {
            do {
                try FileSystem.makeDirectories(dirname(of: file.path), mode: 0o700)
                try writeFileAtomically(file.path, file.bytes, mode: mode_t(file.mode), replace: true)
            } catch {
                throw SSIError("keys", "writing \(file.path): \(error.description)")
            }
        }
    }
}
