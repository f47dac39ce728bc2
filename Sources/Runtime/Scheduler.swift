import Foundation
import Logs
import Postgres
import Synchronization

/// Configuration of `Scheduler`; every field has a documented default.
public struct SchedulerOptions: Sendable {
    /// Leader election timing (term 10 s, renew 3 s, standby retry 2 s, safety margin 2 s).
    public var election = LeaderElectionOptions()
    /// How often the leader looks for due work; default 1 s.
    public var tick: Duration = .seconds(1)
    /// Most time one tick's sources keep working: loops stop between statements once it is spent and go on at the
    /// next tick. Default 5 s.
    public var tickBudget: Duration = .seconds(5)
    /// A leader whose ticks made no progress (every source that ran failed) this many times in a row steps down
    /// for one term so a standby can take over. Default 5.
    public var maxFailedTicks: Int = 5
    /// A leader whose tick has been running this long (a statement that hangs) steps down for one term. Default:
    /// the election term.
    public var stuckTick: Duration? = nil
    /// On shutdown, how long `run()` waits for the tick in progress before it releases leadership and returns
    /// anyway. Default 10 s (systemd's TimeoutStopSec for the scheduler is 20 s).
    public var shutdownGrace: Duration = .seconds(10)
    /// The due-work sources, run in order each tick on the leader. The engine's default is the cron schedules
    /// (including the `nexjobs.rescue` / `nexjobs.prune` maintenance schedules); an application appends its own
    /// kinds (the application module's connection syncs, token refreshes and privacy requests).
    public var sources: [any DueWorkSource] = [CronScheduleSource()]

    /// Campaign (while leading, and while an enabled `nexjobs.rescue` schedule exists) for the `maintenance` role
    /// (`MaintenanceRole`); the `maintenance.*` schedules act only while this scheduler holds it. Default true;
    /// false: this scheduler never maintains.
    public var maintenance = true

    public init() {}

    public init(sources: [any DueWorkSource]) { self.sources = sources }

    /// Checks the durations (the election's included).
    public func validate() throws {
        try election.validate()
        guard tick > .zero, tickBudget > .zero, maxFailedTicks >= 1, shutdownGrace >= .zero,
            (stuckTick ?? election.term) > .zero
        else {
            throw ScheduleSpecError(
                message: "scheduler tick, tick budget, stuck-tick limit and failed-tick count must be positive")
        }
    }
}

/// The scheduler process: campaigns for leadership and, while leading, runs each due-work source every tick.
///
/// Any number may run; only the leader acts. Each tick is bounded: sources see `isLeader()` turn false when
/// leadership is lost, on shutdown, or once `tickBudget` is spent, and stop between statements. A leader that
/// cannot make progress -- `maxFailedTicks` ticks in a row where every source failed, or one tick running longer
/// than `stuckTick` -- steps down for one term (`LeaderElection.stepDown`) so a standby takes over.
/// `shutdown()` (SIGTERM/SIGINT) stops the tick loop, waits for the tick in progress (at most `shutdownGrace`),
/// then releases leadership so a standby takes over at its next attempt; `run()` returns.
public final class Scheduler: Sendable {
    public let election: LeaderElection
    /// The `maintenance` role's election (nil when `options.maintenance` is false).
    public let maintenanceElection: LeaderElection?
    public let options: SchedulerOptions
    private let pool: PGPool
    private let logger: Logger
    private let stopped = Mutex(false)
    private let wake = WakeSignal()
    private let tickCount = Atomic<Int>(0)
    private let stepDowns = Atomic<Int>(0)
    /// Whether an enabled `nexjobs.rescue` schedule exists (read by the leader each tick): the scheduler campaigns
    /// for the maintenance role only then.
    private let maintenanceSchedulesOn = Mutex(false)
    /// When the tick in progress started (nil between ticks), for the stuck-tick watchdog.
    private let tickStarted = Mutex<ContinuousClock.Instant?>(nil)

    /// - Parameters:
    ///   - holder: this process's id in `nexjobs.leader` (default: host:pid:random).
    ///   - electionPool: where the leader lease is taken and renewed (default: `pool`); a direct connection to
    ///     PostgreSQL when `pool` goes through PgBouncer (`NEXJOBS_DIRECT_DATABASE_URL`).
    public init(
        pool: PGPool, options: SchedulerOptions = .init(), holder: String? = nil, electionPool: PGPool? = nil,
        logger: Logger
    ) {
        self.pool = pool
        self.options = options
        self.logger = logger
        self.election = LeaderElection(
            pool: electionPool ?? pool, holder: holder ?? Scheduler.defaultHolder(),
            options: options.election, logger: logger)
        self.maintenanceElection =
            options.maintenance
            ? LeaderElection(
                pool: pool, holder: election.holder, options: MaintenanceRole.election(options.election),
                logger: logger)
            : nil
    }

    /// `host:pid:random`, unique per process.
    public static func defaultHolder() -> String {
        let host = ProcessInfo.processInfo.hostName
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "\(host):\(getpid()):\(suffix)"
    }

    /// Ticks completed while leading.
    public var ticks: Int { tickCount.load(ordering: .relaxed) }

    /// Times this scheduler stepped down because it could not make progress.
    public var timesSteppedDown: Int { stepDowns.load(ordering: .relaxed) }

    /// Asks `run()` to stop (idempotent, callable from a signal handler's queue).
    public func shutdown() {
        stopped.withLock { $0 = true }
        wake.signal()
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    /// Runs until `shutdown()` or cancellation, then releases leadership.
    public func run() async throws {
        try options.validate()
        logger.info(
            "scheduler starting", ("holder", election.holder), ("tick", "\(options.tick)"),
            ("term", "\(options.election.term)"))
        let election = self.election
        let electionTask = Task { await election.run() }
        let maintenanceTask = maintenanceElection.map { m in
            // Only a leader whose rescue schedule is enabled maintains: one whose `maintenance.*` schedules are
            // disabled would hold the role and do nothing, leaving expired leases unrescued (workers maintain then).
            Task {
                await MaintenanceRole.campaign(
                    m, whileEligible: { [self] in election.isLeader && maintenanceSchedulesOn.withLock { $0 } })
            }
        }
        let tickTask = Task { await self.tickLoop() }
        let watchdogTask = Task { await self.watchdog() }
        await withTaskCancellationHandler {
            while !isStopped && !Task.isCancelled {
                await wake.wait(timeout: .seconds(60))
            }
        } onCancel: {
            self.shutdown()
        }
        tickTask.cancel()
        if !(await Self.finishes(tickTask, within: options.shutdownGrace)) {
            // A statement that does not return must not keep leadership past the grace period.
            logger.warning("the tick in progress did not finish within the shutdown grace; leaving it")
        }
        watchdogTask.cancel()
        await watchdogTask.value
        electionTask.cancel()
        await electionTask.value
        maintenanceTask?.cancel()
        await maintenanceTask?.value
        logger.info("scheduler stopped")
    }

    /// Waits for `task` at most `limit`; returns whether it finished. The task is left running otherwise.
    static func finishes(_ task: Task<Void, Never>, within limit: Duration) async -> Bool {
        let once = ResumeOnce()
        return await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
            once.set(cont)
            Task {
                await task.value
                once.resume(true)
            }
            Task {
                try? await Task.sleep(for: limit)
                once.resume(false)
            }
        }
    }

    private var stuckLimit: Duration { options.stuckTick ?? options.election.term }

    /// Steps down when one tick runs longer than `stuckTick`, once per stuck tick.
    private func watchdog() async {
        var steppedDownFor: ContinuousClock.Instant? = nil
        let every = min(options.election.renewInterval, .seconds(1))
        while !Task.isCancelled && !isStopped {
            try? await Task.sleep(for: every)
            guard let started = tickStarted.withLock({ $0 }), started != steppedDownFor else { continue }
            if ContinuousClock.now - started > stuckLimit && election.isLeader {
                steppedDownFor = started
                logger.error(
                    "tick stuck; stepping down so a standby takes over",
                    ("running_for", "\(ContinuousClock.now - started)"))
                stepDowns.add(1, ordering: .relaxed)
                await election.stepDown(for: options.election.term)
            }
        }
    }

    private func tickLoop() async {
        var lastRun: [Int: ContinuousClock.Instant] = [:]
        var failedTicks = 0
        let election = self.election
        let maintenanceElection = self.maintenanceElection
        while !Task.isCancelled && !isStopped {
            let started = ContinuousClock.now
            if election.isLeader {
                tickStarted.withLock { $0 = started }
                if maintenanceElection != nil,
                    let on: Bool = try? await pool.query(
                        "SELECT EXISTS (SELECT 1 FROM nexjobs.schedules WHERE enabled AND kind = 'nexjobs.rescue')"
                    ).first?.decode(0)
                {
                    maintenanceSchedulesOn.withLock { $0 = on }
                }
                let budgetEnd = started + options.tickBudget
                // Sources stop between statements when leadership is lost, on shutdown, or past the budget.
                let context = DueWorkContext(
                    pool: pool, logger: logger, holder: election.holder,
                    isLeader: { [self] in
                        election.isLeader && !isStopped && !Task.isCancelled && ContinuousClock.now < budgetEnd
                    },
                    isMaintenanceLeader: { maintenanceElection?.isLeader ?? false })
                var ran = 0
                var failed = 0
                for (index, source) in options.sources.enumerated() {
                    guard context.isLeader() else { break }
                    if let last = lastRun[index], started - last < source.interval { continue }
                    lastRun[index] = started
                    ran += 1
                    let t0 = ContinuousClock.now
                    do {
                        let n = try await source.run(context)
                        let elapsed = ContinuousClock.now - t0
                        if n > 0 {
                            logger.info(
                                "due work enqueued", ("source", source.name), ("count", String(n)),
                                ("elapsed", "\(elapsed)"))
                        }
                    } catch {
                        failed += 1
                        logger.error("due work failed", ("source", source.name), ("error", "\(error)"))
                    }
                }
                tickStarted.withLock { $0 = nil }
                tickCount.add(1, ordering: .relaxed)
                failedTicks = ran > 0 && failed == ran ? failedTicks + 1 : 0
                if failedTicks >= options.maxFailedTicks && !isStopped {
                    logger.error(
                        "no progress; stepping down so a standby takes over", ("failed_ticks", String(failedTicks)))
                    failedTicks = 0
                    stepDowns.add(1, ordering: .relaxed)
                    await election.stepDown(for: options.election.term)
                }
            }
            let next = started + options.tick
            let now = ContinuousClock.now
            if next > now { try? await Task.sleep(for: next - now) }
        }
    }

    /// Runs every source once, as the leader would, without an election: for tests, benchmarks and
    /// `nexjobs scheduler --once`. Returns the count per source name.
    public func tickOnce() async throws -> [String: Int] {
        let context = DueWorkContext(pool: pool, logger: logger, holder: election.holder, isLeader: { true })
        var result: [String: Int] = [:]
        for source in options.sources {
            result[source.name, default: 0] += try await source.run(context)
        }
        return result
    }
}

/// A continuation resumed by whichever of several tasks comes first.
private final class ResumeOnce: Sendable {
    private let cont = Mutex<CheckedContinuation<Bool, Never>?>(nil)

    func set(_ c: CheckedContinuation<Bool, Never>) { cont.withLock { $0 = c } }

    func resume(_ value: Bool) {
        let c = cont.withLock { c -> CheckedContinuation<Bool, Never>? in
            defer { c = nil }
            return c
        }
        c?.resume(returning: value)
    }
}
