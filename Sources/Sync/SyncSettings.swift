import Foundation
import Platforms
import Postgres
import Privacy

/// Tunables of the sync handlers; every field has a documented default.
public struct SyncSettings: Sendable {
    /// Days before the last synced date that are fetched again, because platforms restate recent conversions.
    /// Default: TikTok 3, Snapchat 28 (Snap's default swipe-up attribution window).
    public var lookbackDays: [AdPlatform: Int]
    /// Days of history a first sync backfills, by organization plan. Default: free 7, pro 90, enterprise 365.
    /// Free and pro are capped by the policy's windows (7 and 90 days, ``PlanRetention``) whatever is set here.
    public var retentionDays: [String: Int]
    /// A connection whose access token expires within this margin is refreshed before `sync_connection` uses it.
    /// Default 10 minutes (the scheduler's `enqueue_due_refreshes` margin).
    public var refreshMargin: Duration
    /// Queue the handlers enqueue follow-up jobs on. Default `default`.
    public var queue: String
    /// Queue of each platform's sync jobs (`NEXJOBS_SYNC_QUEUE_TIKTOK` / `_SNAPCHAT`): the `sync_ad_account` jobs
    /// `sync_connection` enqueues here, and the `sync_connection` jobs themselves (scheduler, sql/065; resync
    /// webhook); a platform without one uses ``queue``. With TikTok's syncs in their own queue, a worker started with
    /// `--queues default,sync.tiktok=8,sync.snapchat=8` never lets the syncs waiting on TikTok's per-app quota hold
    /// every slot while Snap's wait (the 10,000-connection scale run, `bench/sync/README.md`). Default: none.
    public var syncQueues: [AdPlatform: String] = [:]
    /// Snooze of a rate-limited job when the platform gives no retry time (TikTok never does). Default 30 s.
    public var rateLimitSnooze: Duration
    /// Extra tries of one platform call that failed with a transient error, before the job fails and is retried
    /// with backoff; tries are spaced 250 ms, 500 ms, ... Default 2, so one 5xx does not restart a whole sync.
    public var transientRetries: Int
    /// The clock; "today" of an account is this instant's date in the account's time zone. Default: the wall clock.
    public var now: @Sendable () -> Date
    /// How a sync spends API requests. Default ``SyncCallPlan/lean``.
    public var callPlan: SyncCallPlan = .lean
    /// Age after which the lean plan fetches the entity lists again (a report naming an unknown ad fetches them at
    /// once). Default 6 hours: with the default hourly cadence, 5 syncs in 6 cost one report request each.
    public var entityRefreshInterval: Duration = .seconds(6 * 3600)
    /// Whether each account sync ends with one account-totals check (`SyncAdAccountHandler`, step 3). Default on.
    public var reconcile = true

    public init(
        lookbackDays: [AdPlatform: Int] = [.tiktok: 3, .snapchat: 28],
        retentionDays: [String: Int] = ["free": 7, "pro": 90, "enterprise": 365],
        refreshMargin: Duration = .seconds(600), queue: String = "default", rateLimitSnooze: Duration = .seconds(30),
        transientRetries: Int = 2, now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.lookbackDays = lookbackDays
        self.retentionDays = retentionDays
        self.refreshMargin = refreshMargin
        self.queue = queue
        self.rateLimitSnooze = rateLimitSnooze
        self.transientRetries = transientRetries
        self.now = now
    }

    /// The queue of a platform's `sync_ad_account` jobs.
    public func syncQueue(_ platform: AdPlatform) -> String { syncQueues[platform] ?? queue }

    /// ``syncQueues`` keyed by the platform's name (`tiktok`, `snapchat`: `ad_connections.platform`), as the
    /// scheduler's `enqueue_due_syncs` and the resync webhook route `sync_connection` jobs.
    public var syncQueuesByName: [String: String] {
        Dictionary(uniqueKeysWithValues: syncQueues.map { ($0.key.rawValue, $0.value) })
    }

    /// The per-platform account-sync queue variables.
    public static let syncQueueVariables: [(AdPlatform, String)] = [
        (.tiktok, "NEXJOBS_SYNC_QUEUE_TIKTOK"), (.snapchat, "NEXJOBS_SYNC_QUEUE_SNAPCHAT"),
    ]

    /// Runs one platform call, trying it again up to ``transientRetries`` times after a transient failure.
    func retryingTransient<T: Sendable>(_ call: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await call()
            } catch let e as PlatformError where e.kind == .transient && attempt < transientRetries {
                attempt += 1
                try await Task.sleep(for: .milliseconds(250 << (attempt - 1)))
            }
        }
    }

    /// Lookback of a platform (0 when not configured).
    public func lookback(_ platform: AdPlatform) -> Int { max(0, lookbackDays[platform] ?? 0) }

    /// Retention of a plan; an unknown plan gets the free plan's (or 7 days).
    public func retention(plan: String) -> Int { PlanRetention(days: retentionDays).days(plan: plan) }

    /// Checks every numeric `NEXJOBS_*` setting against its documented range (the worker and the scheduler refuse
    /// to start otherwise, exit 2): `NEXJOBS_SYNC_LOOKBACK_TIKTOK` / `_SNAPCHAT` 0...365 days,
    /// `NEXJOBS_SYNC_RETENTION_FREE|PRO|ENTERPRISE` 1...36500 days, `NEXJOBS_SYNC_RATE_LIMIT_SNOOZE` 0.001...86400
    /// seconds, `NEXJOBS_SYNC_TRANSIENT_RETRIES` 0...10, `NEXJOBS_RATE_LIMIT_RPS` 0.01...10000,
    /// `NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK` / `NEXJOBS_RATE_LIMIT_APP_RPS_SNAPCHAT` 0...10000 (0 = unlimited),
    /// `NEXJOBS_SYNC_QUEUE_TIKTOK` / `_SNAPCHAT` queue names (1-128 of A-Z a-z 0-9 _ . : -).
    /// - Throws: `InputError` naming the variable and its range.
    public static func checkEnvironment(_ env: [String: String]) throws {
        for name in ["NEXJOBS_SYNC_LOOKBACK_TIKTOK", "NEXJOBS_SYNC_LOOKBACK_SNAPCHAT"] {
            _ = try CheckedInput.environment(env, name) { try CheckedInput.integer($0, name: $1, range: 0...365) }
        }
        for plan in ["FREE", "PRO", "ENTERPRISE"] {
            _ = try CheckedInput.environment(env, "NEXJOBS_SYNC_RETENTION_\(plan)") {
                try CheckedInput.integer($0, name: $1, range: 1...36_500)
            }
        }
        _ = try CheckedInput.environment(env, "NEXJOBS_SYNC_RATE_LIMIT_SNOOZE") {
            try CheckedInput.decimal($0, name: $1, range: 0.001...86_400)
        }
        _ = try CheckedInput.environment(env, "NEXJOBS_SYNC_TRANSIENT_RETRIES") {
            try CheckedInput.integer($0, name: $1, range: 0...10)
        }
        _ = try CheckedInput.environment(env, "NEXJOBS_SYNC_ENTITY_REFRESH") {
            try CheckedInput.integer($0, name: $1, range: 0...604_800)
        }
        if let v = env["NEXJOBS_SYNC_RECONCILE"], !v.isEmpty, !["0", "1", "true", "false"].contains(v) {
            throw InputError("NEXJOBS_SYNC_RECONCILE must be 0, 1, true or false, got \(CheckedInput.quote(v))")
        }
        if let v = env["NEXJOBS_SYNC_CALL_PLAN"], !v.isEmpty, SyncCallPlan(rawValue: v) == nil {
            let plans = SyncCallPlan.allCases.map(\.rawValue).joined(separator: ", ")
            throw InputError("NEXJOBS_SYNC_CALL_PLAN must be one of \(plans), got \(CheckedInput.quote(v))")
        }
        _ = try accountRate(env)
        for (_, name) in appRateVariables { _ = try appRate(env, name) }
        for (_, name) in syncQueueVariables {
            _ = try CheckedInput.environment(env, name) { try CheckedInput.queueName($0, name: $1) }
        }
    }

    /// `NEXJOBS_RATE_LIMIT_RPS`: requests per second per ad account, 0.01...10000; nil when unset.
    public static func accountRate(_ env: [String: String]) throws -> Double? {
        try CheckedInput.environment(env, "NEXJOBS_RATE_LIMIT_RPS") {
            try CheckedInput.decimal($0, name: $1, range: 0.01...10_000)
        }
    }

    /// The per-app rate variables (ad-apis.md A5 / B5): requests per second of one app across all workers.
    public static let appRateVariables: [(AdPlatform, String)] = [
        (.tiktok, "NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK"), (.snapchat, "NEXJOBS_RATE_LIMIT_APP_RPS_SNAPCHAT"),
    ]

    /// A per-app rate variable: 0 (unlimited) or 0.1...10000 requests per second; nil when unset. Below 0.1 a whole
    /// app (every account, every worker) would get one request per 10 s or less, and most calls would find their slot
    /// beyond the limiter's 30 s bound and be refused: a typo, not a setting.
    public static func appRate(_ env: [String: String], _ name: String) throws -> Double? {
        try CheckedInput.environment(env, name) { text, variable in
            let rate = try CheckedInput.decimal(text, name: variable, range: 0...10_000)
            guard rate == 0 || rate >= 0.1 else {
                throw InputError(
                    "\(variable) must be 0 (unlimited) or 0.1...10000 requests per second, got \(CheckedInput.quote(text))"
                )
            }
            return rate
        }
    }

    /// Settings from the environment, defaults where a variable is unset or unreadable (values outside the ranges
    /// of `checkEnvironment` are ignored here; the processes check them at start):
    /// `NEXJOBS_SYNC_LOOKBACK_TIKTOK`, `NEXJOBS_SYNC_LOOKBACK_SNAPCHAT` (days),
    /// `NEXJOBS_SYNC_RETENTION_FREE|PRO|ENTERPRISE` (days), `NEXJOBS_SYNC_RATE_LIMIT_SNOOZE` (seconds, may be
    /// fractional), `NEXJOBS_SYNC_TRANSIENT_RETRIES`, `NEXJOBS_SYNC_CALL_PLAN` (`lean` or `per-level`),
    /// `NEXJOBS_SYNC_ENTITY_REFRESH` (seconds, 0...604800), `NEXJOBS_SYNC_RECONCILE` (`0`/`false` turns it off),
    /// `NEXJOBS_SYNC_QUEUE_TIKTOK` / `_SNAPCHAT` (queue names).
    public static func fromEnvironment(_ env: [String: String]) -> SyncSettings {
        var s = SyncSettings()
        if let v = env["NEXJOBS_SYNC_LOOKBACK_TIKTOK"].flatMap({ Int($0) }), (0...365).contains(v) {
            s.lookbackDays[.tiktok] = v
        }
        if let v = env["NEXJOBS_SYNC_LOOKBACK_SNAPCHAT"].flatMap({ Int($0) }), (0...365).contains(v) {
            s.lookbackDays[.snapchat] = v
        }
        for plan in ["free", "pro", "enterprise"] {
            if let v = env["NEXJOBS_SYNC_RETENTION_\(plan.uppercased())"].flatMap({ Int($0) }), (1...36_500).contains(v)
            {
                s.retentionDays[plan] = v
            }
        }
        if let v = env["NEXJOBS_SYNC_RATE_LIMIT_SNOOZE"].flatMap({ Double($0) }), v >= 0.001, v <= 86_400 {
            s.rateLimitSnooze = .milliseconds(Int64(v * 1000))
        }
        if let v = env["NEXJOBS_SYNC_RECONCILE"] { s.reconcile = v != "0" && v != "false" }
        if let v = env["NEXJOBS_SYNC_CALL_PLAN"].flatMap(SyncCallPlan.init(rawValue:)) { s.callPlan = v }
        if let v = env["NEXJOBS_SYNC_ENTITY_REFRESH"].flatMap({ Int($0) }), (0...604_800).contains(v) {
            s.entityRefreshInterval = .seconds(v)
        }
        if let v = env["NEXJOBS_SYNC_TRANSIENT_RETRIES"].flatMap({ Int($0) }), (0...10).contains(v) {
            s.transientRetries = v
        }
        for (platform, name) in syncQueueVariables {
            if let v = env[name], CheckedInput.isQueueName(v) { s.syncQueues[platform] = v }
        }
        return s
    }

    /// The account-local days a sync fetches.
    ///
    /// First sync (`lastSynced` nil): the plan's retention ending today. Later: from `lastSynced` minus the
    /// lookback to today, never earlier than the retention allows.
    public func window(
        platform: AdPlatform, plan: String, timeZone: TimeZone, lastSynced: LocalDate?
    ) -> DateWindow {
        let today = LocalDate(now(), in: timeZone)
        let oldest = today.adding(days: -(retention(plan: plan) - 1))
        guard let lastSynced else { return DateWindow(first: oldest, last: today) }
        let start = min(today, max(oldest, lastSynced.adding(days: -lookback(platform))))
        return DateWindow(first: start, last: today)
    }
}
