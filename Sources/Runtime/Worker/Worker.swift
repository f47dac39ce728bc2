import Foundation
import Logs
import Postgres
import Queue
import Synchronization

/// Settings of a worker process. Every field has a documented default.
public struct WorkerOptions: Sendable {
    /// Queues to claim from. Default `["default"]`.
    public var queues: [String] = ["default"]
    /// Most jobs of one queue this worker runs at once (`--queues sync.tiktok=8`), so a queue whose jobs wait
    /// inside their slots (a rate-limited platform) cannot hold every slot while other queues wait. A queue absent
    /// here is bounded only by `concurrency`; a cap at or above `concurrency` is no cap; a cap below 1 counts as 1;
    /// entries for queues not in `queues` are ignored. Default: none.
    public var queueLimits: [String: Int] = [:]
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
    /// Campaign for the `maintenance` role (see `Maintainer`): while this worker holds it, it rescues expired
    /// leases and prunes finished jobs. Only one process (worker or scheduler) holds the role at a time. Default
    /// true; false (`--no-maintenance`): this worker never competes and never maintains.
    public var maintenance: Bool = true
    /// Maintenance period. Default 5 s.
    public var maintenanceInterval: Duration = .seconds(5)
    /// Completed jobs are kept this long. Default 24 h.
    public var completedRetention: Duration = .seconds(86_400)
    /// Failed and cancelled jobs are kept this long. Default 14 days.
    public var failedRetention: Duration = .seconds(14 * 86_400)

    public init() {}
}

/// Claims and runs jobs until stopped: the assembly of the worker's roles.
///
/// - one `Producer` per queue claims (one index-ordered statement per queue, on the listener thread right after a
///   NOTIFY or in its claim loop); up to `concurrency` jobs run at once, slots shared by the producers, and at
///   most its cap of a capped queue (`queueLimits`);
/// - `JobExecutor` runs each attempt and classifies its end;
/// - the `Completer` writes outcomes in batches, each row fenced on (worker, attempt, state running);
/// - the supervision loops (Supervision.swift) heartbeat the worker's lease, notice jobs lost to a cancel or a
///   rescue, and cancel attempts past their timeout;
/// - a `Maintainer` (unless `maintenance` is off) campaigns for the `maintenance` role and maintains while it
///   holds it.
public final class Worker: Sendable {
    public let id: String
    let options: WorkerOptions
    let pool: PGPool
    let registry: JobRegistry
    let logger: Logger
    /// The hard deadline of a claimed attempt (the longest timeout plus two leases); the rescuer frees it then.
    let claimDeadline: Duration

    /// One per queue; set once in `init` (they refer back to the worker).
    private let producerList = Mutex<[Producer]>([])
    var producers: [Producer] { producerList.withLock { $0 } }
    let completer: Completer
    /// This worker's maintenance (nil with `maintenance` off: it never campaigns).
    public let maintainer: Maintainer?

    let heartbeatWake = WakeSignal()
    let timeoutWake = WakeSignal()
    /// Woken whenever a job's outcome is recorded (drain waits on it).
    private let recordedWake = WakeSignal()
    let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)
    /// Set once `drain()` returned: no job can start any more, so the background loops may finish. (Stopping alone
    /// is not enough: a claim in flight at SIGTERM still starts its jobs, whose results need the completer.)
    private let drained = Atomic<Bool>(false)
    /// Claims made on the listener thread (for tests and stats).
    let directClaims = Atomic<Int>(0)
    /// Claim statements of the producers' claim loops (tests: a wake-up loop shows as a runaway count).
    let loopClaims = Atomic<Int>(0)
    private let hurry = Atomic<Bool>(false)
    private let stopRequestedAt = Mutex<ContinuousClock.Instant?>(nil)
    private let finishedCount = Atomic<Int>(0)

    struct InFlight {
        /// The index of its queue's producer when that queue is capped (`queueLimits`), else nil.
        var cappedQueue: Int?
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
        /// A producer found no free slot: wake every producer when one is freed.
        var slotWaiting = false
        /// Slots promised to claim statements in progress (listener claims and claim loops), so together they
        /// never claim more than `concurrency`.
        var reserved = 0
        /// Per producer index, used by capped queues only: jobs running, slots promised to their claims in
        /// progress, and whether the producer found its cap full (wake it when one of its jobs ends).
        var queueRunning: [Int] = []
        var queueReserved: [Int] = []
        var queueWaiting: [Bool] = []
    }

    /// A capped queue's place in `State` (its producer's index) and its cap.
    struct QueueCap {
        let index: Int
        let limit: Int
    }

    public init(pool: PGPool, registry: JobRegistry, options: WorkerOptions, logger: Logger) {
        let host = ProcessInfo.processInfo.hostName
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let id = "\(host)-\(getpid())-\(suffix)"
        self.id = id
        self.pool = pool
        self.registry = registry
        self.options = options
        let logger = logger.with(("worker", id))
        self.logger = logger
        self.claimDeadline = registry.longestTimeout + options.leaseDuration * 2
        self.completer = Completer(workerID: id, pool: pool, retryPolicy: options.retryPolicy, logger: logger)
        self.maintainer =
            options.maintenance
            ? Maintainer(
                pool: pool, holder: id, interval: options.maintenanceInterval,
                completedRetention: options.completedRetention, failedRetention: options.failedRetention,
                logger: logger)
            : nil
        let producers = options.queues.enumerated().map { i, queue in
            let cap = options.queueLimits[queue].flatMap { limit in
                limit < options.concurrency ? QueueCap(index: i, limit: max(1, limit)) : nil
            }
            return Producer(queue: queue, cap: cap, worker: self)
        }
        producerList.withLock { $0 = producers }
        state.withLock { s in
            s.queueRunning = Array(repeating: 0, count: producers.count)
            s.queueReserved = Array(repeating: 0, count: producers.count)
            s.queueWaiting = Array(repeating: false, count: producers.count)
        }
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
        for p in producers { p.signal() }
        completer.signal()
        maintainer?.shutdown()
        timeoutWake.signal()
        recordedWake.signal()
    }

    /// Runs until `shutdown()` (or cancellation), then drains and returns.
    public func run() async throws {
        try await register()
        let caps = producers.compactMap { p in p.cap.map { "\(p.queue)=\($0.limit)" } }
        logger.info(
            "worker started", ("queues", options.queues.joined(separator: ",")),
            ("concurrency", String(options.concurrency)),
            ("queue_limits", caps.isEmpty ? "none" : caps.joined(separator: ",")))
        let producers = self.producers
        let byQueue = Dictionary(producers.map { ($0.queue, $0) }, uniquingKeysWith: { a, _ in a })
        let listener = PGListener(
            config: options.listenerConfig ?? pool.config, channels: ["nexjobs_jobs", "nexjobs_cancel"],
            onNotify: { [self] note in
                if note.channel == "nexjobs_cancel" {
                    if let id = Int64(note.payload) { self.cancelLocal(id, reason: "cancelled by operator") }
                } else {
                    byQueue[note.payload]?.notified()
                }
            },
            onReconnect: { for p in producers { p.signal() } },
            onError: { [logger] msg in logger.warning("listener", ("error", msg)) },
            afterNotifications: { session in
                for p in producers { p.directClaimIfNotified(on: session) }
            })
        listener.start()
        defer { listener.stop() }

        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.completer.run(finished: { [self] in self.isDrained && self.isIdle }) }
            group.addTask { await self.heartbeatLoop() }
            group.addTask { await self.timeoutLoop() }
            if let maintainer { group.addTask { await maintainer.run() } }
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { producing in
                    for p in producers { producing.addTask { await p.run() } }
                }
            } onCancel: {
                self.shutdown()
            }
            await self.drain()
            self.drained.store(true, ordering: .releasing)
            // Background loops watch `drained`; the completer flushes what is left before returning.
            self.completer.signal()
            self.heartbeatWake.signal()
            self.timeoutWake.signal()
            await group.waitForAll()
        }
        _ = try? await pool.execute(JobStore.unregisterWorker(id: id))
        logger.info("worker stopped", ("jobs_finished", String(jobsFinished)))
    }

    func register() async throws {
        try await pool.execute(
            JobStore.registerWorker(
                id: id, host: ProcessInfo.processInfo.hostName, pid: Int(getpid()), queues: options.queues,
                concurrency: options.concurrency, lease: options.leaseDuration))
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    var isDrained: Bool { drained.load(ordering: .acquiring) }
    /// No job runs.
    var isIdle: Bool { state.withLock { $0.inFlight.isEmpty } }

    // MARK: slots (shared by the producers)

    /// Promises up to `atMost` (and `claimBatch`) free slots to one claim statement, and for a capped queue at
    /// most its cap less its running jobs and its claims in progress; 0 when none are free or the worker stops.
    ///
    /// A 0 marks the producer as waiting (under the same lock, so a job ending right after still wakes it): for a
    /// free slot (any job's end wakes every producer) or, at its cap, for the end of one of its queue's jobs.
    func reserveSlots(atMost: Int, cap: QueueCap? = nil) -> Int {
        state.withLock { s in
            guard !isStopping else { return 0 }
            let free = options.concurrency - s.inFlight.count - s.reserved
            var want = min(free, options.claimBatch, atMost)
            var atCap = false
            if let cap {
                let room = cap.limit - s.queueRunning[cap.index] - s.queueReserved[cap.index]
                if room <= 0 {
                    s.queueWaiting[cap.index] = true
                    atCap = true
                }
                want = min(want, room)
            }
            guard want > 0 else {
                // A producer at its queue's cap waits for one of its own jobs to end (`queueWaiting`), not for any
                // free slot: marking it slot-waiting would wake it on every release only to find its cap full.
                if free <= 0, !atCap { s.slotWaiting = true }
                return 0
            }
            s.reserved += want
            if let cap { s.queueReserved[cap.index] += want }
            return want
        }
    }

    /// Returns promised slots (a claim failed, or its jobs started and hold their own).
    ///
    /// Slots given back unused (a claim that found fewer jobs than it reserved, or failed) may be the ones another
    /// producer found taken: when slots are free after the release, a producer marked waiting is woken, as by a
    /// job's end, instead of sleeping until its poll.
    ///
    /// `releasing` is the producer giving the slots back: it is never woken by its own release (it is running, not
    /// waiting; a latched wake-up would make it claim again at once, and two producers could then keep waking
    /// each other with empty claims, or a failing claim skip its backoff).
    func releaseSlots(_ n: Int, cap: QueueCap? = nil, releasing: Producer? = nil) {
        let (wakeAll, wakeQueue) = state.withLock { s -> (Bool, Int?) in
            s.reserved -= n
            var queue: Int? = nil
            if let cap {
                s.queueReserved[cap.index] -= n
                if s.queueWaiting[cap.index], cap.limit - s.queueRunning[cap.index] - s.queueReserved[cap.index] > 0 {
                    s.queueWaiting[cap.index] = false
                    queue = cap.index
                }
            }
            guard s.slotWaiting, options.concurrency - s.inFlight.count - s.reserved > 0 else { return (false, queue) }
            s.slotWaiting = false
            return (true, queue)
        }
        if wakeAll {
            for p in producers where p !== releasing { p.signal() }
        } else if let wakeQueue, producers[wakeQueue] !== releasing {
            producers[wakeQueue].signal()
        }
    }

    /// Starts the claimed jobs, then returns the promised slots (the started jobs now hold theirs).
    func startClaimed(_ rows: PGRows, reserved: Int, cap: QueueCap? = nil, releasing: Producer? = nil) throws {
        defer { releaseSlots(reserved, cap: cap, releasing: releasing) }
        for row in rows { start(try ClaimedJob(row: row), cap: cap) }
    }

    // MARK: running

    private func start(_ job: ClaimedJob, cap: QueueCap?) {
        let jobLogger = logger.with(
            ("job.id", String(job.id)), ("job.kind", job.kind), ("job.attempt", String(job.attempt)))
        let context = JobContext(
            id: job.id, kind: job.kind, queue: job.queue, attempt: job.attempt,
            maxAttempts: job.maxAttempts, workerID: id, pool: pool, logger: jobLogger)
        let handler = registry.handler(for: job.kind)
        let timeout = handler?.timeout ?? .seconds(1800)
        let now = ContinuousClock.now
        state.withLock { s in
            s.inFlight[job.id] = InFlight(
                cappedQueue: cap?.index, attempt: job.attempt, kind: job.kind, started: now, task: nil,
                deadline: now + timeout)
            if let cap { s.queueRunning[cap.index] += 1 }
        }
        let jobID = job.id
        let signals = JobExecutor.Signals(
            timedOut: { [self] in self.state.withLock { $0.inFlight[jobID]?.timedOut ?? false } },
            stopping: { [self] in self.isStopping })
        guard handler != nil else {
            // Nothing to run: classified at once, without a task.
            let kinds = registry.kinds
            Task { [self] in
                let d = await JobExecutor.execute(handler: nil, job: job, context: context, knownKinds: kinds)
                self.record(Outcome(id: job.id, attempt: job.attempt, maxAttempts: job.maxAttempts, disposition: d))
            }
            return
        }
        let task = Task {
            let disposition = await JobExecutor.execute(
                handler: handler, job: job, context: context, signals: signals)
            self.record(
                Outcome(
                    id: job.id, attempt: job.attempt, maxAttempts: job.maxAttempts,
                    disposition: disposition))
        }
        let lateTimeout = state.withLock { s -> Bool in
            guard s.inFlight[jobID] != nil else { return false }
            s.inFlight[jobID]?.task = task
            return s.inFlight[jobID]?.timedOut ?? false
        }
        if lateTimeout { task.cancel() }
    }

    /// Records a job's outcome once: the first outcome for an in-flight job wins and frees its slot (and its
    /// place under its queue's cap).
    func record(_ outcome: Outcome) {
        let (accepted, wakeProducers, wakeQueue) = state.withLock { s -> (Bool, Bool, Int?) in
            guard let f = s.inFlight[outcome.id], f.attempt == outcome.attempt else { return (false, false, nil) }
            s.inFlight[outcome.id] = nil
            completer.add(outcome)
            let w = s.slotWaiting
            s.slotWaiting = false
            var q: Int? = nil
            if let i = f.cappedQueue {
                s.queueRunning[i] -= 1
                if s.queueWaiting[i] {
                    s.queueWaiting[i] = false
                    q = i
                }
            }
            return (true, w, q)
        }
        guard accepted else { return }
        finishedCount.add(1, ordering: .relaxed)
        completer.signal()
        recordedWake.signal()
        if wakeProducers {
            for p in producers { p.signal() }
        } else if let wakeQueue {
            producers[wakeQueue].signal()
        }
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
            logger.info(
                "shutting down: waiting for running jobs", ("running", String(running)),
                ("grace", "\(options.shutdownGrace)"))
        }
        while state.withLock({ !$0.inFlight.isEmpty || $0.reserved > 0 }) && clock.now < deadline
            && !hurry.load(ordering: .acquiring)
        {
            await recordedWake.wait(timeout: .milliseconds(50))
        }
        let left = state.withLock { s in s.inFlight.map { ($0.key, $0.value) } }
        guard !left.isEmpty else { return }
        logger.warning("grace period over: handing back running jobs", ("count", String(left.count)))
        for (jobID, f) in left {
            f.task?.cancel()
            record(Outcome(id: jobID, attempt: f.attempt, maxAttempts: 0, disposition: .handBack))
        }
    }
}
