#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CBlkid
public import SSICore

/// What libblkid says about one block device.
public struct BlockDevice: Sendable, Equatable, CustomStringConvertible {
    public var name: String          // "vda1"
    public var path: String          // "/dev/vda1"
    public var type: String?         // "ext4"
    public var uuid: String?
    public var label: String?
    public var partUUID: String?
    public var partLabel: String?

    public init(name: String, path: String, type: String? = nil, uuid: String? = nil,
                label: String? = nil, partUUID: String? = nil, partLabel: String? = nil) {
        self.name = name
        self.path = path
        self.type = type
        self.uuid = uuid
        self.label = label
        self.partUUID = partUUID
        self.partLabel = partLabel
    }

    /// "vda1 (ext4, LABEL=root)": the shape of the "devices seen" lists.
    public var description: String {
        var parts: [String] = [type ?? "no file system"]
        if let label { parts.append("LABEL=\(label)") }
        if let uuid { parts.append("UUID=\(uuid)") }
        return "\(name) (\(parts.joined(separator: ", ")))"
    }
}

public enum BlockDevices {
    /// Probes one device node with libblkid's superblock and partition
    /// probing. nil when it cannot be opened (gone, or media absent).
    public static func probe(_ path: String) -> BlockDevice? {
        guard let pr = blkid_new_probe_from_filename(path) else { return nil }
        defer { blkid_free_probe(pr) }
        blkid_probe_enable_superblocks(pr, 1)
        blkid_probe_set_superblocks_flags(pr, Int32(BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE))
        blkid_probe_enable_partitions(pr, 1)
        blkid_probe_set_partitions_flags(pr, Int32(BLKID_PARTS_ENTRY_DETAILS))
        var dev = BlockDevice(name: basename(of: path), path: path)
        // 0: found, 1: nothing found, -1/-2: error or ambiguous.
        if blkid_do_safeprobe(pr) == 0 {
            func value(_ key: String) -> String? {
                var data: UnsafePointer<CChar>?
                var len = 0
                guard blkid_probe_lookup_value(pr, key, &data, &len) == 0, let data else { return nil }
                return String(cString: data)
            }
            dev.type = value("TYPE")
            dev.uuid = value("UUID")
            dev.label = value("LABEL")
            dev.partUUID = value("PART_ENTRY_UUID")
            dev.partLabel = value("PART_ENTRY_NAME")
        }
        return dev
    }

    /// Every block device the kernel lists in /proc/partitions, probed.
    public static func scan(devDirectory: String = "/dev") -> [BlockDevice] {
        guard let text = try? FileSystem.readText("/proc/partitions") else { return [] }
        var out: [BlockDevice] = []
        for line in text.lines().dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count == 4 else { continue }
            let name = String(fields[3])
            if let dev = probe(devDirectory + "/" + name) { out.append(dev) }
        }
        return out
    }
}

/// A `root=` style device specification.
public enum DeviceSpec: Sendable, Equatable, CustomStringConvertible {
    case path(String)
    case uuid(String)
    case label(String)
    case partUUID(String)
    case partLabel(String)

    /// Parses `/dev/vda1`, `UUID=...`, `LABEL=...`, `PARTUUID=...`,
    /// `PARTLABEL=...`. Anything else is an error naming the forms we take.
    public init(parsing text: String, field: String) throws(SSIError) {
        func rest(_ prefix: String) -> String? {
            text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : nil
        }
        if let v = rest("UUID="), !v.isEmpty { self = .uuid(v.lowercased()); return }
        if let v = rest("LABEL="), !v.isEmpty { self = .label(v); return }
        if let v = rest("PARTUUID="), !v.isEmpty { self = .partUUID(v.lowercased()); return }
        if let v = rest("PARTLABEL="), !v.isEmpty { self = .partLabel(v); return }
        if text.hasPrefix("/dev/") && text.count > 5 { self = .path(text); return }
        throw SSIError("root", "\(field)=\(printable(text)) is not a device I can find",
                       hint: "use \(field)=/dev/NAME, UUID=, LABEL=, PARTUUID= or PARTLABEL=")
    }

    public var description: String {
        switch self {
        case .path(let p): return p
        case .uuid(let u): return "UUID=\(u)"
        case .label(let l): return "LABEL=\(l)"
        case .partUUID(let u): return "PARTUUID=\(u)"
        case .partLabel(let l): return "PARTLABEL=\(l)"
        }
    }

    public func matches(_ dev: BlockDevice) -> Bool {
        switch self {
        case .path(let p): return dev.path == p
        case .uuid(let u): return dev.uuid?.lowercased() == u
        case .label(let l): return dev.label == l
        case .partUUID(let u): return dev.partUUID?.lowercased() == u
        case .partLabel(let l): return dev.partLabel == l
        }
    }
}
