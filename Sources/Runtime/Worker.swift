import Foundation
import Logs
import Postgres
import Queue
import Synchronization

/// Settings of a worker process. Every field has a documented default.
public struct WorkerOptions: Sendable {
    /// Queues to claim from. Default `["default"]`.
    public var queues: [String] = ["default"]
    /// Where the LISTEN connection (and its wake-up claims, a prepared statement) connects; nil: the pool's
    /// database. Behind PgBouncer in transaction mode this must be PostgreSQL itself (`NEXJOBS_DIRECT_DATABASE_URL`).
    public var listenerConfig: PGConfig?
    /// Jobs run at once. Default 10.
    public var concurrency: Int = 10
    /// Most jobs claimed by one statement. Default 1,000 (bounded by free slots).
    public var claimBatch: Int = 1000
    /// Fallback poll when no NOTIFY arrives. Default 1 s.
    public var pollInterval: Duration = .seconds(1)
    /// Heartbeat period; also how often cancellations are checked. Default 2 s.
    public var heartbeatInterval: Duration = .seconds(2)
    /// A worker silent this long loses its jobs to the rescuer. Default 15 s.
    public var leaseDuration: Duration = .seconds(15)
    /// On SIGTERM, how long running jobs may finish before being handed back. Default 25 s.
    public var shutdownGrace: Duration = .seconds(25)
    /// Backoff between failed attempts. Default exponential with jitter, 1 s doubling to 1 h.
    public var retryPolicy: RetryPolicy = .exponentialJitter()
    /// Run queue maintenance (rescue expired leases, prune finished jobs) from this worker. Default true; turn off
    /// where the scheduler's leader does it.
    public var maintenance: Bool = true
    /// Maintenance period. Default 5 s.
    public var maintenanceInterval: Duration = .seconds(5)
    /// Completed jobs are kept this long. Default 24 h.
    public var completedRetention: Duration = .seconds(86_400)
    /// Failed and cancelled jobs are kept this long. Default 14 days.
    public var failedRetention: Duration = .seconds(14 * 86_400)

    public init() {}
}

/// Claims and runs jobs until stopped.
///
/// One statement claims a batch with `FOR UPDATE SKIP LOCKED`; up to `concurrency` jobs run at once; results are
/// written in batches by one completer, each row fenced on (worker, attempt, state running); one heartbeat per
/// process extends the lease of all its jobs. NOTIFY wakes it; polling is the fallback.
public final class Worker: Sendable {
    public let id: String
    let options: WorkerOptions
    let pool: PGPool
    let registry: JobRegistry
    let logger: Logger

    private let claimWake = WakeSignal()
    private let completerWake = WakeSignal()
    private let heartbeatWake = WakeSignal()
    private let maintenanceWake = WakeSignal()
    private let timeoutWake = WakeSignal()
    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)
    /// Set once `drain()` returned: no job can start any more, so the background loops may finish. (Stopping alone
    /// is not enough: a claim in flight at SIGTERM still starts its jobs, whose results need the completer.)
    private let drained = Atomic<Bool>(false)
    /// Claims made on the listener thread (for tests and stats).
    let directClaims = Atomic<Int>(0)
    private let hurry = Atomic<Bool>(false)
    private let stopRequestedAt = Mutex<ContinuousClock.Instant?>(nil)
    private let finishedCount = Atomic<Int>(0)

    struct InFlight {
        var attempt: Int
        var kind: String
        var started: ContinuousClock.Instant
        var task: Task<Void, Never>?
        /// When the attempt times out (its kind's timeout after the start); the timeout loop cancels it then.
        var deadline: ContinuousClock.Instant
        var timedOut = false
    }
    struct State {
        var inFlight: [Int64: InFlight] = [:]
        var results: [Outcome] = []
        var slotWaiting = false
        /// Slots promised to a claim statement in progress (the listener's direct claim or the claim loop), so the
        /// two never claim more than `concurrency` between them.
        var reserved = 0
    }

    enum Disposition {
        case completed
        case alreadyCompleted
        case retry(String)
        case discard(String)
        case snooze(Duration, String)
        case handBack
        case drop(String)
    }
    struct Outcome {
        var id: Int64
        var attempt: Int
        var maxAttempts: Int
        var disposition: Disposition
    }

    public init(pool: PGPool, registry: JobRegistry, options: WorkerOptions, logger: Logger) {
        let host = ProcessInfo.processInfo.hostName
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        self.id = "\(host)-\(getpid())-\(suffix)"
        self.pool = pool
        self.registry = registry
        self.options = options
        self.logger = logger.with(("worker", id))
    }

    /// Number of jobs whose outcome this worker has recorded.
    public var jobsFinished: Int { finishedCount.load(ordering: .relaxed) }

    /// Asks the worker to stop: no more claims; running jobs get `shutdownGrace`, then are handed back.
    public func shutdown() {
        let now = ContinuousClock.now
        let first = stopRequestedAt.withLock { t -> ContinuousClock.Instant? in
            defer { if t == nil { t = now } }
            return t
        }
        stopping.store(true, ordering: .releasing)
        // A second request well after the first (not the same signal delivered twice, e.g. to the process and its
        // group) skips the grace period.
        if let first, now - first > .seconds(1) { hurry.store(true, ordering: .releasing) }
        claimWake.signal()
        completerWake.signal()
        maintenanceWake.signal()
        timeoutWake.signal()
    }

    /// Runs until `shutdown()` (or cancellation), then drains and returns.
    public func run() async throws {
        try await register()
        logger.info("worker started", ("queues", options.queues.joined(separator: ",")),
                    ("concurrency", String(options.concurrency)))
        // A NOTIFY for one of our queues is answered on the listener thread itself, with a claim on the listener's
        // connection: no thread hop, task switch or pool checkout between the wake-up and the claim statement
        // (bench/README.md, "Wake path"). The claim loop keeps claiming while more jobs wait, and polls.
        let directClaimWanted = Atomic<Bool>(false)
        let listener = PGListener(
            config: options.listenerConfig ?? pool.config, channels: ["nexjobs_jobs", "nexjobs_cancel"],
            onNotify: { [self] note in
                if note.channel == "nexjobs_cancel" {
                    if let id = Int64(note.payload) { self.cancelLocal(id, reason: "cancelled by operator") }
                } else if self.options.queues.contains(note.payload) {
                    directClaimWanted.store(true, ordering: .relaxed)
                }
            },
            onReconnect: { [self] in self.claimWake.signal() },
            onError: { [logger] msg in logger.warning("listener", ("error", msg)) },
            afterNotifications: { [self] session in
                if directClaimWanted.exchange(false, ordering: .relaxed) { self.directClaim(on: session) }
            })
        listener.start()
        defer { listener.stop() }

        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.completerLoop() }
            group.addTask { await self.heartbeatLoop() }
            group.addTask { await self.timeoutLoop() }
            if options.maintenance { group.addTask { await self.maintenanceLoop() } }
            await withTaskCancellationHandler {
                await self.claimLoop()
            } onCancel: {
                self.shutdown()
            }
            await self.drain()
            self.drained.store(true, ordering: .releasing)
            // Background loops watch `drained`; the completer flushes what is left before returning.
            self.completerWake.signal()
            self.heartbeatWake.signal()
            self.timeoutWake.signal()
            await group.waitForAll()
        }
        _ = try? await pool.execute("DELETE FROM nexjobs.workers WHERE id = \(id)")
        logger.info("worker stopped", ("jobs_finished", String(jobsFinished)))
    }

    private func register() async throws {
        try await pool.execute("""
            INSERT INTO nexjobs.workers (id, host, pid, queues, concurrency, lease_until)
            VALUES (\(id), \(ProcessInfo.processInfo.hostName), \(Int(getpid())), \(options.queues)::text[],
                    \(options.concurrency), now() + \(options.leaseDuration)::interval)
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), lease_until = EXCLUDED.lease_until
            """)
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    var isDrained: Bool { drained.load(ordering: .acquiring) }

    // MARK: claiming

    /// Promises up to `claimBatch` free slots to one claim statement; 0 when none are free or the worker stops.
    private func reserveSlots() -> Int {
        state.withLock { s in
            guard !isStopping else { return 0 }
            let want = min(options.concurrency - s.inFlight.count - s.reserved, options.claimBatch)
            guard want > 0 else { return 0 }
            s.reserved += want
            return want
        }
    }

    /// Starts the claimed jobs, then returns the promised slots (the started jobs now hold theirs).
    private func startClaimed(_ rows: PGRows, reserved: Int) throws {
        defer { state.withLock { $0.reserved -= reserved } }
        for row in rows {
            start(id: try row.decode(0), kind: try row.decode(1), queue: try row.decode(2),
                  args: try row.decode(3), attempt: try row.decode(4), maxAttempts: try row.decode(5))
        }
    }

    /// The claim statement for up to `want` jobs.
    ///
    /// With one queue, `queue = $1[1]` lets jobs_claim_idx deliver rows already in (priority, run_at, id) order, so
    /// LIMIT stops after `want` index entries; `queue = ANY(...)` cannot use the index order and made every claim
    /// seq-scan and sort the whole table (finished jobs included). The update finds its rows through the primary
    /// key (ANY(ARRAY(...))) instead of letting the planner hash-join a seq scan.
    private func claimQuery(want: Int) -> PGQuery {
        let deadline = registry.longestTimeout + options.leaseDuration * 2
        let queueTest = options.queues.count == 1 ? "queue = (" : "queue = ANY("
        let queueSuffix = options.queues.count == 1 ? "::text[])[1]" : "::text[])"
        return """
            UPDATE nexjobs.jobs j
               SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), locked_by = \(id),
                   locked_until = now() + \(deadline)::interval
             WHERE j.id = ANY(ARRAY(
              SELECT id FROM nexjobs.jobs
               WHERE state IN ('available', 'retryable') AND \(unsafeSQL: queueTest)\(options.queues)\(unsafeSQL: queueSuffix)
                 AND run_at <= now()
               ORDER BY priority, run_at, id
               LIMIT \(want)
               FOR UPDATE SKIP LOCKED))
            RETURNING j.id, j.kind, j.queue, j.args::text, j.attempt, j.max_attempts
            """
    }

    /// Claims on the listener thread, right after a NOTIFY for one of our queues.
    ///
    /// When it fills its batch more jobs may wait, and when it cannot run (no free slot, an error) the claim loop
    /// must look: either way it is woken.
    private func directClaim(on session: borrowing PGListenerSession) {
        let want = reserveSlots()
        guard want > 0 else {
            claimWake.signal()
            return
        }
        let rows: PGRows
        directClaims.add(1, ordering: .relaxed)
        do {
            rows = try session.query(claimQuery(want: want))
        } catch {
            state.withLock { $0.reserved -= want }
            logger.warning("claim on the listener connection failed; the claim loop takes over", ("error", "\(error)"))
            claimWake.signal()
            return
        }
        do {
            try startClaimed(rows, reserved: want)
        } catch {
            logger.error("claimed jobs could not be started; their lease will expire", ("error", "\(error)"))
        }
        if rows.count == want { claimWake.signal() }
    }

    private func claimLoop() async {
        var backoff = Duration.milliseconds(100)
        while !isStopping {
            let want = reserveSlots()
            if want <= 0 {
                if isStopping { break }
                state.withLock { $0.slotWaiting = true }
                await claimWake.wait(timeout: options.pollInterval)
                continue
            }
            do {
                let rows: PGRows
                do {
                    rows = try await pool.query(claimQuery(want: want))
                } catch {
                    state.withLock { $0.reserved -= want }
                    throw error
                }
                backoff = .milliseconds(100)
                try startClaimed(rows, reserved: want)
                if rows.count < want { await claimWake.wait(timeout: options.pollInterval) }
            } catch {
                logger.warning("claim failed; retrying", ("error", "\(error)"),
                               ("retry_in", "\(backoff)"))
                await claimWake.wait(timeout: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    private func start(id jobID: Int64, kind: String, queue: String, args: String, attempt: Int, maxAttempts: Int) {
        let jobLogger = logger.with(("job.id", String(jobID)), ("job.kind", kind), ("job.attempt", String(attempt)))
        let context = JobContext(id: jobID, kind: kind, queue: queue, attempt: attempt, maxAttempts: maxAttempts,
                                 workerID: id, pool: pool, logger: jobLogger)
        let handler = registry.handler(for: kind)
        let timeout = handler?.timeout ?? .seconds(1800)
        let now = ContinuousClock.now
        state.withLock {
            $0.inFlight[jobID] = InFlight(
                attempt: attempt, kind: kind, started: now, task: nil, deadline: now + timeout)
        }
        guard let handler else {
            record(Outcome(id: jobID, attempt: attempt, maxAttempts: maxAttempts, disposition: .discard(
                "unknown job kind '\(kind)'; this worker runs: \(registry.kinds.joined(separator: ", "))")))
            return
        }
        let task = Task {
            let disposition: Disposition
            let clock = ContinuousClock()
            let began = clock.now
            // The timeout loop cancels an attempt past its deadline (one loop for all jobs: a timer task per job
            // was ~20 % of a worker's CPU draining no-ops); whatever the handler then throws, it timed out.
            do {
                try await handler.run(argsJSON: args, context: context)
                disposition = context.completedByHandler ? .alreadyCompleted : .completed
            } catch where self.state.withLock({ $0.inFlight[jobID]?.timedOut ?? false }) {
                disposition = .retry(JobTimedOut(timeout: handler.timeout).description)
            } catch let e as JobSnooze {
                disposition = .snooze(e.delay, e.reason)
            } catch let e as JobDiscard {
                disposition = .discard(e.message)
            } catch is JobLeaseLost {
                disposition = .drop("lease lost")
            } catch is CancellationError where self.isStopping {
                disposition = .handBack
            } catch {
                disposition = .retry(String(describing: error))
            }
            let took = clock.now - began
            // Formatted only when logged: String(format:) per job was ~5 % of a worker's CPU draining no-ops.
            func elapsed() -> String {
                let ms = took.components
                return String(format: "%.3f", Double(ms.seconds) + Double(ms.attoseconds) / 1e18)
            }
            switch disposition {
            case .completed, .alreadyCompleted:
                if jobLogger.minimum <= .debug { jobLogger.debug("job completed", ("duration_s", elapsed())) }
            case .retry(let m), .discard(let m):
                jobLogger.warning("job failed", ("error", m), ("duration_s", elapsed()))
            case .snooze(let d, let r): jobLogger.info("job snoozed", ("reason", r), ("delay", "\(d)"))
            case .handBack: jobLogger.info("job handed back", ("duration_s", elapsed()))
            case .drop(let r): jobLogger.info("job dropped", ("reason", r))
            }
            self.record(Outcome(id: jobID, attempt: attempt, maxAttempts: maxAttempts, disposition: disposition))
        }
        let lateTimeout = state.withLock { s -> Bool in
            guard s.inFlight[jobID] != nil else { return false }
            s.inFlight[jobID]?.task = task
            return s.inFlight[jobID]?.timedOut ?? false
        }
        if lateTimeout { task.cancel() }
    }

    /// Records a job's outcome once: the first outcome for an in-flight job wins and frees its slot.
    private func record(_ outcome: Outcome) {
        let (accepted, wakeClaimer) = state.withLock { s -> (Bool, Bool) in
            guard let f = s.inFlight[outcome.id], f.attempt == outcome.attempt else { return (false, false) }
            s.inFlight[outcome.id] = nil
            s.results.append(outcome)
            let w = s.slotWaiting
            s.slotWaiting = false
            return (true, w)
        }
        guard accepted else { return }
        finishedCount.add(1, ordering: .relaxed)
        completerWake.signal()
        if wakeClaimer { claimWake.signal() }
    }

    /// Stops a running job locally: the database already says it is not ours (cancelled, rescued).
    func cancelLocal(_ jobID: Int64, reason: String) {
        let entry = state.withLock { $0.inFlight[jobID] }
        guard let entry else { return }
        logger.info("stopping job", ("job.id", String(jobID)), ("reason", reason))
        entry.task?.cancel()
        record(Outcome(id: jobID, attempt: entry.attempt, maxAttempts: 0, disposition: .drop(reason)))
    }

    // MARK: shutdown

    private func drain() async {
        let clock = ContinuousClock()
        let deadline = clock.now + options.shutdownGrace
        let running = state.withLock { $0.inFlight.count }
        if running > 0 {
            logger.info("shutting down: waiting for running jobs", ("running", String(running)),
                        ("grace", "\(options.shutdownGrace)"))
        }
        while state.withLock({ !$0.inFlight.isEmpty || $0.reserved > 0 }) && clock.now < deadline
            && !hurry.load(ordering: .acquiring)
        {
            await claimWake.wait(timeout: .milliseconds(50))
        }
        let left = state.withLock { s in s.inFlight.map { ($0.key, $0.value) } }
        guard !left.isEmpty else { return }
        logger.warning("grace period over: handing back running jobs", ("count", String(left.count)))
        for (jobID, f) in left {
            f.task?.cancel()
            record(Outcome(id: jobID, attempt: f.attempt, maxAttempts: 0, disposition: .handBack))
        }
    }

    // MARK: completing

    private func completerLoop() async {
        var backoff = Duration.milliseconds(100)
        while true {
            let batch = state.withLock { s -> [Outcome] in
                let b = s.results
                s.results.removeAll(keepingCapacity: true)
                return b
            }
            if batch.isEmpty {
                if isDrained && state.withLock({ $0.inFlight.isEmpty && $0.results.isEmpty }) { return }
                await completerWake.wait(timeout: .milliseconds(200))
                continue
            }
            do {
                try await write(batch)
                backoff = .milliseconds(100)
            } catch {
                logger.warning("writing job results failed; retrying", ("count", String(batch.count)),
                               ("error", "\(error)"), ("retry_in", "\(backoff)"))
                state.withLock { $0.results.insert(contentsOf: batch, at: 0) }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// Writes a batch of outcomes: one statement for completions, one for everything else.
    private func write(_ batch: [Outcome]) async throws {
        var doneIDs: [Int64] = []
        var doneAttempts: [Int] = []
        var ids: [Int64] = [], attempts: [Int] = [], states: [String] = [], errors: [String?] = []
        var delaysMs: [Int64] = [], uncharge: [Int] = []
        for o in batch {
            switch o.disposition {
            case .completed:
                doneIDs.append(o.id); doneAttempts.append(o.attempt)
            case .alreadyCompleted, .drop:
                continue
            case .retry(let message):
                let last = o.attempt >= o.maxAttempts
                ids.append(o.id); attempts.append(o.attempt); states.append(last ? "failed" : "retryable")
                errors.append(String(message.prefix(2000)))
                let d = last ? Duration.zero : options.retryPolicy.delay(afterAttempt: o.attempt)
                delaysMs.append(Int64(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000))
                uncharge.append(0)
            case .discard(let message):
                ids.append(o.id); attempts.append(o.attempt); states.append("failed")
                errors.append(String(message.prefix(2000))); delaysMs.append(0); uncharge.append(0)
            case .snooze(let d, _):
                ids.append(o.id); attempts.append(o.attempt); states.append("available"); errors.append(nil)
                delaysMs.append(Int64(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000))
                uncharge.append(1)
            case .handBack:
                ids.append(o.id); attempts.append(o.attempt); states.append("available"); errors.append(nil)
                delaysMs.append(0); uncharge.append(1)
            }
        }
        if !doneIDs.isEmpty {
            try await pool.execute("""
                UPDATE nexjobs.jobs j
                   SET state = 'completed', finished_at = now(), locked_by = NULL, locked_until = NULL
                  FROM unnest(\(doneIDs)::bigint[], \(doneAttempts)::int[]) AS d(id, attempt)
                 WHERE j.id = d.id AND j.attempt = d.attempt AND j.state = 'running' AND j.locked_by = \(id)
                """)
        }
        if !ids.isEmpty {
            try await pool.execute("""
                UPDATE nexjobs.jobs j
                   SET state = d.state,
                       run_at = now() + d.delay_ms * interval '1 millisecond',
                       attempt = j.attempt - d.uncharge,
                       finished_at = CASE WHEN d.state = 'failed' THEN now() END,
                       errors = CASE WHEN d.error IS NULL THEN j.errors
                                ELSE j.errors || jsonb_build_array(jsonb_build_object(
                                    'at', now(), 'attempt', j.attempt, 'error', d.error, 'worker', \(id)::text)) END,
                       locked_by = NULL, locked_until = NULL
                  FROM unnest(\(ids)::bigint[], \(attempts)::int[], \(states)::text[], \(errors)::text[],
                              \(delaysMs)::bigint[], \(uncharge)::int[]) AS d(id, attempt, state, error, delay_ms, uncharge)
                 WHERE j.id = d.id AND j.attempt = d.attempt AND j.state = 'running' AND j.locked_by = \(id)
                """)
        }
    }

    // MARK: heartbeat and maintenance

    /// Cancels attempts that ran past their kind's timeout; sleeps until the earliest deadline (at most 1 s, so a
    /// job started meanwhile with a shorter timeout is caught within a second of its deadline).
    private func timeoutLoop() async {
        while !(isDrained && state.withLock({ $0.inFlight.isEmpty })) {
            let now = ContinuousClock.now
            let (expired, next) = state.withLock { s -> ([Task<Void, Never>?], ContinuousClock.Instant?) in
                var expired: [Task<Void, Never>?] = []
                var next: ContinuousClock.Instant? = nil
                for (jobID, f) in s.inFlight where !f.timedOut {
                    if f.deadline <= now {
                        s.inFlight[jobID]?.timedOut = true
                        expired.append(f.task)
                    } else if next == nil || f.deadline < next! {
                        next = f.deadline
                    }
                }
                return (expired, next)
            }
            for task in expired { task?.cancel() }
            let wait = min(next.map { $0 - now } ?? .seconds(1), .seconds(1))
            await timeoutWake.wait(timeout: max(wait, .milliseconds(5)))
        }
    }

    private func heartbeatLoop() async {
        while !(isDrained && state.withLock({ $0.inFlight.isEmpty })) {
            await heartbeatWake.wait(timeout: options.heartbeatInterval)
            if isDrained && state.withLock({ $0.inFlight.isEmpty }) { return }
            do {
                let n = try await pool.execute("""
                    UPDATE nexjobs.workers SET heartbeat_at = now(), lease_until = now() + \(options.leaseDuration)::interval
                     WHERE id = \(id)
                    """)
                if n == 0 { try await register() }
                let mine = state.withLock { s in s.inFlight.map { ($0.key, $0.value.attempt) } }
                if !mine.isEmpty {
                    let lost = try await pool.query("""
                        SELECT d.id FROM unnest(\(mine.map(\.0))::bigint[], \(mine.map(\.1))::int[]) AS d(id, attempt)
                         WHERE NOT EXISTS (SELECT 1 FROM nexjobs.jobs j WHERE j.id = d.id AND j.attempt = d.attempt
                                             AND j.state = 'running' AND j.locked_by = \(id))
                        """)
                    for row in lost { cancelLocal(try row.decode(0), reason: "no longer running under this worker") }
                }
            } catch {
                logger.warning("heartbeat failed", ("error", "\(error)"))
            }
        }
    }

    private func maintenanceLoop() async {
        let client = JobClient(pool: pool)
        var lastPrune = ContinuousClock.now - .seconds(3600)
        while !isStopping {
            await maintenanceWake.wait(timeout: options.maintenanceInterval)
            if isStopping { return }
            do {
                let rescued = try await client.rescueExpired()
                if rescued > 0 { logger.warning("rescued jobs with expired leases", ("count", String(rescued))) }
                if ContinuousClock.now - lastPrune > .seconds(60) {
                    lastPrune = .now
                    let pruned = try await client.prune(completedRetention: options.completedRetention,
                                                        failedRetention: options.failedRetention)
                    if pruned > 0 { logger.info("pruned finished jobs", ("count", String(pruned))) }
                    try await pool.execute("DELETE FROM nexjobs.workers WHERE lease_until < now() - interval '1 hour'")
                }
            } catch {
                logger.warning("maintenance failed", ("error", "\(error)"))
            }
        }
    }
}

/// The attempt ran past its kind's timeout.
public struct JobTimedOut: Error, CustomStringConvertible {
    public var timeout: Duration
    public var description: String { "timed out after \(timeout)" }
}
