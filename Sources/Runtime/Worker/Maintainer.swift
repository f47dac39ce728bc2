import Foundation
import Logs
import Postgres
import Queue
import Synchronization

/// The leader election that decides which one process runs queue maintenance.
///
/// Workers (unless started with `--no-maintenance`) and schedulers campaign for the role `maintenance` in
/// `nexjobs.leader` (the same election as the scheduler's, `LeaderElection`); only the current holder rescues
/// expired leases, prunes finished jobs, forgets dead workers and prunes old schedule fires. A worker that holds
/// it runs `Maintainer`'s loop with its own settings; a scheduler that holds it runs the `maintenance.*` cron
/// schedules (`MaintenanceAction`), with those schedules' settings. A process that does not campaign never
/// maintains.
public enum MaintenanceRole {
    /// The row of `nexjobs.leader` for queue maintenance.
    public static let name = "maintenance"

    /// Campaigns for the role only while `eligible()` (a scheduler: while it leads the scheduler role, since only
    /// the scheduler leader ticks its `maintenance.*` schedules); gives the role up as soon as it is not, and when
    /// the task is cancelled.
    public static func campaign(_ election: LeaderElection, whileEligible eligible: @Sendable () -> Bool) async {
        while !Task.isCancelled {
            if eligible() {
                await election.attempt()
            } else if election.isLeader {
                await election.release()
            }
            let o = election.options
            let pause =
                election.isLeader
                ? min(o.renewInterval, max(.milliseconds(100), election.remainingLeadership / 2))
                : min(o.standbyRetry, .milliseconds(500))
            try? await Task.sleep(for: pause)
        }
        await election.release()
    }

    /// Election options for the maintenance role, from a process's own election timing.
    public static func election(_ base: LeaderElectionOptions = .init()) -> LeaderElectionOptions {
        var o = base
        o.role = name
        return o
    }
}

/// Queue maintenance run by a worker while it holds the `maintenance` role: every `interval` it rescues expired
/// leases; every minute it prunes finished jobs past their retention, forgets workers dead for an hour and prunes
/// schedule fire records older than 30 days. Each step runs in batches and stops when leadership ends.
public final class Maintainer: Sendable {
    public let election: LeaderElection
    private let pool: PGPool
    private let interval: Duration
    private let completedRetention: Duration
    private let failedRetention: Duration
    private let logger: Logger
    private let wake = WakeSignal()
    private let stopped = Atomic<Bool>(false)
    private let rescuedCount = Atomic<Int>(0)
    private let prunedCount = Atomic<Int>(0)
    private let passes = Atomic<Int>(0)

    /// How long schedule fire records are kept (the `maintenance.prune` schedule's default `fires_retention`).
    static let firesRetention: Duration = .seconds(30 * 86_400)

    public init(
        pool: PGPool, holder: String, interval: Duration, completedRetention: Duration,
        failedRetention: Duration, election: LeaderElectionOptions = .init(), logger: Logger
    ) {
        self.pool = pool
        self.interval = interval
        self.completedRetention = completedRetention
        self.failedRetention = failedRetention
        self.logger = logger
        self.election = LeaderElection(
            pool: pool, holder: holder, options: MaintenanceRole.election(election), logger: logger)
    }

    /// Jobs this process rescued.
    public var rescued: Int { rescuedCount.load(ordering: .relaxed) }
    /// Finished jobs this process pruned.
    public var pruned: Int { prunedCount.load(ordering: .relaxed) }
    /// Maintenance passes this process ran as leader.
    public var leaderPasses: Int { passes.load(ordering: .relaxed) }

    public func shutdown() {
        stopped.store(true, ordering: .releasing)
        wake.signal()
    }

    private var isStopped: Bool { stopped.load(ordering: .acquiring) }

    /// Campaigns and maintains until `shutdown()`, then releases the role so another process takes over.
    public func run() async {
        let election = self.election
        let campaign = Task { await election.run() }
        var lastPrune: ContinuousClock.Instant? = nil
        while !isStopped {
            if election.isLeader {
                passes.add(1, ordering: .relaxed)
                do {
                    try await rescue()
                    if lastPrune.map({ ContinuousClock.now - $0 > .seconds(60) }) ?? true {
                        lastPrune = .now
                        try await prune()
                    }
                } catch {
                    logger.warning("maintenance failed", ("error", "\(error)"))
                }
            }
            await wake.wait(timeout: interval)
        }
        campaign.cancel()
        await campaign.value
    }

    private func rescue() async throws {
        var total = 0
        while election.isLeader && !isStopped {
            let n: Int = try await pool.query(JobStore.rescue(batchSize: 1000)).first?.decode(0) ?? 0
            total += n
            if n < 1000 { break }
        }
        rescuedCount.add(total, ordering: .relaxed)
        if total > 0 { logger.warning("rescued jobs with expired leases", ("count", String(total))) }
    }

    private func prune() async throws {
        var total = 0
        while election.isLeader && !isStopped {
            let n: Int =
                try await pool.query(
                    JobStore.prune(
                        completedRetention: completedRetention, failedRetention: failedRetention, batchSize: 5000)
                ).first?.decode(0) ?? 0
            total += n
            if n < 5000 { break }
        }
        prunedCount.add(total, ordering: .relaxed)
        if total > 0 { logger.info("pruned finished jobs", ("count", String(total))) }
        guard election.isLeader else { return }
        try await pool.execute(JobStore.forgetDeadWorkers)
        while election.isLeader && !isStopped {
            let n = try await pool.execute(JobStore.pruneScheduleFires(retention: Self.firesRetention))
            if n < 5000 { break }
        }
    }
}
