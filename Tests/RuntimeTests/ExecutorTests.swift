import Foundation
import Logs
import Postgres
import XCTest

@testable import Queue
@testable import Runtime

/// The executor without a database: each test runs one attempt of a scripted handler and checks its disposition.
/// The pool in the context points nowhere and is never used.
final class ExecutorTests: XCTestCase {
    struct Script: JobHandler {
        struct Args: Decodable, Sendable { var n: Int }
        static let kind = "script"
        let timeout: Duration = .milliseconds(250)
        let body: @Sendable (Args, JobContext) async throws -> Void
        func run(_ args: Args, context: JobContext) async throws { try await body(args, context) }
    }
    struct Boom: Error, CustomStringConvertible { var description: String { "boom: the API said no" } }

    let job = ClaimedJob(id: 7, kind: "script", queue: "default", args: #"{"n": 1}"#, attempt: 2, maxAttempts: 5)

    func context() throws -> JobContext {
        JobContext(
            id: job.id, kind: job.kind, queue: job.queue, attempt: job.attempt, maxAttempts: job.maxAttempts,
            workerID: "w", pool: try PGPool(url: "postgres://nobody@127.0.0.1:1/none"),
            logger: Logger(label: "test", minimum: .error))
    }

    func run(
        _ body: @escaping @Sendable (Script.Args, JobContext) async throws -> Void,
        job: ClaimedJob? = nil, signals: JobExecutor.Signals = .init()
    ) async throws -> Disposition {
        await JobExecutor.execute(
            handler: AnyJobHandler(Script(body: body)), job: job ?? self.job,
            context: try context(), signals: signals)
    }

    func testReturningCompletes() async throws {
        let seen = try await run { args, ctx in
            XCTAssertEqual(args.n, 1)
            XCTAssertEqual(ctx.attempt, 2)
        }
        XCTAssertEqual(seen, .completed)
    }

    func testCompletedByTheHandlerWritesNothingMore() async throws {
        let d = try await run { _, ctx in ctx.completion.set() }
        XCTAssertEqual(d, .alreadyCompleted)
    }

    func testSnoozeDiscardAndLeaseLost() async throws {
        let snoozed = try await run { _, _ in throw JobSnooze(.seconds(30), reason: "rate limited") }
        XCTAssertEqual(snoozed, .snooze(.seconds(30), "rate limited"))
        let discarded = try await run { _, _ in throw JobDiscard("bad input") }
        XCTAssertEqual(discarded, .discard("bad input"))
        let lost = try await run { _, ctx in throw JobLeaseLost(id: ctx.id) }
        XCTAssertEqual(lost, .drop("lease lost"))
    }

    func testAnyOtherErrorRetriesWithItsDescription() async throws {
        let d = try await run { _, _ in throw Boom() }
        XCTAssertEqual(d, .retry("boom: the API said no"))
    }

    func testAfterATimeoutWhateverIsThrownIsATimeout() async throws {
        let d = try await run({ _, _ in throw CancellationError() }, signals: .init(timedOut: { true }))
        XCTAssertEqual(d, .retry("timed out after 0.25 seconds"))
        // Even a snooze thrown by a handler cancelled for its timeout counts as the timeout.
        let s = try await run({ _, _ in throw JobSnooze(.seconds(1)) }, signals: .init(timedOut: { true }))
        XCTAssertEqual(s, .retry("timed out after 0.25 seconds"))
    }

    func testCancellationHandsBackOnlyWhileStopping() async throws {
        let stopping = try await run({ _, _ in throw CancellationError() }, signals: .init(stopping: { true }))
        XCTAssertEqual(stopping, .handBack)
        let running = try await run({ _, _ in throw CancellationError() })
        guard case .retry = running else { return XCTFail("expected a retry, got \(running)") }
    }

    func testUnknownKindIsDiscardedNamingTheKnownKinds() async throws {
        let d = await JobExecutor.execute(handler: nil, job: job, context: try context(), knownKinds: ["a", "b"])
        XCTAssertEqual(d, .discard("unknown job kind 'script'; this worker runs: a, b"))
    }

    func testArgsThatDoNotDecodeAreDiscardedWithoutRunning() async throws {
        var bad = job
        bad.args = #"{"n": "one"}"#
        let d = try await run({ _, _ in XCTFail("must not run") }, job: bad)
        guard case .discard(let m) = d else { return XCTFail("expected a discard, got \(d)") }
        XCTAssertTrue(m.hasPrefix("args do not decode for kind script: n: expected"), m)
    }

    func testRetryOfTheLastAttemptFails() {
        let last = JobStore.Unfinished.retry(id: 1, attempt: 5, maxAttempts: 5, error: "x", delay: .seconds(9))
        XCTAssertEqual(last.state, "failed")
        XCTAssertEqual(last.delay, .zero)
        let more = JobStore.Unfinished.retry(
            id: 1, attempt: 4, maxAttempts: 5, error: String(repeating: "e", count: 3000),
            delay: .seconds(9))
        XCTAssertEqual(more.state, "retryable")
        XCTAssertEqual(more.delay, .seconds(9))
        XCTAssertEqual(more.error?.count, 2000, "error text is capped")
    }
}
