import Foundation
import Logs
import Postgres
import Synchronization

/// Timing of a leader election. Defaults give a takeover within about 12 s of the leader's death.
public struct LeaderElectionOptions: Sendable {
    /// The role elected (the row of `nexjobs.leader`); default `scheduler`, which `nexjobs stats` reports.
    public var role: String = "scheduler"
    /// Length of a term; a dead leader's term runs out after at most this. Default 10 s.
    public var term: Duration = .seconds(10)
    /// How often the leader extends its term. Default 3 s: two extensions may fail before the term is at risk.
    public var renewInterval: Duration = .seconds(3)
    /// How often a standby tries to take an expired term. Default 2 s.
    public var standbyRetry: Duration = .seconds(2)
    /// The leader stops acting this long before its term ends, measured on its own monotonic clock from the
    /// moment it sent the last successful extension, so clock drift between hosts and a slow reply cannot
    /// make two processes act at once. Default 2 s.
    public var safetyMargin: Duration = .seconds(2)

    public init() {}

    /// Checks the relations between the durations.
    public func validate() throws {
        guard term > .zero, renewInterval > .zero, standbyRetry > .zero, safetyMargin >= .zero else {
            throw ScheduleSpecError(message: "leader election durations must be positive")
        }
        guard renewInterval + safetyMargin < term else {
            throw ScheduleSpecError(message: "the renew interval plus the safety margin must be shorter than the term")
        }
    }
}

/// Leader election on the `nexjobs.leader` table, safe behind PgBouncer transaction pooling.
///
/// Every attempt is one autocommit statement (`nexjobs.leader_acquire`): the holder extends its own term and
/// anyone takes an expired term. Leadership is local knowledge with a deadline: `isLeader` is true only until
/// `term - safetyMargin` after the last successful extension was sent, so a leader cut off from the database
/// stops acting before a standby can take over. `run()` loops until cancelled, then releases the term.
/// `stepDown(for:)` releases at once and stays out of the election for a while (a leader that cannot progress).
public final class LeaderElection: Sendable {
    public let holder: String
    public let options: LeaderElectionOptions
    private let pool: PGPool
    private let logger: Logger
    private let deadline = Mutex<ContinuousClock.Instant?>(nil)
    private let transitions = Mutex<Int>(0)
    /// Until when this process stays out of the election after `stepDown(for:)`.
    private let pausedUntil = Mutex<ContinuousClock.Instant?>(nil)

    /// - Parameters:
    ///   - holder: this process's unique id, stored in `nexjobs.leader.holder` (shown by `nexjobs stats`).
    public init(pool: PGPool, holder: String, options: LeaderElectionOptions = .init(), logger: Logger) {
        self.pool = pool
        self.holder = holder
        self.options = options
        self.logger = logger.with(("role", options.role), ("holder", holder))
    }

    /// Whether this process may act as leader right now.
    public var isLeader: Bool {
        guard let d = deadline.withLock({ $0 }) else { return false }
        return ContinuousClock.now < d
    }

    /// How long leadership lasts without another extension (zero when not leading).
    public var remainingLeadership: Duration {
        guard let d = deadline.withLock({ $0 }) else { return .zero }
        return max(.zero, d - ContinuousClock.now)
    }

    /// Number of times this process became leader.
    public var timesElected: Int { transitions.withLock { $0 } }

    /// Whether this process is standing down after `stepDown(for:)` (it neither leads nor campaigns).
    public var isStandingDown: Bool {
        pausedUntil.withLock { p in
            guard let until = p else { return false }
            if ContinuousClock.now < until { return true }
            p = nil
            return false
        }
    }

    /// Gives leadership up at once and stays out of the election for `pause`, so a standby takes over: what a
    /// leader that cannot make progress does. Afterwards it campaigns again like any standby.
    public func stepDown(for pause: Duration) async {
        pausedUntil.withLock { $0 = ContinuousClock.now + pause }
        logger.warning("stepping down", ("pause", "\(pause)"))
        await release()
    }

    /// One acquire-or-extend attempt; returns whether this process leads afterwards.
    @discardableResult
    public func attempt() async -> Bool {
        if isStandingDown { return false }
        let wasLeader = isLeader
        let sent = ContinuousClock.now
        do {
            let termText = "\(Self.milliseconds(options.term)) milliseconds"
            let rows = try await pool.query(
                "SELECT nexjobs.leader_acquire(\(options.role), \(holder), \(termText)::interval) IS NOT NULL")
            let won: Bool = try rows.first?.decode(0) ?? false
            if won && isStandingDown {
                // `stepDown` ran while this attempt was in flight and may have released before it extended the
                // term: give the term up again.
                await release(force: true)
                return false
            }
            if won {
                deadline.withLock { $0 = sent + options.term - options.safetyMargin }
                if !wasLeader {
                    transitions.withLock { $0 += 1 }
                    logger.info("became leader", ("term", "\(options.term)"))
                }
                return true
            }
            deadline.withLock { $0 = nil }
            if wasLeader { logger.warning("lost leadership: another process holds the term") }
            return false
        } catch {
            // Keep the deadline: leadership ends by itself when it passes without an extension.
            logger.warning(
                "leader election attempt failed", ("error", "\(error)"),
                ("leading_for", "\(remainingLeadership)"))
            return isLeader
        }
    }

    /// Campaigns until the task is cancelled, then releases the term if held.
    public func run() async {
        var lastLeading = false
        while !Task.isCancelled {
            if isStandingDown {
                lastLeading = false
                try? await Task.sleep(for: options.standbyRetry)
                continue
            }
            let leading = await attempt()
            if lastLeading && !leading && !isLeader { logger.warning("stopped acting as leader") }
            lastLeading = leading
            var pause = leading ? options.renewInterval : options.standbyRetry
            if leading {
                // Retry sooner when extensions are failing, but never past the local deadline.
                pause = min(pause, max(.milliseconds(100), remainingLeadership / 2))
            }
            try? await Task.sleep(for: pause)
        }
        await release()
    }

    /// Gives the term up at once (term_until = now()) so a standby takes over on its next attempt.
    public func release() async {
        await release(force: false)
    }

    private func release(force: Bool) async {
        let held = deadline.withLock { d -> Bool in
            let h = d != nil
            d = nil
            return h
        }
        guard held || force else { return }
        // A fresh task: the caller is usually being cancelled, and the release must still reach the database.
        let (pool, role, holder) = (pool, options.role, holder)
        let outcome = await Task { () -> Error? in
            do {
                try await pool.execute("SELECT nexjobs.leader_release(\(role), \(holder))")
                return nil
            } catch { return error }
        }.value
        if let error = outcome {
            logger.warning("could not release leadership; it expires with the term", ("error", "\(error)"))
        } else {
            logger.info("released leadership")
        }
    }

    public static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
