import Foundation
import Testing
import SSIClusterFS
import SSIConfig
import SSILinux

let cfsText = """
    [cluster]
    name = "ssi"

    [network]
    prefix = "10.77.0.0/24"
    interface = "eth0"

    [root]
    type = "cfs"
    options = "rsize=65536"

    [netboot]
    kernel_arguments = "console=ttyS0"

    [[node]]
    number = 1
    mac = "52:54:00:00:00:01"
    address = "10.77.0.1"
    role = "init"

    [[node]]
    number = 2
    mac = ["52:54:00:00:00:02", "52:54:00:00:00:12"]
    address = "10.77.0.2"
    role = "diskless"
    private = ["/srv/scratch"]

    [[node]]
    number = 3
    address = "10.77.0.3"
    role = "diskless"

    [[node]]
    number = 4
    mac = "52:54:00:00:00:04"
    address = "10.77.0.4"

    """

@Suite struct CFSFilesTests {
    let config: ClusterConfig

    init() throws {
        config = try ClusterConfig.parse(text: cfsText, file: "/etc/ssi/cluster.conf")
    }

    @Test("the export goes to the cluster network only, as the NFSv4 pseudo-root, root not squashed, synchronous")
    func exports() {
        let lines = CFSFiles.exports(config).split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines == ["/ 10.77.0.0/24(rw,sync,no_subtree_check,no_root_squash,fsid=0,sec=sys)"])
    }

    @Test("the NFS server's drop-in sets a 15 s lease before rpc.nfsd starts, under /run (gone at reboot)")
    func nfsLease() {
        #expect(CFSFiles.nfsServerDropIn == "/run/systemd/system/nfs-server.service.d/50-ssi.conf")
        let lines = CFSFiles.nfsServerLease().split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines == ["[Service]", "ExecStartPre=/bin/sh -c 'echo 15 > /proc/fs/nfsd/nfsv4leasetime'"])
    }

    @Test("mount options: coherence-first defaults, the addresses, then [root] options")
    func mountOptions() throws {
        guard case .cfs(let cfs) = config.root else { Issue.record("not cfs"); return }
        let o = CFSFiles.mountOptions(cfs, server: config.node(number: 1)!.address, client: config.node(number: 2)!.address)
        #expect(o == "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=0,lookupcache=none,addr=10.77.0.1,clientaddr=10.77.0.2,rsize=65536")
    }

    @Test("cached mounts: /usr and a node's private directories, with actimeo=cache_seconds, the addresses, then [root] options; not on the server, not when off")
    func cachedMounts() throws {
        guard case .cfs(let cfs) = config.root else { Issue.record("not cfs"); return }
        let (server, client) = (config.node(number: 1)!, config.node(number: 2)!)
        let cached = "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=10,lookupcache=all,addr=10.77.0.1,clientaddr=10.77.0.2,rsize=65536"
        #expect(CFSFiles.cachedMountOptions(cfs, server: server.address, client: client.address) == cached)
        let p = CFSFiles.privateMount(config, client: client, copy: "/cluster/nodes/node2/var")
        #expect(p?.source == "10.77.0.1:/cluster/nodes/node2/var" && p?.options == cached)
        #expect(CFSFiles.privateMount(config, client: server, copy: "/cluster/nodes/node1/var") == nil, "the server's own paths are local")
        let off = try ClusterConfig.parse(text: cfsText.replacingOccurrences(of: "type = \"cfs\"", with: "type = \"cfs\"\ncache_private = false"),
                                          file: "c")
        #expect(CFSFiles.privateMount(off, client: client, copy: "/cluster/nodes/node2/var") == nil)
    }

    @Test("[tunnel]: the export is to the tunnel's network only, and the private mounts go to the server's tunnel address")
    func tunnelAddresses() throws {
        let tunneled = try ClusterConfig.parse(text: cfsText.replacingOccurrences(of: "[[node]]", with: "[tunnel]\nprefix = \"10.78.0.0/24\"\n\n[[node]]",
                                                                                  options: [], range: cfsText.range(of: "[[node]]")),
                                               file: "c")
        let exports = CFSFiles.exports(tunneled)
        #expect(exports.contains("/ 10.78.0.0/24(rw,") && !exports.contains("10.77.0.0/24"), "\(exports)")
        let p = CFSFiles.privateMount(tunneled, client: tunneled.node(number: 2)!, copy: "/cluster/nodes/node2/var")
        #expect(p?.source == "10.78.0.1:/cluster/nodes/node2/var" && p?.options.contains("addr=10.78.0.1,clientaddr=10.78.0.2") == true,
                "\(String(describing: p))")
        // DHCP stays on the cluster network.
        #expect(CFSFiles.dhcpHosts(tunneled).contains("10.77.0.2"))
    }

    @Test("DHCP hosts: the diskless nodes with MACs (every MAC of a node on its line); not the init node, not members")
    func dhcpHosts() {
        let lines = CFSFiles.dhcpHosts(config).split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines == ["52:54:00:00:00:02,52:54:00:00:00:12,10.77.0.2,node2,infinite"])
    }

    @Test("dnsmasq: the cluster interface only, no DNS, a static range, iPXE's script for iPXE and iPXE for other ROMs")
    func dnsmasq() {
        let text = CFSFiles.dnsmasqConf(config, interface: "eth0")
        for line in ["port=0", "interface=eth0", "bind-interfaces", "dhcp-range=10.77.0.0,static,255.255.255.0,infinite",
                     "dhcp-hostsfile=/srv/ssi/netboot/dhcp-hosts", "dhcp-boot=tag:ipxe,boot.ipxe",
                     "dhcp-boot=tag:!ipxe,undionly.kpxe", "tftp-root=/srv/ssi/netboot", "dhcp-option=option:router",
                     "dhcp-script=/run/ssi/netboot/event"] {
            #expect(text.split(separator: "\n").contains(Substring(line)), "missing \(line)")
        }
        #expect(!text.contains("option:mtu"), "no MTU unless configured")
        var jumbo = config
        jumbo.network.mtu = 9000
        #expect(CFSFiles.dnsmasqConf(jumbo, interface: "eth0").split(separator: "\n").contains("dhcp-option=option:mtu,9000"))
    }

    @Test("iPXE's script names the kernel, the image and the configured command line")
    func bootScript() {
        #expect(CFSFiles.bootScript(config).split(separator: "\n").filter { !$0.hasPrefix("#") || $0 == "#!ipxe" }
                == ["#!ipxe", "kernel vmlinuz initrd=initrd.img console=ttyS0", "initrd initrd.img", "boot"])
    }

    @Test("dnsmasq's event script turns leases and transfers into lines the agent reads", .enabled(if: FileManager.default.fileExists(atPath: "/bin/sh")))
    func eventScript() throws {
        let dir = NSTemporaryDirectory() + "ssi-event-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = CFSFiles.eventScript.replacingOccurrences(of: CFSFiles.runDirectory, with: dir)
        try script.write(toFile: dir + "/event", atomically: true, encoding: .utf8)
        for args in [["add", "52:54:00:00:00:02", "10.77.0.2", "node2"], ["tftp", "123", "10.77.0.2", "/srv/ssi/netboot/initrd.img"],
                     ["del", "52:54:00:00:00:02", "10.77.0.2"]] {
            let p = Foundation.Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = [dir + "/event"] + args
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
        }
        let events = try String(contentsOfFile: dir + "/events", encoding: .utf8)
        #expect(events == "dhcp 10.77.0.2 52:54:00:00:00:02\ntftp 10.77.0.2 initrd.img\n")
    }

    @Test("private paths: [private] paths, then the node's own")
    func privatePaths() {
        #expect(config.privatePaths(for: config.node(number: 2)!) == ["/etc/hostname", "/etc/machine-id", "/var", "/tmp", "/srv/scratch"])
        #expect(config.privatePaths(for: config.node(number: 3)!) == ["/etc/hostname", "/etc/machine-id", "/var", "/tmp"])
    }
}

@Suite struct NodePrivatePathsTests {
    @Test("seeding copies the shared paths once, writes the hostname, makes a machine id once, and reseeds nothing")
    func seed() throws {
        let root = NSTemporaryDirectory() + "ssi-private-\(getpid())"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/var/lib/x", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: root) }
        try "data".write(toFile: root + "/var/lib/x/file", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: root + "/var/run", withDestinationPath: "../run")
        chmod(root + "/var/lib/x/file", 0o640)

        let p = NodePrivatePaths(root: root, directory: "/cluster/nodes", nodeName: "node2",
                                 paths: ["/var", "/etc/hostname", "/etc/machine-id", "/tmp"])
        let first = try p.seed()
        #expect(first.map(\.path) == ["/etc/hostname", "/etc/machine-id", "/tmp", "/var"])
        #expect(first.first { $0.path == "/var" }?.result == .copied(entries: 5))
        let base = root + "/cluster/nodes/node2"
        #expect(try String(contentsOfFile: base + "/var/lib/x/file", encoding: .utf8) == "data")
        #expect(try fm.destinationOfSymbolicLink(atPath: base + "/var/run") == "../run")
        #expect((try fm.attributesOfItem(atPath: base + "/var/lib/x/file")[.posixPermissions] as? Int) == 0o640)
        #expect(try String(contentsOfFile: base + "/etc/hostname", encoding: .utf8) == "node2\n")
        let id = try String(contentsOfFile: base + "/etc/machine-id", encoding: .utf8)
        #expect(id.count == 33 && id.dropLast().allSatisfy(\.isHexDigit))
        #expect((try fm.attributesOfItem(atPath: base + "/tmp")[.posixPermissions] as? Int) == 0o1777)
        #expect(fm.fileExists(atPath: root + "/cluster/nodes/README"))

        // A second boot keeps everything, the machine id included.
        try "changed".write(toFile: base + "/var/lib/x/file", atomically: true, encoding: .utf8)
        let second = try p.seed()
        #expect(second.allSatisfy { $0.result == .kept })
        #expect(try String(contentsOfFile: base + "/var/lib/x/file", encoding: .utf8) == "changed")
        #expect(try String(contentsOfFile: base + "/etc/machine-id", encoding: .utf8) == id)
        #expect((try fm.contentsOfDirectory(atPath: base + "/etc")).sorted() == ["hostname", "machine-id"], "no temporary files left")
    }
}
