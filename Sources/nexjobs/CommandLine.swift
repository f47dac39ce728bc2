import Foundation
import Logs
import Postgres
import Queue
import Runtime

/// Exit codes: 0 success, 1 operational failure (database unreachable, server error), 2 usage or invalid input,
/// 3 not found or not allowed in the job's current state.
enum Exit {
    static let ok: Int32 = 0
    static let failure: Int32 = 1
    static let usage: Int32 = 2
    static let notFound: Int32 = 3
}

/// A usage error: printed with a pointer to `--help`, exit code 2.
struct UsageError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Parsed arguments: positionals, `--name value` / `--name=value` options and `--flag`s.
struct Arguments {
    var positionals: [String] = []
    var options: [String: String] = [:]
    var flags: Set<String> = []
    var wantsHelp = false

    /// - Parameters:
    ///   - valued: option names that take a value.
    ///   - flags: option names that take none.
    init(_ args: [String], valued: Set<String>, flags allowed: Set<String>) throws {
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--help" || a == "-h" {
                wantsHelp = true
            } else if a.hasPrefix("--") {
                var name = String(a.dropFirst(2))
                var value: String? = nil
                if let eq = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                }
                if valued.contains(name) {
                    if value == nil {
                        guard i + 1 < args.count else { throw UsageError("option --\(name) needs a value") }
                        i += 1
                        value = args[i]
                    }
                    options[name] = value
                } else if allowed.contains(name) {
                    guard value == nil else { throw UsageError("--\(name) takes no value") }
                    flags.insert(name)
                } else {
                    throw UsageError("unknown option --\(name)")
                }
            } else {
                positionals.append(a)
            }
            i += 1
        }
    }

    func int(_ name: String, range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let v = options[name] else { return nil }
        guard let n = Int(v) else { throw UsageError("--\(name) must be an integer, got '\(v)'") }
        if let range, !range.contains(n) {
            throw UsageError("--\(name) must be in \(range.lowerBound)...\(range.upperBound), got \(n)")
        }
        return n
    }

    func duration(_ name: String) throws -> Duration? {
        guard let v = options[name] else { return nil }
        guard let d = parseDuration(v) else {
            throw UsageError("--\(name) must be a duration like 250ms, 90s, 5m, 2h or 1d, got '\(v)'")
        }
        return d
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }
}

/// Reads `DATABASE_URL` and opens a pool; a missing or malformed value is a usage error naming the problem.
/// One-shot commands exit right after their work: the process exit closes the connections.
func openPool(maxConnections: Int = 4) throws -> PGPool {
    guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
        throw UsageError("DATABASE_URL is not set (e.g. postgres://user@localhost:5432/nexcomet)")
    }
    do {
        return try PGPool(url: url, maxConnections: maxConnections)
    } catch let e as PGError {
        throw UsageError("DATABASE_URL is invalid: \(e.message)")
    }
}

func printErr(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Minimal JSON writing that keeps raw JSON (job args) verbatim, so big integers are not rounded.
indirect enum JSONOut {
    case string(String), int(Int64), double(Double), bool(Bool), null, raw(String)
    case array([JSONOut]), object([(String, JSONOut)])

    var text: String {
        switch self {
        case .string(let s): return jsonQuote(s)
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? String(d) : "null"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .raw(let r): return r
        case .array(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.map { jsonQuote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }
}

/// JSON string literal; one implementation shared with the logger.
func jsonQuote(_ s: String) -> String { Logger.jsonString(s) }
