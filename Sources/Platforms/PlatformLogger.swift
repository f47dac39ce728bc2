import Foundation

/// A minimal structured log sink passed into the clients (the library makes no logger of its own).
///
/// Messages and metadata never contain tokens or secrets.
public struct PlatformLogger: Sendable {
    public enum Level: String, Sendable, Comparable {
        case debug, info, warning, error

        private var rank: Int {
            switch self {
            case .debug: return 0
            case .info: return 1
            case .warning: return 2
            case .error: return 3
            }
        }
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }
    }

    private let sink: @Sendable (Level, String, [String: String]) -> Void

    /// Creates a logger that hands every entry to `sink`.
    public init(_ sink: @escaping @Sendable (Level, String, [String: String]) -> Void) {
        self.sink = sink
    }

    /// Drops everything.
    public static let disabled = PlatformLogger { _, _, _ in }

    /// Writes `level message key=value ...` lines to standard error, from `minimum` up.
    public static func standardError(minimum: Level = .info) -> PlatformLogger {
        PlatformLogger { level, message, metadata in
            guard level >= minimum else { return }
            let meta = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            FileHandle.standardError.write(Data("\(level.rawValue) \(message) \(meta)\n".utf8))
        }
    }

    public func log(_ level: Level, _ message: String, _ metadata: [String: String] = [:]) {
        sink(level, message, metadata)
    }
}
