import SSICore
import SSILinux
import SSIMembership
import SSITools

/// The membership agent's helper: one node's part of a cluster mount, run
/// by the agent in a child chrooted into the system's root (so that the
/// mount, the distro's exportfs and /var/lib/nfs are the system's). The
/// last line of its output is "ssi-result ok" or "ssi-result error: ...".
struct MountApplyCommand {
    static let command = CLICommand(
        "mount-apply",
        abstract: "This node's part of a cluster mount (run by the membership agent).",
        options: [
            .flag("mount", help: "Mount (and export, on the owner)."),
            .flag("unmount", help: "Unexport and unmount."),
            .value("entry", help: "The cluster mount record.", required: true),
            .value("local-address", help: "This node's cluster address.", required: true),
            .value("server-address", help: "The owner's cluster address."),
            .value("network", help: "The cluster network (the export's clients).", required: true),
            .integer("local-node", as: UInt32.self, help: "This node's number."),
        ],
        hidden: true) { try MountApplyCommand($0).run() }

    var mount: Bool
    var unmount: Bool
    var entry: String
    var localAddress: String
    var serverAddress: String?
    var network: String
    var localNode: UInt32?

    init(_ v: CLIValues) {
        mount = v.flag("mount")
        unmount = v.flag("unmount")
        // Required options: the parser refused the command line without them.
        entry = v.string("entry") ?? ""
        localAddress = v.string("local-address") ?? ""
        serverAddress = v.string("server-address")
        network = v.string("network") ?? ""
        localNode = v.integer("local-node")
    }

    func run() throws {
        do throws(SSIError) {
            let e = try ClusterMount(line: entry)
            let me = localNode ?? (try? ClusterView.load())?.localNode ?? 0
            let applier = ClusterMountApplier(localAddress: localAddress, network: network)
            if unmount {
                try applier.unmount(e, role: e.role(on: me))
            } else {
                try applier.mount(e, role: e.role(on: me), serverAddress: serverAddress)
            }
            print("ssi-result ok")
        } catch {
            print("ssi-result error: \(error.message)")
        }
    }
}
