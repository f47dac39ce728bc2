import Foundation
import Logs
import Postgres
import Queue
import Runtime
import Sync

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

    /// An integer option checked against its documented range (CheckedInput).
    func int(_ name: String, range: ClosedRange<Int>) throws -> Int? {
        try options[name].map { try CheckedInput.integer($0, name: "--\(name)", range: range) }
    }

    func int64(_ name: String, range: ClosedRange<Int64>) throws -> Int64? {
        try options[name].map { try CheckedInput.integer($0, name: "--\(name)", range: range) }
    }

    /// A duration option checked against its documented range.
    func duration(_ name: String, range: ClosedRange<Duration>) throws -> Duration? {
        try options[name].map { try CheckedInput.duration($0, name: "--\(name)", range: range) }
    }

    /// A timestamp option: ISO 8601, a real calendar time, 1970-01-01T00:00:00Z...9999-12-31T23:59:59Z.
    func timestamp(_ name: String) throws -> Date? {
        try options[name].map { try CheckedInput.timestamp($0, name: "--\(name)") }
    }

    /// A text option of `bytes` UTF-8 bytes.
    func text(_ name: String, bytes: ClosedRange<Int>) throws -> String? {
        try options[name].map { try CheckedInput.text($0, name: "--\(name)", bytes: bytes) }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }
}

/// A positive database id (1...2^63-1) given as a positional argument or option value.
func databaseID(_ text: String, name: String) throws -> Int64 {
    try CheckedInput.integer(text, name: name, range: 1...Int64.max)
}

/// Checks the numeric `NEXJOBS_*` settings and the log settings before a long-running process starts: a value
/// outside its documented range is a usage error (exit 2) naming the variable.
func checkSettingsEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws {
    do { try SyncSettings.checkEnvironment(env) } catch let e as InputError { throw UsageError(e.message) }
    if let level = env["NEXJOBS_LOG_LEVEL"], !level.isEmpty,
        !["debug", "info", "warn", "warning", "error"].contains(level.lowercased())
    {
        throw UsageError("NEXJOBS_LOG_LEVEL must be debug, info, warning or error, got \(CheckedInput.quote(level))")
    }
    if let format = env["NEXJOBS_LOG_FORMAT"], !format.isEmpty, !["logfmt", "json"].contains(format.lowercased()) {
        throw UsageError("NEXJOBS_LOG_FORMAT must be logfmt or json, got \(CheckedInput.quote(format))")
    }
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
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case raw(String)
    case array([JSONOut])
    case object([(String, JSONOut)])

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
