/// Writes libkmod's binary index files (modules.dep.bin, modules.alias.bin,
/// modules.symbols.bin, modules.builtin.bin ...) for exactly the modules in
/// an image, so libkmod inside the image resolves names, aliases and
/// dependencies without the build host's whole index and without running
/// depmod.
///
/// The format (kmod's libkmod-index.c): big-endian u32 magic 0xB007F457,
/// u32 version 0x00020001, u32 offset of the root node; the node offsets
/// carry flags in their top nibble (0x8 prefix, 0x4 values, 0x2 children).
/// A node is: its prefix as a NUL-terminated string; then the first and
/// last child characters and one u32 offset per character between them;
/// then a u32 count of values, each a u32 priority and a NUL-terminated
/// string. Values are kept in ascending priority. Like depmod, we write
/// children before their parent, so the root comes last.
public final class KmodIndexWriter {
    private final class Node {
        var children: [UInt8: Node] = [:]
        var values: [(priority: UInt32, value: String)] = []
    }

    private let root = Node()
    public private(set) var count = 0

    public init() {}

    public func insert(key: String, value: String, priority: UInt32 = 0) {
        var node = root
        for c in key.utf8 {
            if let next = node.children[c] {
                node = next
            } else {
                let next = Node()
                node.children[c] = next
                node = next
            }
        }
        // depmod: a value already present is not added twice.
        if node.values.contains(where: { $0.value == value }) { return }
        // Stable insert after every value of lower or equal priority.
        let at = node.values.firstIndex { $0.priority > priority } ?? node.values.count
        node.values.insert((priority, value), at: at)
        count += 1
    }

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        put32(0xB007_F457, &out)
        put32(0x0002_0001, &out)
        put32(0, &out)  // root offset, patched below
        let rootOffset = write(root, &out)
        let patched = withUnsafeBytes(of: rootOffset.bigEndian) { Array($0) }
        out.replaceSubrange(8..<12, with: patched)
        return out
    }

    /// Writes a node (its single-child chain folded into its prefix) and
    /// returns its flagged offset.
    private func write(_ start: Node, _ out: inout [UInt8]) -> UInt32 {
        var prefix: [UInt8] = []
        var node = start
        while node.values.isEmpty && node.children.count == 1, let (c, next) = node.children.first {
            prefix.append(c)
            node = next
        }
        var childOffsets: [UInt8: UInt32] = [:]
        for (c, child) in node.children.sorted(by: { $0.key < $1.key }) {
            childOffsets[c] = write(child, &out)
        }
        let offset = UInt32(out.count)
        var flags: UInt32 = 0
        if !prefix.isEmpty {
            flags |= 0x8000_0000
            out.append(contentsOf: prefix)
            out.append(0)
        }
        if let first = childOffsets.keys.min(), let last = childOffsets.keys.max() {
            flags |= 0x2000_0000
            out.append(first)
            out.append(last)
            for c in first...last { put32(childOffsets[c] ?? 0, &out) }
        }
        if !node.values.isEmpty {
            flags |= 0x4000_0000
            put32(UInt32(node.values.count), &out)
            for v in node.values {
                put32(v.priority, &out)
                out.append(contentsOf: Array(v.value.utf8))
                out.append(0)
            }
        }
        return offset | flags
    }
}

private func put32(_ v: UInt32, _ out: inout [UInt8]) {
    out.append(UInt8(v >> 24))
    out.append(UInt8((v >> 16) & 0xff))
    out.append(UInt8((v >> 8) & 0xff))
    out.append(UInt8(v & 0xff))
}
