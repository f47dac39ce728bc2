import Foundation
import Logs
import PGTestSupport
import Postgres
import Queue
import Synchronization
import XCTest

@testable import Runtime

/// A handler whose behaviour each test sets; it records what it saw.
struct ProbeHandler: JobHandler {
    struct Args: Decodable, Sendable {
        var mode: String
        var ms: Int?
    }
    static let kind = "probe"
    let timeout: Duration
    let probe: Probe

    func run(_ args: Args, context: JobContext) async throws {
        probe.started(context.id)
        switch args.mode {
        case "ok": return
        case "block":
            // Runs until released or cancelled.
            while !probe.isReleased(context.id) {
                do { try await Task.sleep(for: .milliseconds(10)) } catch {
                    probe.sawCancel(context.id)
                    throw error
                }
            }
        case "gate":
            // Counted as running in its queue until released (by id or by opening the gate) or cancelled.
            probe.enter(queue: context.queue)
            defer { probe.exit(queue: context.queue) }
            while !probe.isReleased(context.id) && !probe.gateIsOpen {
                try await Task.sleep(for: .milliseconds(10))
            }
        case "sleep": try await Task.sleep(for: .milliseconds(args.ms ?? 0))
        case "gauge":
            probe.enter()
            defer { probe.exit() }
            try await Task.sleep(for: .milliseconds(args.ms ?? 0))
        case "snooze": throw JobSnooze(.milliseconds(args.ms ?? 10), reason: "rate limited")
        case "snooze_forever": throw JobSnooze(.seconds(Int64.max), reason: "absurd")
        case "discard": throw JobDiscard("bad input: nothing to do")
        case "tx":
            try await context.pool.withTransaction { conn in
                try await conn.execute(
                    "INSERT INTO nexjobs.noop_log (job_id, attempt, worker) VALUES (\(context.id), \(context.attempt), 'tx')"
                )
                try await context.complete(on: conn)
            }
        default: throw JobDiscard("unknown mode")
        }
    }
}

final class Probe: @unchecked Sendable {
    // `lock` guards the sets.
    private let lock = NSLock()
    private var startedIDs: [Int64] = []
    private var released: Set<Int64> = []
    private var cancelled: Set<Int64> = []
    func started(_ id: Int64) {
        lock.lock()
        startedIDs.append(id)
        lock.unlock()
    }
    func release(_ id: Int64) {
        lock.lock()
        released.insert(id)
        lock.unlock()
    }
    func isReleased(_ id: Int64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return released.contains(id)
    }
    func sawCancel(_ id: Int64) {
        lock.lock()
        cancelled.insert(id)
        lock.unlock()
    }
    func wasCancelled(_ id: Int64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled.contains(id)
    }
    func starts(_ id: Int64) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return startedIDs.filter { $0 == id }.count
    }
    private var running = 0
    private(set) var mostRunning = 0
    func enter() {
        lock.lock()
        running += 1
        mostRunning = max(mostRunning, running)
        lock.unlock()
    }
    func exit() {
        lock.lock()
        running -= 1
        lock.unlock()
    }
    var peak: Int {
        lock.lock()
        defer { lock.unlock() }
        return mostRunning
    }
    private var queueRunning: [String: Int] = [:]
    private var queuePeak: [String: Int] = [:]
    private var gateOpen = false
    func enter(queue: String) {
        lock.lock()
        queueRunning[queue, default: 0] += 1
        queuePeak[queue] = max(queuePeak[queue] ?? 0, queueRunning[queue]!)
        lock.unlock()
    }
    func exit(queue: String) {
        lock.lock()
        queueRunning[queue, default: 0] -= 1
        lock.unlock()
    }
    /// Jobs of `queue` running now, and the most that ever ran at once.
    func running(_ queue: String) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return queueRunning[queue] ?? 0
    }
    func peak(_ queue: String) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return queuePeak[queue] ?? 0
    }
    /// Releases every `gate` job, running or still to start.
    func openGate() {
        lock.lock()
        gateOpen = true
        lock.unlock()
    }
    var gateIsOpen: Bool {
        lock.lock()
        defer { lock.unlock() }
        return gateOpen
    }
}

final class WorkerTests: XCTestCase {
    var db: TestDatabase!
    var client: JobClient!
    let probe = Probe()

    override func setUp() async throws {
        do { db = try await TestDatabase.create(name) } catch {
            XCTFail("\(error)")
            throw error
        }
        client = JobClient(pool: db.pool)
    }

    override func tearDown() async throws {
        await db?.drop()
    }

    func makeWorker(_ configure: (inout WorkerOptions) -> Void = { _ in }, timeout: Duration = .seconds(60))
        -> Worker
    {
        var o = WorkerOptions()
        o.pollInterval = .milliseconds(100)
        o.retryPolicy = .exponentialJitter(base: .milliseconds(200), maxBackoff: .seconds(5))
        o.shutdownGrace = .seconds(5)
        configure(&o)
        var r = JobRegistry()
        r.register(NoopHandler())
        r.register(ProbeHandler(timeout: timeout, probe: probe))
        return Worker(pool: db.pool, registry: r, options: o, logger: Logger(label: "test", minimum: .error))
    }

    /// Runs `body` while a worker runs; stops the worker afterwards.
    func withWorker(_ worker: Worker, _ body: () async throws -> Void) async throws {
        let task = Task { try await worker.run() }
        do { try await body() } catch {
            worker.shutdown()
            _ = try? await task.value
            throw error
        }
        worker.shutdown()
        try await task.value
    }

    func state(_ id: Int64) async throws -> JobState { try await client.job(id).state }

    func testSQLEnqueueDefaultsAndReturnsId() async throws {
        let id: Int64 = try await db.pool.query("SELECT nexjobs.enqueue('noop')").first!.decode(0)
        let job = try await client.job(id)
        XCTAssertEqual(job.queue, "default")
        XCTAssertEqual(job.state, .available)
        XCTAssertEqual(job.maxAttempts, 20)
        XCTAssertEqual(job.args, "{}")
        let id2: Int64 = try await db.pool.query(
            """
            SELECT nexjobs.enqueue('noop', '{"a":1}', 'q2', 5, now() + interval '1 hour', 'k', 3)
            """
        ).first!.decode(0)
        let j2 = try await client.job(id2)
        XCTAssertEqual([j2.queue, j2.uniqueKey], ["q2", "k"])
        XCTAssertEqual([j2.priority, j2.maxAttempts], [5, 3])
        XCTAssertGreaterThan(j2.runAt, Date().addingTimeInterval(3000))
    }

    func testConcurrentEnqueuesWithOneUniqueKeyLeaveOneLiveJob() async throws {
        let client = self.client!
        let results = try await withThrowingTaskGroup(of: EnqueueResult.self) { group in
            for _ in 0..<100 {
                group.addTask { try await client.enqueue(NewJob(kind: "noop", uniqueKey: "only-one")) }
            }
            return try await group.reduce(into: [EnqueueResult]()) { $0.append($1) }
        }
        XCTAssertEqual(Set(results.map(\.id)).count, 1)
        XCTAssertEqual(results.filter { !$0.duplicate }.count, 1)
        let live: Int = try await db.pool.query(
            "SELECT count(*)::int FROM nexjobs.jobs WHERE unique_key = 'only-one'"
        ).first!.decode(0)
        XCTAssertEqual(live, 1)
    }

    func testUniqueKeyIsFreedWhenTheJobFinishes() async throws {
        let first = try await client.enqueue(NewJob(kind: "noop", uniqueKey: "k"))
        try await client.cancel(first.id)
        let second = try await client.enqueue(NewJob(kind: "noop", uniqueKey: "k"))
        XCTAssertFalse(second.duplicate)
        XCTAssertNotEqual(first.id, second.id)
    }

    func testEnqueueInsideCallersTransactionRollsBackWithIt() async throws {
        struct Abort: Error {}
        do {
            try await db.pool.withTransaction { conn -> Int in
                _ = try await self.client.enqueue(NewJob(kind: "noop"), on: conn)
                throw Abort()
            }
        } catch is Abort {}
        let n: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs").first!.decode(0)
        XCTAssertEqual(n, 0)
        let id = try await db.pool.withTransaction { conn in
            try await self.client.enqueue(NewJob(kind: "noop"), on: conn).id
        }
        let st = try await state(id)
        XCTAssertEqual(st, .available)
    }

    func testBulkEnqueueInsertsThousandsAndSkipsLiveDuplicates() async throws {
        var jobs = (0..<12_000).map { NewJob(kind: "noop", args: "{\"i\":\($0)}") }
        jobs.append(NewJob(kind: "noop", uniqueKey: "dup"))
        jobs.append(NewJob(kind: "noop", uniqueKey: "dup"))
        let ids = try await client.enqueueMany(jobs)
        XCTAssertEqual(ids.count, 12_001)
    }

    func testBadInputChangesNothing() async throws {
        for bad in [
            NewJob(kind: "noop", args: "[1,2]"), NewJob(kind: "noop", args: "{"), NewJob(kind: "Bad Kind"),
            NewJob(kind: "noop", queue: ""), NewJob(kind: "noop", maxAttempts: 0),
        ] {
            do {
                _ = try await client.enqueue(bad)
                XCTFail("accepted \(bad)")
            } catch let e as QueueError {
                guard case .invalidInput = e else { return XCTFail("\(e)") }
            }
        }
        let n: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.jobs").first!.decode(0)
        XCTAssertEqual(n, 0)
        do {
            _ = try await client.job(987654)
            XCTFail()
        } catch QueueError.notFound(let id) { XCTAssertEqual(id, 987654) }
    }

    func testFailTimesTwoCompletesOnAttemptThreeWithGrowingBackoff() async throws {
        let id = try await client.enqueue(NewJob(kind: "noop", args: #"{"fail_times": 2}"#)).id
        try await withWorker(makeWorker()) {
            try await assertEventually { try await state(id) == .completed }
        }
        let job = try await client.job(id)
        XCTAssertEqual(job.attempt, 3)
        XCTAssertEqual(job.errors.map(\.attempt), [1, 2])
        // Equal-jitter backoff from base 200 ms: the first wait is >= 100 ms, the second >= 200 ms.
        let t1 = PGTimestamp.parse(job.errors[0].at)!
        let t2 = PGTimestamp.parse(job.errors[1].at)!
        let t3 = job.attemptedAt!
        XCTAssertGreaterThanOrEqual(t2.timeIntervalSince(t1), 0.1)
        XCTAssertGreaterThanOrEqual(t3.timeIntervalSince(t2), 0.2)
    }

    func testExhaustedAttemptsEndFailedWithEveryErrorAndRetryRevives() async throws {
        let id = try await client.enqueue(NewJob(kind: "noop", args: #"{"fail_times": 5}"#, maxAttempts: 3)).id
        try await withWorker(makeWorker { $0.retryPolicy = .constant(.milliseconds(10)) }) {
            try await assertEventually { try await state(id) == .failed }
            var job = try await client.job(id)
            XCTAssertEqual(job.attempt, 3)
            XCTAssertEqual(job.errors.map(\.attempt), [1, 2, 3])
            XCTAssertTrue(job.errors.allSatisfy { $0.error.contains("fail_times") })
            XCTAssertNotNil(job.finishedAt)
            try await client.retry(id)
            try await assertEventually {
                let j = try await client.job(id)
                return j.attempt == 4 && j.state == .failed
            }
            job = try await client.job(id)
            XCTAssertEqual(job.errors.count, 4)
        }
    }

    func testUnknownKindAndUndecodableArgsFailAtOnceWithoutRetries() async throws {
        let unknown = try await client.enqueue(NewJob(kind: "no_such_kind")).id
        let badArgs = try await client.enqueue(NewJob(kind: "noop", args: #"{"sleep_ms": "soon"}"#)).id
        try await withWorker(makeWorker()) {
            try await assertEventually {
                let a = try await state(unknown)
                let b = try await state(badArgs)
                return a == .failed && b == .failed
            }
        }
        let u = try await client.job(unknown)
        XCTAssertEqual(u.attempt, 1)
        XCTAssertTrue(u.errors.first?.error.contains("unknown job kind 'no_such_kind'") ?? false, "\(u.errors)")
        let b = try await client.job(badArgs)
        XCTAssertEqual(b.attempt, 1)
        XCTAssertTrue(b.errors.first?.error.contains("sleep_ms") ?? false, "\(b.errors)")
    }

    func testSnoozeDoesNotChargeAnAttempt() async throws {
        let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "snooze", "ms": 60000}"#)).id
        try await withWorker(makeWorker()) {
            try await assertEventually {
                let st = try await state(id)
                return self.probe.starts(id) == 1 && st == .available
            }
        }
        let job = try await client.job(id)
        XCTAssertEqual(job.attempt, 0)
        XCTAssertTrue(job.errors.isEmpty)
        XCTAssertGreaterThan(job.runAt, Date().addingTimeInterval(30))
    }

    func testTimeoutCancelsTheAttemptAndRetries() async throws {
        let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "block"}"#, maxAttempts: 1)).id
        let worker = makeWorker(timeout: .milliseconds(200))
        try await withWorker(worker) {
            try await assertEventually { try await state(id) == .failed }
        }
        let job = try await client.job(id)
        XCTAssertTrue(job.errors.first?.error.contains("timed out") ?? false, "\(job.errors)")
        XCTAssertTrue(probe.wasCancelled(id))
    }

    func testCancellingARunningJobStopsIt() async throws {
        let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "block"}"#)).id
        try await withWorker(makeWorker()) {
            await assertEventually { self.probe.starts(id) == 1 }
            try await client.cancel(id)
            await assertEventually(timeout: .seconds(10)) { self.probe.wasCancelled(id) }
        }
        let final = try await state(id)
        XCTAssertEqual(final, .cancelled)
    }

    func testCompletionFromAWorkerThatLostItsLeaseDoesNotOverwrite() async throws {
        let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "block"}"#)).id
        // Long heartbeat so the stale worker does not notice before it tries to complete.
        let worker = makeWorker {
            $0.heartbeatInterval = .seconds(60)
            $0.leaseDuration = .seconds(120)
        }
        try await withWorker(worker) {
            await assertEventually { self.probe.starts(id) == 1 }
            // Another worker takes over the job (as after a rescue): attempt 2, a different owner.
            try await db.pool.execute(
                """
                UPDATE nexjobs.jobs SET attempt = attempt + 1, locked_by = 'other-worker' WHERE id = \(id)
                """)
            probe.release(id)
            await assertEventually { worker.jobsFinished == 1 }
            try await Task.sleep(for: .milliseconds(300))  // let the completer flush (it must not apply)
        }
        let job = try await client.job(id)
        XCTAssertEqual(job.state, .running)
        XCTAssertEqual(job.lockedBy, "other-worker")
        XCTAssertEqual(job.attempt, 2)
    }

    func testHandlerCompletesInItsOwnTransaction() async throws {
        let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "tx"}"#)).id
        try await withWorker(makeWorker()) {
            try await assertEventually { try await state(id) == .completed }
        }
        let n: Int = try await db.pool.query("SELECT count(*)::int FROM nexjobs.noop_log WHERE job_id = \(id)").first!
            .decode(0)
        XCTAssertEqual(n, 1)
    }

    func testShutdownHandsBackUnfinishedJobsWithoutChargingAnAttempt() async throws {
        let id = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode": "block"}"#)).id
        let worker = makeWorker { $0.shutdownGrace = .milliseconds(300) }
        let task = Task { try await worker.run() }
        await assertEventually { self.probe.starts(id) == 1 }
        worker.shutdown()
        try await task.value
        let job = try await client.job(id)
        XCTAssertEqual(job.state, .available)
        XCTAssertEqual(job.attempt, 0)
        XCTAssertTrue(job.errors.isEmpty)
        XCTAssertNil(job.lockedBy)
    }

    func testRescueRetriesJobsOfADeadWorkerExactlyOnce() async throws {
        let id = try await client.enqueue(NewJob(kind: "noop")).id
        try await db.pool.execute(
            """
            INSERT INTO nexjobs.workers (id, host, pid, queues, concurrency, lease_until)
            VALUES ('dead', 'h', 1, '{default}', 1, now() - interval '1 second')
            """)
        try await db.pool.execute(
            """
            UPDATE nexjobs.jobs SET state = 'running', attempt = 1, locked_by = 'dead',
                   locked_until = now() + interval '1 hour' WHERE id = \(id)
            """)
        let client = self.client!
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<5 { group.addTask { try await client.rescueExpired() } }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(counts, 1)
        let job = try await client.job(id)
        XCTAssertEqual(job.state, .retryable)
        XCTAssertTrue(job.errors.first?.error.contains("lost its lease") ?? false, "\(job.errors)")
    }

    func testPruneDeletesOnlyFinishedJobsPastRetention() async throws {
        let ids = try await client.enqueueMany((0..<3).map { _ in NewJob(kind: "noop") })
        try await db.pool.execute(
            """
            UPDATE nexjobs.jobs SET state = 'completed', finished_at = now() - interval '2 days' WHERE id = \(ids[0])
            """)
        try await db.pool.execute(
            """
            UPDATE nexjobs.jobs SET state = 'failed', finished_at = now() - interval '2 days' WHERE id = \(ids[1])
            """)
        let pruned = try await client.prune()
        XCTAssertEqual(pruned, 1)
        let left: [Int64] = try await db.pool.query("SELECT id FROM nexjobs.jobs ORDER BY id").map { try $0.decode(0) }
        XCTAssertEqual(left, [ids[1], ids[2]])
    }

    /// Jobs are claimed both on the listener thread (right after each NOTIFY) and by the polling claim loop; the
    /// two share the slots and never run more than `concurrency` jobs at once.
    func testListenerAndClaimLoopTogetherNeverExceedConcurrency() async throws {
        // A 30 s poll: every claim follows a NOTIFY (on the listener) or a wake-up of the claim loop (a full batch,
        // a freed slot, a listener that found no free slot), so both paths are exercised and neither may leak.
        let worker = makeWorker {
            $0.concurrency = 3
            $0.pollInterval = .seconds(30)
        }
        try await withWorker(worker) {
            // Ten bursts of six single enqueues (one NOTIFY each), each burst after the worker went idle: the
            // first NOTIFYs of a burst find free slots (listener claims), later ones find them full.
            for burst in 0..<10 {
                var ids: [Int64] = []
                for i in 0..<6 {
                    ids.append(
                        try await client.enqueue(
                            NewJob(kind: "probe", args: #"{"mode": "gauge", "ms": \#((burst + i) % 3 == 0 ? 40 : 5)}"#)
                        ).id)
                }
                try await assertEventually(timeout: .seconds(30)) {
                    let done: Int = try await db.pool.query(
                        "SELECT count(*)::int FROM nexjobs.jobs WHERE id = ANY(\(ids)::bigint[]) AND state = 'completed'"
                    ).first!.decode(0)
                    return done == ids.count
                }
            }
        }
        XCTAssertLessThanOrEqual(probe.peak, 3)
        XCTAssertGreaterThanOrEqual(probe.peak, 2, "jobs did run side by side")
        XCTAssertGreaterThan(worker.directClaims.load(ordering: .relaxed), 0, "some claims ran on the listener")
    }

    /// SIGTERM while a claim on the listener connection is in flight: the claimed job still runs, and its result
    /// is still written (the background loops wait for the drain, not just for "stopping").
    func testShutdownDuringAListenerClaimStillRecordsItsJob() async throws {
        // Claims of one job at a time: a claim loop statement stuck behind the lock below holds one slot, not all.
        let worker = makeWorker {
            $0.pollInterval = .seconds(30)
            $0.claimBatch = 1
        }
        // Due in a moment (no NOTIFY for a future job), so neither the worker's first claim nor anything before
        // the lock takes it.
        let id = try await client.enqueue(
            NewJob(kind: "noop", runAt: Date().addingTimeInterval(1))
        ).id
        let task = Task { try await worker.run() }
        let blocker = try await PGConnection.connect(PGConfig(db.url))
        try await blocker.simpleQuery("BEGIN; LOCK TABLE nexjobs.jobs IN EXCLUSIVE MODE")
        try await assertEventually(timeout: .seconds(10)) {
            try await db.pool.query("SELECT now() > run_at FROM nexjobs.jobs WHERE id = \(id)").first!.decode(0)
        }
        // Wake the worker by hand (an enqueue would wait for the lock too); its listener claim now waits.
        try await db.pool.execute("SELECT pg_notify('nexjobs_jobs', 'default')")
        try await assertEventually(timeout: .seconds(5)) {
            try await db.lockWaiters(applicationName: "nexjobs-listener") == 1
        }
        worker.shutdown()
        try await blocker.simpleQuery("COMMIT")
        await blocker.close()
        try await task.value
        let final = try await state(id)
        XCTAssertEqual(final, .completed, "the job claimed during shutdown ran and was recorded")
        XCTAssertEqual(worker.directClaims.load(ordering: .relaxed), 1)
    }

    func testNotifyWakesAnIdleWorkerFasterThanPolling() async throws {
        let worker = makeWorker { $0.pollInterval = .seconds(30) }
        try await withWorker(worker) {
            try await Task.sleep(for: .milliseconds(300))  // let it go idle on its 30 s poll
            let id = try await client.enqueue(NewJob(kind: "noop")).id
            try await assertEventually(timeout: .seconds(5)) { try await state(id) == .completed }
        }
    }
}

extension WorkerTests {
    /// A handler's absurd snooze neither traps the worker (Duration -> milliseconds overflow) nor wedges its
    /// completer (a run_at beyond timestamptz's range would fail the batch's write for good): it is bounded at
    /// 10 years, and the worker goes on with other jobs.
    func testAnAbsurdSnoozeIsBoundedAndTheWorkerGoesOn() async throws {
        let worker = makeWorker()
        try await withWorker(worker) {
            let snoozed = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode":"snooze_forever"}"#)).id
            let ok = try await client.enqueue(NewJob(kind: "probe", args: #"{"mode":"ok"}"#)).id
            try await assertEventually(timeout: .seconds(30)) {
                try await self.db.pool.query(
                    """
                    SELECT state = 'available' AND run_at > now() + interval '9 years' AND attempt = 0
                      FROM nexjobs.jobs WHERE id = \(snoozed)
                    """
                ).first?.decode(0, as: Bool.self) == true
            }
            try await assertEventually(timeout: .seconds(30)) { try await self.client.job(ok).state == .completed }
        }
    }
}
