import ArgumentParser
import SSICore
import SSILinux
import SSIMembership

/// The membership agent's helper: one node's part of a cluster mount, run
/// by the agent in a child chrooted into the system's root (so that the
/// mount, the distro's exportfs and /var/lib/nfs are the system's). The
/// last line of its output is "ssi-result ok" or "ssi-result error: ...".
struct MountApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount-apply",
        abstract: "This node's part of a cluster mount (run by the membership agent).",
        shouldDisplay: false)

    @Flag(help: "Mount (and export, on the owner).") var mount = false
    @Flag(help: "Unexport and unmount.") var unmount = false
    @Option(help: "The cluster mount record.") var entry: String
    @Option(name: .customLong("local-address"), help: "This node's cluster address.") var localAddress: String
    @Option(name: .customLong("server-address"), help: "The owner's cluster address.") var serverAddress: String?
    @Option(help: "The cluster network (the export's clients).") var network: String
    @Option(name: .customLong("local-node"), help: "This node's number.") var localNode: UInt32?

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
