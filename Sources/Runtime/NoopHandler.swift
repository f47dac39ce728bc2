import Foundation
import Postgres
import Queue

/// The diagnostic job kind `noop`, for smoke tests and benchmarks.
///
/// Args (all optional): `sleep_ms` (default 0) sleeps that long, honouring cancellation; `fail_times` (default 0)
/// fails attempts 1...fail_times, then succeeds; `record` (default false) writes one row per execution to
/// `nexjobs.noop_log` so tests can count executions; `record_tx` (default false) writes that row in the same
/// transaction as the job's completion (`JobContext.complete(on:)`), after any sleep or failure, so a crash can
/// neither lose the row of a completed job nor leave the row of a job that will run again.
public struct NoopHandler: JobHandler {
    public struct Args: Decodable, Sendable {
        public var sleep_ms: Int?
        public var fail_times: Int?
        public var record: Bool?
        public var record_tx: Bool?
    }

    public static let kind = "noop"
    public let timeout: Duration

    /// - Parameter timeout: per-attempt limit; default 5 minutes.
    public init(timeout: Duration = .seconds(300)) { self.timeout = timeout }

    public func run(_ args: Args, context: JobContext) async throws {
        if let ms = args.sleep_ms, ms < 0 { throw JobDiscard("sleep_ms must not be negative") }
        if args.record == true {
            try await context.pool.execute(
                """
                INSERT INTO nexjobs.noop_log (job_id, attempt, worker) VALUES (\(context.id), \(context.attempt), \(context.workerID))
                """)
        }
        if let ms = args.sleep_ms, ms > 0 { try await Task.sleep(for: .milliseconds(ms)) }
        if let n = args.fail_times, context.attempt <= n {
            throw NoopFailure(attempt: context.attempt, failTimes: n)
        }
        if args.record_tx == true {
            try await context.pool.withTransaction { c in
                try await c.execute(
                    """
                    INSERT INTO nexjobs.noop_log (job_id, attempt, worker) VALUES (\(context.id), \(context.attempt), \(context.workerID))
                    """)
                try await context.complete(on: c)
            }
        }
    }
}

struct NoopFailure: Error, CustomStringConvertible {
    var attempt: Int
    var failTimes: Int
    var description: String { "noop: failing attempt \(attempt) of the \(failTimes) requested by fail_times" }
}

extension NoopHandler.Args: CheckedArgs {
    /// `sleep_ms`: 0...86400000 (one day); `fail_times`: 0...1000.
    public func check() throws {
        if let ms = sleep_ms, !(0...86_400_000).contains(ms) {
            throw InputError("sleep_ms must be in 0...86400000, got \(ms)")
        }
        if let n = fail_times, !(0...1000).contains(n) { throw InputError("fail_times must be in 0...1000, got \(n)") }
    }
}
