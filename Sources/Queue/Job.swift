import Foundation
import Postgres

/// The life cycle of a job.
public enum JobState: String, Sendable, CaseIterable, Codable {
    case available, running, completed, retryable, failed, cancelled

    /// Parses a state name; the error lists the valid ones.
    public static func parse(_ text: String) throws -> JobState {
        guard let s = JobState(rawValue: text.lowercased()) else {
            throw QueueError.invalidInput(
                "unknown state \(CheckedInput.quote(text)); expected one of: \(allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        return s
    }
}

/// One entry of a job's error history.
public struct JobAttemptError: Sendable, Codable, Equatable {
    public var at: String
    public var attempt: Int
    public var error: String
    public var worker: String?
}

/// A job row as operators see it.
public struct JobRecord: Sendable {
    public var id: Int64
    public var kind: String
    public var queue: String
    public var args: String
    public var state: JobState
    public var priority: Int
    public var runAt: Date
    public var attempt: Int
    public var maxAttempts: Int
    public var uniqueKey: String?
    public var lockedBy: String?
    public var lockedUntil: Date?
    public var errors: [JobAttemptError]
    public var createdAt: Date
    public var attemptedAt: Date?
    public var finishedAt: Date?

    static let columns = """
        id, kind, queue, args::text, state, priority, run_at, attempt, max_attempts, unique_key, locked_by,
        locked_until, errors::text, created_at, attempted_at, finished_at
        """

    init(row: PGRow) throws {
        id = try row.decode(0)
        kind = try row.decode(1)
        queue = try row.decode(2)
        args = try row.decode(3)
        state = try JobState.parse(try row.decode(4))
        priority = try row.decode(5)
        runAt = try row.decode(6)
        attempt = try row.decode(7)
        maxAttempts = try row.decode(8)
        uniqueKey = try row.decode(9, as: String?.self)
        lockedBy = try row.decode(10, as: String?.self)
        lockedUntil = try row.decode(11, as: Date?.self)
        let errorsText: String = try row.decode(12)
        errors = (try? JSONDecoder().decode([JobAttemptError].self, from: Data(errorsText.utf8))) ?? []
        createdAt = try row.decode(13)
        attemptedAt = try row.decode(14, as: Date?.self)
        finishedAt = try row.decode(15, as: Date?.self)
    }
}

/// Errors from queue operations, with messages meant for operators.
public enum QueueError: Error, CustomStringConvertible, Sendable {
    case invalidInput(String)
    case notFound(Int64)
    case conflict(String)

    public var description: String {
        switch self {
        case .invalidInput(let m): return m
        case .notFound(let id): return "job \(id) not found"
        case .conflict(let m): return m
        }
    }
}
