import Foundation
import Logs
import Postgres
import Synchronization

/// Code that runs jobs of one kind.
///
/// The runtime decodes `Args` from the job's JSON args (a decoding failure fails the job at once, without retries),
/// runs `run` with the kind's `timeout`, and records the outcome: return to complete; throw `JobSnooze` to run again
/// later without charging an attempt; throw `JobDiscard` to fail at once; throw anything else to retry with backoff
/// until `max_attempts`, then fail. A cancelled job (operator cancel, timeout, shutdown) sees task cancellation.
public protocol JobHandler: Sendable {
    /// The job's args. Decoding must be a pure function of the JSON text (a value type, no random or time-based
    /// defaults): the runtime reuses a recent decoding of byte-identical args for another job.
    associatedtype Args: Decodable & Sendable
    /// The job kind this handler runs.
    static var kind: String { get }
    /// Longest one attempt may run before it is cancelled and retried. Default 30 minutes.
    var timeout: Duration { get }
    func run(_ args: Args, context: JobContext) async throws
}

extension JobHandler {
    public var timeout: Duration { .seconds(1800) }
}

/// Job args with documented ranges beyond their JSON shape. `check()` runs when a job of a known kind is enqueued
/// through the CLI, when a schedule of that kind is added or enabled, and again before the handler runs (a job
/// whose args fail is discarded with the message).
public protocol CheckedArgs {
    /// Throws `InputError` naming the field and its range.
    func check() throws
}

/// Run again after `delay` without charging an attempt (e.g. the API said "rate limited").
public struct JobSnooze: Error, CustomStringConvertible {
    public var delay: Duration
    public var reason: String
    public init(_ delay: Duration, reason: String = "snoozed") {
        self.delay = delay
        self.reason = reason
    }
    public var description: String { "\(reason) (snoozed for \(delay))" }
}

/// Fail the job now, without further attempts (bad input, permanent errors).
public struct JobDiscard: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What a running job knows about itself.
public struct JobContext: Sendable {
    public let id: Int64
    public let kind: String
    public let queue: String
    public let attempt: Int
    public let maxAttempts: Int
    public let workerID: String
    public let pool: PGPool
    public let logger: Logger
    let completion: CompletionFlag

    public init(
        id: Int64, kind: String, queue: String, attempt: Int, maxAttempts: Int, workerID: String,
        pool: PGPool, logger: Logger
    ) {
        self.id = id
        self.kind = kind
        self.queue = queue
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.workerID = workerID
        self.pool = pool
        self.logger = logger
        self.completion = CompletionFlag()
    }

    /// Marks the job completed on `connection`, inside the handler's own open transaction, so its writes and the
    /// completion commit together. Fenced like every completion: throws `JobLeaseLost` (roll back!) when the job is
    /// no longer running under this worker and attempt.
    public func complete(on connection: PGConnection) async throws {
        let n = try await connection.execute(JobStore.completeOne(id: id, attempt: attempt, worker: workerID))
        guard n == 1 else { throw JobLeaseLost(id: id) }
        completion.set()
    }

    /// True once `complete(on:)` succeeded (the runtime then writes nothing more).
    public var completedByHandler: Bool { completion.value }
}

/// The job is no longer this worker's to finish (cancelled, rescued or retried elsewhere).
public struct JobLeaseLost: Error, CustomStringConvertible {
    public var id: Int64
    public var description: String { "job \(id) is no longer running under this worker" }
}

final class CompletionFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var value: Bool { flag.load(ordering: .acquiring) }
    func set() { flag.store(true, ordering: .releasing) }
}

/// A type-erased handler: decodes args from JSON text and runs.
public struct AnyJobHandler: Sendable {
    public let kind: String
    public let timeout: Duration
    let body: @Sendable (String, JobContext) async throws -> Void
    let validate: @Sendable (String) throws -> Void

    public init<H: JobHandler>(_ handler: H) {
        kind = H.kind
        timeout = handler.timeout
        validate = { argsText in
            let args: H.Args
            do {
                args = try JSONDecoder().decode(H.Args.self, from: Data(argsText.utf8))
            } catch {
                throw QueueError.invalidInput("args do not decode for kind \(H.kind): \(describeDecodingError(error))")
            }
            do {
                try (args as? any CheckedArgs)?.check()
            } catch let e as InputError {
                throw QueueError.invalidInput("args of kind \(H.kind): \(e.message)")
            }
        }
        // Jobs of one kind often share their args text (bulk enqueues): the last few decodings are kept, since
        // decoding is a pure function of the text and JSONDecoder was ~6 % of a worker's CPU draining no-ops.
        // Texts are compared byte for byte (String == would equate canonically equivalent Unicode). Args types
        // must decode purely (value types, no random defaults): a cached value is handed to several jobs.
        let recent = Mutex<[(String, H.Args)]>([])
        body = { argsText, context in
            let cached =
                argsText.utf8.count <= 512
                ? recent.withLock { list in list.first { $0.0.utf8.elementsEqual(argsText.utf8) }?.1 } : nil
            let args: H.Args
            if let cached {
                args = cached
            } else {
                do {
                    args = try JSONDecoder().decode(H.Args.self, from: Data(argsText.utf8))
                } catch {
                    throw JobDiscard("args do not decode for kind \(H.kind): \(describeDecodingError(error))")
                }
                do {
                    try (args as? any CheckedArgs)?.check()
                } catch let e as InputError {
                    throw JobDiscard("args of kind \(H.kind): \(e.message)")
                }
                if argsText.utf8.count <= 512 {
                    recent.withLock { list in
                        list.insert((argsText, args), at: 0)
                        if list.count > 8 { list.removeLast() }
                    }
                }
            }
            try await handler.run(args, context: context)
        }
    }

    public func run(argsJSON: String, context: JobContext) async throws { try await body(argsJSON, context) }
}

/// The handlers a worker knows, by kind.
public struct JobRegistry: Sendable {
    private(set) var handlers: [String: AnyJobHandler] = [:]

    public init() {}

    public mutating func register<H: JobHandler>(_ handler: H) {
        handlers[H.kind] = AnyJobHandler(handler)
    }

    public func handler(for kind: String) -> AnyJobHandler? { handlers[kind] }

    /// Checks `json` against what the handler of `kind` accepts (decoding and `CheckedArgs`). Kinds this
    /// registry does not know pass: another build may run them.
    /// - Throws: `QueueError.invalidInput` naming the field and its range.
    public func validateArgs(kind: String, json: String) throws {
        try handlers[kind]?.validate(json)
    }
    public var kinds: [String] { handlers.keys.sorted() }
    /// The longest timeout among registered kinds (bounds a job's hard lease deadline).
    public var longestTimeout: Duration { handlers.values.map(\.timeout).max() ?? .seconds(1800) }
}

func describeDecodingError(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "invalid JSON" }
    func path(_ c: [CodingKey]) -> String { c.isEmpty ? "top level" : c.map(\.stringValue).joined(separator: ".") }
    switch e {
    case .typeMismatch(let t, let c): return "\(path(c.codingPath)): expected \(t)"
    case .valueNotFound(let t, let c): return "\(path(c.codingPath)): missing \(t) value"
    case .keyNotFound(let k, _): return "missing key '\(k.stringValue)'"
    case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
    @unknown default: return "invalid args"
    }
}
