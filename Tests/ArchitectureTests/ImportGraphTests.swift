import Foundation
import XCTest

/// The module graph is a decision, not an accident: every `import` under `Sources/` must be an edge that
/// `docs/ARCHITECTURE.md` draws (the list below is the same graph), and every such edge must be declared in
/// `Package.swift`, so SwiftPM's implicit visibility of already-built modules cannot hide a missing dependency.
final class ImportGraphTests: XCTestCase {
    /// Allowed edges, module -> modules it may import. The engine (Postgres, Queue, Runtime, Cron, HTTP, Logs)
    /// never imports the application side (Platforms, Sandbox, Privacy, Sync, NexcometJobs).
    static let allowed: [String: Set<String>] = [
        "CLibPQ": [],
        "COpenSSL": [],
        "Logs": [],
        "Cron": [],
        "HTTP": [],
        "Postgres": ["CLibPQ"],
        "Queue": ["Postgres", "Logs"],
        "Runtime": ["Queue", "Postgres", "Logs", "Cron"],
        // Application side.
        "Platforms": ["Postgres", "Logs"],
        "Sandbox": ["HTTP"],
        "Privacy": ["COpenSSL", "Postgres", "Queue", "Platforms", "Logs"],
        "Sync": ["Platforms", "Privacy", "Queue", "Postgres", "Logs"],
        "NexcometJobs": [
            "Runtime", "Queue", "Postgres", "Logs", "Cron", "HTTP", "Sync", "Privacy", "Platforms",
        ],
        "nexjobs": [
            "NexcometJobs", "Runtime", "Queue", "Postgres", "Logs", "Cron", "HTTP", "Sync", "Privacy", "Platforms",
            "Sandbox",
        ],
    ]

    /// Modules that come with the toolchain or the system, importable anywhere.
    static let system: Set<String> = [
        "Foundation", "FoundationNetworking", "FoundationEssentials", "Dispatch", "Synchronization", "Glibc",
        "Darwin", "Musl",
    ]

    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// `module -> imported modules`, from the `import` lines of every Swift file under `Sources/<module>/`.
    static func imports() throws -> [String: [String: String]] {
        let sources = root.appendingPathComponent("Sources")
        var result: [String: [String: String]] = [:]
        let fm = FileManager.default
        for module in try fm.contentsOfDirectory(atPath: sources.path).sorted() {
            let dir = sources.appendingPathComponent(module)
            guard let walker = fm.enumerator(atPath: dir.path) else { continue }
            var found: [String: String] = [:]
            for case let rel as String in walker where rel.hasSuffix(".swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(rel), encoding: .utf8)
                for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
                    let words = line.split(separator: " ").map(String.init)
                    guard let i = words.firstIndex(of: "import"), i <= 2,
                        words[..<i].allSatisfy({ $0.hasPrefix("@") || $0 == "public" || $0 == "internal" }),
                        i + 1 < words.count
                    else { continue }
                    let name = words[i + 1].split(separator: ".").first.map(String.init) ?? words[i + 1]
                    found[name] = "\(module)/\(rel)"
                }
            }
            result[module] = found
        }
        return result
    }

    /// `target -> declared dependencies`, read from Package.swift's `.target(name: "X", dependencies: [...])`.
    static func declared() throws -> [String: Set<String>] {
        let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        var result: [String: Set<String>] = [:]
        let pattern =
            #"\.(?:target|executableTarget|systemLibrary)\(\s*name:\s*"([^"]+)"(?:,\s*dependencies:\s*\[([^\]]*)\])?"#
        let regex = try NSRegularExpression(pattern: pattern)
        let ns = text as NSString
        for m in regex.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            let name = ns.substring(with: m.range(at: 1))
            var deps: Set<String> = []
            if m.range(at: 2).location != NSNotFound {
                for part in ns.substring(with: m.range(at: 2)).split(separator: ",") {
                    let d = part.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(
                        in: CharacterSet(charactersIn: "\""))
                    if !d.isEmpty { deps.insert(d) }
                }
            }
            result[name] = deps
        }
        return result
    }

    func testEveryImportIsAnAllowedEdge() throws {
        let graph = try Self.imports()
        XCTAssertFalse(graph.isEmpty)
        var violations: [String] = []
        for (module, imports) in graph.sorted(by: { $0.key < $1.key }) {
            guard let allowed = Self.allowed[module] else {
                violations.append("module \(module) is not in the architecture's module list")
                continue
            }
            for (imported, file) in imports.sorted(by: { $0.key < $1.key })
            where !Self.system.contains(imported) && !allowed.contains(imported) {
                violations.append("\(file) imports \(imported): \(module) -> \(imported) is not an allowed edge")
            }
        }
        XCTAssertEqual(violations, [], violations.joined(separator: "\n"))
    }

    func testEveryImportIsDeclaredInPackageSwift() throws {
        let graph = try Self.imports()
        let declared = try Self.declared()
        var missing: [String] = []
        for (module, imports) in graph.sorted(by: { $0.key < $1.key }) {
            let deps = declared[module] ?? []
            for (imported, file) in imports.sorted(by: { $0.key < $1.key })
            where !Self.system.contains(imported) && !deps.contains(imported) {
                missing.append("\(file) imports \(imported), which Package.swift does not declare for \(module)")
            }
            // The reverse: a declared dependency that nothing imports is dead weight (and hides the real graph).
            for dep in deps.sorted() where imports[dep] == nil {
                missing.append("Package.swift declares \(module) -> \(dep), but no file of \(module) imports it")
            }
        }
        XCTAssertEqual(missing, [], missing.joined(separator: "\n"))
    }

    /// The engine is publishable on its own: nothing in it names Nexcomet's schema or modules.
    func testEngineKnowsNothingOfNexcomet() throws {
        let sources = Self.root.appendingPathComponent("Sources")
        var hits: [String] = []
        for module in ["Postgres", "Queue", "Runtime", "Cron", "HTTP", "Logs"] {
            let dir = sources.appendingPathComponent(module)
            guard let walker = FileManager.default.enumerator(atPath: dir.path) else { continue }
            for case let rel as String in walker where rel.hasSuffix(".swift") {
                let text = try String(contentsOf: dir.appendingPathComponent(rel), encoding: .utf8)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                where line.range(of: "nexcomet", options: .caseInsensitive) != nil {
                    hits.append("\(module)/\(rel):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
        XCTAssertEqual(hits, [], hits.joined(separator: "\n"))
    }

    /// The checker itself: a graph with a forbidden edge is reported (guards against a test that cannot fail).
    func testTheCheckerSeesImports() throws {
        let graph = try Self.imports()
        XCTAssertEqual(graph["Postgres"]?["CLibPQ"] != nil, true, "the import parser found no CLibPQ import")
        let declared = try Self.declared()
        XCTAssertEqual(declared["Postgres"]?.contains("CLibPQ"), true, "the Package.swift parser found nothing")
    }
}
