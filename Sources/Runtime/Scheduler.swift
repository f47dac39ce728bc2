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
    /// The due-work sources, run in order each tick on the leader. Default: cron schedules (including the
    /// `nexjobs.rescue` / `nexjobs.prune` maintenance schedules), connection syncs, token refreshes. Append new
    /// kinds (retention purges, privacy requests) here.
    public var sources: [any DueWorkSource] = [
        CronScheduleSource(), ConnectionSyncSource(), TokenRefreshSource(), PrivacyRequestSource(),
    ]

    /// Campaign (while leading) for the `maintenance` role (`MaintenanceRole`); the `maintenance.*` schedules act
    /// only while this scheduler holds it. Default true; false: this scheduler never maintains.
    public var maintenance = true

    public init() {}
}

/// The scheduler process: campaigns for leadership and, while leading, runs each due-work source every tick.
///
/// Any number may run; only the leader acts. `shutdown()` (SIGTERM/SIGINT) stops the tick loop, waits for the
/// tick in progress, then releases leadership so a standby takes over at its next attempt; `run()` returns.
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

    /// - Parameters:
    ///   - holder: this process's id in `nexjobs.leader` (default: host:pid:random).
    public init(pool: PGPool, options: SchedulerOptions = .init(), holder: String? = nil, logger: Logger) {
        self.pool = pool
        self.options = options
        self.logger = logger
        self.election = LeaderElection(
            pool: pool, holder: holder ?? Scheduler.defaultHolder(),
            options: options.election, logger: logger)
        self.maintenanceElection = options.maintenance
            ? LeaderElection(pool: pool, holder: election.holder, options: MaintenanceRole.election(options.election),
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

    /// Asks `run()` to stop (idempotent, callable from a signal handler's queue).
    public func shutdown() {
        stopped.withLock { $0 = true }
        wake.signal()
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    /// Runs until `shutdown()` or cancellation, then releases leadership.
    public func run() async throws {
        try options.election.validate()
        logger.info(
            "scheduler starting", ("holder", election.holder), ("tick", "\(options.tick)"),
            ("term", "\(options.election.term)"))
        let election = self.election
        let electionTask = Task { await election.run() }
        let maintenanceTask = maintenanceElection.map { m in
            Task { await MaintenanceRole.campaign(m, whileEligible: { election.isLeader }) }
        }
        let tickTask = Task { await self.tickLoop() }
        await withTaskCancellationHandler {
            while !isStopped && !Task.isCancelled {
                await wake.wait(timeout: .seconds(60))
            }
        } onCancel: {
            self.shutdown()
        }
        tickTask.cancel()
        await tickTask.value
        electionTask.cancel()
        await electionTask.value
        maintenanceTask?.cancel()
        await maintenanceTask?.value
        logger.info("scheduler stopped")
    }

    private func tickLoop() async {
        var lastRun: [Int: ContinuousClock.Instant] = [:]
        let context = DueWorkContext(
            pool: pool, logger: logger, holder: election.holder,
            isLeader: { [election] in election.isLeader },
            isMaintenanceLeader: { [maintenanceElection] in maintenanceElection?.isLeader ?? false })
        while !Task.isCancelled && !isStopped {
            let started = ContinuousClock.now
            if election.isLeader {
                for (index, source) in options.sources.enumerated() {
                    guard election.isLeader, !Task.isCancelled, !isStopped else { break }
                    if let last = lastRun[index], started - last < source.interval { continue }
                    lastRun[index] = started
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
                        logger.error("due work failed", ("source", source.name), ("error", "\(error)"))
                    }
                }
                tickCount.add(1, ordering: .relaxed)
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
