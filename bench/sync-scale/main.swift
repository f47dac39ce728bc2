// Scale run (issue 14): a sandbox world of N connections synced by real `nexjobs worker` processes (and one
// `nexjobs scheduler`, as after a deploy), every API call delayed by the given latency, the platforms' per-app QPS
// enforced by the sandbox. Usage (see bench/sync/README.md, "Scale run", and bench/sync/scale.sh):
//   sync-scale DATABASE_URL NEXJOBS_BINARY [connections=10000] [options as KEY=VALUE ...]
// DATABASE_URL is a migrated, empty database. Options: latency_ms=20, workers=4, concurrency=8, tiktok_app_qps=30,
// snap_app_qps=0 (0 = no limit), daily_sample=500 (connections), deadline_minutes=150, seed=9, platform_cap=0 (N > 0:
// each platform's sync jobs in its own queue, NEXJOBS_SYNC_QUEUE_*, and every worker runs
// `--queues default,sync.tiktok=N,sync.snapchat=N`; 0: one queue, as before), first_sync_backlog=1000 (the
// scheduler's `--first-sync-backlog`, sql/068; 0 = no limit, every first sync enqueued at once as before).
import Foundation
import Platforms
import Postgres
import Privacy
import Sandbox
import Sync

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("sync-scale: \(message)\n".utf8))
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 3 else {
    fail("usage: sync-scale DATABASE_URL NEXJOBS_BINARY [connections] [key=value ...]")
}
let databaseURL = args[1]
let binary = args[2]
let connectionCount = args.count > 3 ? Int(args[3]) ?? -1 : 10_000
guard (2...100_000).contains(connectionCount) else { fail("connections must be 2...100000") }
var options: [String: Int] = [
    "latency_ms": 20, "workers": 4, "concurrency": 8, "tiktok_app_qps": 30, "snap_app_qps": 0, "daily_sample": 500,
    "deadline_minutes": 150, "seed": 9, "platform_cap": 0, "first_sync_backlog": 1000,
]
/// Each option's range (the app rates are those `NEXJOBS_RATE_LIMIT_APP_RPS_*` accepts, whole numbers here).
let ranges: [String: ClosedRange<Int>] = [
    "latency_ms": 0...10_000, "workers": 1...64, "concurrency": 1...1000, "tiktok_app_qps": 0...10_000,
    "snap_app_qps": 0...10_000, "daily_sample": 0...50_000, "deadline_minutes": 1...1440, "seed": 0...1_000_000,
    "platform_cap": 0...1000, "first_sync_backlog": 0...10_000_000,
]
for raw in args.dropFirst(4) {
    let parts = raw.split(separator: "=", maxSplits: 1).map(String.init)
    guard parts.count == 2, let range = ranges[parts[0]], let v = Int(parts[1]), range.contains(v) else {
        fail(
            "unknown or invalid option \(raw); known: "
                + ranges.keys.sorted().map { "\($0)=\(ranges[$0]!.lowerBound)...\(ranges[$0]!.upperBound)" }.joined(
                    separator: " "))
    }
    options[parts[0]] = v
}
guard options["daily_sample"]! * 2 <= connectionCount else {
    fail("daily_sample must be at most half the connections (an hourly and a daily sample of that many)")
}
guard options["platform_cap"]! <= options["concurrency"]! else {
    fail("platform_cap must be at most concurrency (a worker refuses a queue cap above --concurrency)")
}
let opt = options
let pool = try PGPool(url: databaseURL, maxConnections: 8)
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
func log(_ s: String) {
    FileHandle.standardOutput.write(Data((s + "\n").utf8))
}

// MARK: The world

let tiktokConnections = connectionCount / 2
var sandboxConfig = SandboxConfig(
    seed: UInt64(opt["seed"]!), tiktokConnections: tiktokConnections,
    snapConnections: connectionCount - tiktokConnections,
    accountsPerConnection: 1...3)
sandboxConfig.tiktokAppQPS = opt["tiktok_app_qps"]! > 0 ? opt["tiktok_app_qps"]! : nil
sandboxConfig.snapAppQPS = opt["snap_app_qps"]! > 0 ? opt["snap_app_qps"]! : nil
let box = Sandbox(config: sandboxConfig)
_ = try box.start()
let worldAccounts = box.accounts().count
log("world: \(connectionCount) connections, \(worldAccounts) ad accounts (seed \(opt["seed"]!))")

let keyText = "bench:" + Data((0..<32).map { UInt8($0) }).base64EncodedString()
var childEnv = ProcessInfo.processInfo.environment
for (k, v) in [
    "DATABASE_URL": databaseURL, "NEXJOBS_TOKEN_KEYS": keyText,
    "NEXJOBS_TIKTOK_APP_ID": "bench", "NEXJOBS_TIKTOK_SECRET": "bench-secret",
    "NEXJOBS_TIKTOK_BASE_URL": box.tiktokBaseURL, "NEXJOBS_SNAP_CLIENT_ID": "bench",
    "NEXJOBS_SNAP_CLIENT_SECRET": "bench-secret", "NEXJOBS_SNAP_API_BASE_URL": box.snapAPIBaseURL,
    "NEXJOBS_SNAP_TOKEN_URL": box.snapOAuthURL, "NEXJOBS_SYNC_RETENTION_ENTERPRISE": "90",
    // The client paces each app at the sandbox's limit (the client keeps 10 % headroom).
    "NEXJOBS_RATE_LIMIT_APP_RPS_TIKTOK": "\(opt["tiktok_app_qps"]!)",
    "NEXJOBS_RATE_LIMIT_APP_RPS_SNAPCHAT": "\(opt["snap_app_qps"]!)",
    "NEXJOBS_LOG_LEVEL": "warning",
] {
    childEnv[k] = v
}
if opt["platform_cap"]! > 0 {
    childEnv["NEXJOBS_SYNC_QUEUE_TIKTOK"] = "sync.tiktok"
    childEnv["NEXJOBS_SYNC_QUEUE_SNAPCHAT"] = "sync.snapchat"
}
let childEnvironment = childEnv
let env = SyncEnvironment.fromEnvironment(childEnvironment)
let ring = try KeyRing(keys: [(id: "bench", key: (0..<32).map { UInt8($0) })])
let store = ConnectionStore(vault: TokenVault(keyRing: ring))

// Connections as the app's OAuth callback would create them (next_sync_at = now(): all due at the deploy).
let orgID: Int64 = try await pool.query(
    "INSERT INTO nexcomet.organizations (name, plan) VALUES ('bench scale', 'enterprise') RETURNING id"
).first!.decode(0)
let infos = box.connections()
let connectStart = ContinuousClock.now
try await withThrowingTaskGroup(of: Void.self) { group in
    var next = 0
    func add() {
        guard next < infos.count else { return }
        let info = infos[next]
        next += 1
        group.addTask {
            let platform: AdPlatform = info.platform == .tiktok ? .tiktok : .snapchat
            let tokens = try await env.clients.client(for: platform, pool: pool).exchangeAuthorizationCode(
                info.authCode)
            _ = try await pool.withConnection { c in
                try await store.create(organizationID: orgID, platform: platform, tokens: tokens, on: c)
            }
        }
    }
    for _ in 0..<16 { add() }
    while try await group.next() != nil { add() }
}
box.resetRequestCounts()
log(String(format: "connected %d connections in %.1f s", infos.count, seconds(ContinuousClock.now - connectStart)))
box.setFaults(FaultConfig(probabilities: [.slow: 1.0], slowDelay: .milliseconds(opt["latency_ms"]!)))

// MARK: The deploy: one scheduler and N workers

let logDir = FileManager.default.temporaryDirectory.appendingPathComponent("sync-scale-\(getpid())")
try FileManager.default.createDirectory(at: logDir, withIntermediateDirectories: true)
nonisolated(unsafe) var children: [Process] = []  // touched by the main flow only
func spawn(_ name: String, _ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = arguments
    p.environment = childEnvironment
    let out = logDir.appendingPathComponent("\(name).log")
    guard FileManager.default.createFile(atPath: out.path, contents: nil) else { fail("cannot create \(out.path)") }
    let h = try FileHandle(forWritingTo: out)
    p.standardOutput = h
    p.standardError = h
    try p.run()
    children.append(p)
}
func stopChildren() {
    for p in children where p.isRunning { p.terminate() }
    for p in children { p.waitUntilExit() }
}
/// Fails (stopping the others) when a worker or the scheduler has exited: a refused setting exits 2 at start.
func checkChildren() {
    if let dead = children.first(where: { !$0.isRunning }) {
        let status = dead.terminationStatus
        stopChildren()
        fail("\(dead.arguments?.first ?? "child") exited with status \(status) (logs in \(logDir.path))")
    }
}
let deployWall = Date()
let deploy = ContinuousClock.now
let backlog = opt["first_sync_backlog"]!
try spawn("scheduler", ["scheduler", "--first-sync-backlog", backlog == 0 ? "10000000" : "\(backlog)"])
for n in 1...opt["workers"]! {
    let cap = opt["platform_cap"]!
    let queues = cap > 0 ? ["--queues", "default,sync.tiktok=\(cap),sync.snapchat=\(cap)"] : []
    try spawn("worker-\(n)", ["worker", "--concurrency", "\(opt["concurrency"]!)"] + queues)
}
log(
    "deploy: 1 scheduler, \(opt["workers"]!) workers x \(opt["concurrency"]!) (logs in \(logDir.path)); "
        + (opt["platform_cap"]! > 0
            ? "account syncs in queues sync.tiktok / sync.snapchat, at most \(opt["platform_cap"]!) of each per worker"
            : "one queue")
        + (backlog == 0 ? "; every first sync enqueued at once" : "; first syncs admitted below \(backlog) waiting"))

/// Accounts with a succeeded sync run, and how many succeeded runs there are.
func progress() async throws -> (accounts: Int, runs: Int) {
    let r = try await pool.query(
        """
        SELECT count(DISTINCT ad_account_id)::int, count(*)::int FROM nexcomet.sync_runs WHERE outcome = 'succeeded'
        """
    ).first!
    return (try r.decode(0), try r.decode(1))
}

/// Everything after the deploy; any error stops the scheduler and workers before the bench exits.
func afterDeploy() async throws {
    let deadline = deploy + .seconds(60 * opt["deadline_minutes"]!)
    var timeline: [(minute: Int, accounts: Int)] = []
    var lastMinute = -1
    while true {
        let p = try await progress()
        let minute = Int(seconds(ContinuousClock.now - deploy) / 60)
        if minute != lastMinute {
            timeline.append((minute, p.accounts))
            log("  minute \(minute): \(p.accounts)/\(worldAccounts) accounts synced, \(p.runs) runs")
            lastMinute = minute
        }
        if p.accounts >= worldAccounts { break }
        checkChildren()
        guard ContinuousClock.now < deadline else {
            stopChildren()
            fail("deadline: \(p.accounts)/\(worldAccounts) accounts synced after \(opt["deadline_minutes"]!) minutes")
        }
        try await Task.sleep(for: .seconds(2))
    }
    let firstDone = ContinuousClock.now
    let firstSeconds = seconds(firstDone - deploy)

    // MARK: Measurements of the first sync

    func p99(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    }
    /// API calls of each account's first sync: every run up to and including its first succeeded one (snoozed runs
    /// included); `sync_runs.api_calls` counts every HTTP request of a run.
    let firstCalls: Double = try await pool.query(
        """
        WITH f AS (SELECT ad_account_id, min(id) AS first_ok FROM nexcomet.sync_runs WHERE outcome = 'succeeded'
                    GROUP BY ad_account_id)
        SELECT (sum(r.api_calls)::float8 / count(DISTINCT r.ad_account_id)) FROM nexcomet.sync_runs r
          JOIN f ON f.ad_account_id = r.ad_account_id AND r.id <= f.first_ok
        """
    ).first!.decode(0)
    let firstCallsByPlatform = try await pool.query(
        """
        WITH f AS (SELECT ad_account_id, min(id) AS first_ok FROM nexcomet.sync_runs WHERE outcome = 'succeeded'
                    GROUP BY ad_account_id)
        SELECT a.platform, (sum(r.api_calls)::float8 / count(DISTINCT r.ad_account_id)) FROM nexcomet.sync_runs r
          JOIN f ON f.ad_account_id = r.ad_account_id AND r.id <= f.first_ok
          JOIN nexcomet.ad_accounts a ON a.id = r.ad_account_id
         GROUP BY a.platform ORDER BY a.platform
        """
    ).map { (try $0.decode(0) as String, try $0.decode(1) as Double) }
    /// Queue wait of the account syncs: enqueue to the start of the attempt that completed.
    let waits: [Double] = try await pool.query(
        """
        SELECT extract(epoch FROM attempted_at - created_at)::float8 FROM nexjobs.jobs
         WHERE kind = 'sync_ad_account' AND state = 'completed' AND created_at <= \(deployWall.addingTimeInterval(firstSeconds))
        """
    ).map { try $0.decode(0) }
    /// Per platform: p99 queue wait of the account syncs, and when the platform's last first sync finished.
    let byPlatform = try await pool.query(
        """
        SELECT a.platform,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM j.attempted_at - j.created_at))::float8,
               extract(epoch FROM max(j.finished_at) - \(deployWall))::float8
          FROM nexjobs.jobs j JOIN nexcomet.ad_accounts a ON a.id = (j.args->>'ad_account_id')::bigint
         WHERE j.kind = 'sync_ad_account' AND j.state = 'completed'
           AND j.created_at <= \(deployWall.addingTimeInterval(firstSeconds))
         GROUP BY a.platform ORDER BY a.platform
        """
    ).map { (try $0.decode(0) as String, try $0.decode(1) as Double, try $0.decode(2) as Double) }
    let rateLimited: Int = try await pool.query(
        "SELECT count(*)::int FROM nexcomet.sync_runs WHERE outcome = 'rate_limited'"
    ).first!.decode(0)
    let counts = box.requestCounts()
    var perSecond: [SandboxPlatform: [Int: Int]] = [:]
    for c in counts { perSecond[c.platform, default: [:]][c.second, default: 0] += c.count }
    let deploySecond = Int(deployWall.timeIntervalSince1970)
    log("")
    log("== first sync after the deploy (all \(infos.count) connections due at once) ==")
    log(
        String(
            format: "%d accounts in %.1f min = %.0f accounts/minute; p99 queue wait %.1f min (median %.1f min)",
            worldAccounts, firstSeconds / 60, Double(worldAccounts) * 60 / firstSeconds, p99(waits) / 60,
            (waits.sorted().dropFirst(waits.count / 2).first ?? 0) / 60))
    for (platform, wait, done) in byPlatform {
        log(
            String(
                format: "  %@: p99 queue wait %.1f min, last first sync done at minute %.1f", platform, wait / 60,
                done / 60))
    }
    log(
        String(format: "API calls per account (sync_runs): %.2f", firstCalls) + " ("
            + firstCallsByPlatform.map { String(format: "%@ %.2f", $0.0, $0.1) }.joined(separator: ", ") + ")")
    log(
        "rate-limited runs (snoozed): \(rateLimited); sandbox app-QPS refusals: \("tiktok \(box.appQPSRefusals(.tiktok)), snapchat \(box.appQPSRefusals(.snapchat))")"
    )
    for platform in SandboxPlatform.allCases {
        let s = perSecond[platform] ?? [:]
        let total = s.values.reduce(0, +)
        log("\(platform.rawValue): \(total) requests, busiest second \(s.values.max() ?? 0)")
    }
    log("requests per 5 minutes after the deploy (tiktok / snapchat), the first hour:")
    for bucket in 0..<12 {
        let range = (deploySecond + bucket * 300)..<(deploySecond + (bucket + 1) * 300)
        let t = (perSecond[.tiktok] ?? [:]).filter { range.contains($0.key) }.values.reduce(0, +)
        let s = (perSecond[.snapchat] ?? [:]).filter { range.contains($0.key) }.values.reduce(0, +)
        log(String(format: "  %3d-%3d min: %7d / %7d", bucket * 5, bucket * 5 + 5, t, s))
    }
    /// When each connection's next sync is due (sql/063 spreads the syncs after the first one over the cadence).
    let spread = try await pool.query(
        """
        SELECT floor(extract(epoch FROM next_sync_at - \(deployWall)) / 360)::int AS bucket, count(*)::int
          FROM nexcomet.ad_connections WHERE organization_id = \(orgID) GROUP BY 1 ORDER BY 1
        """
    ).map { (try $0.decode(0) as Int, try $0.decode(1) as Int) }
    log(
        "connections' next sync, per 6 minutes after the deploy: "
            + spread.map { "\($0.0 * 6)m:\($0.1)" }.joined(separator: " "))

    // MARK: Incremental syncs
    // Hourly: the scheduler re-syncs each connection on its own phase within the hour after its first sync (sql/063);
    // those runs happen while the first syncs are still going. Measured here: every account's second succeeded run.
    let hourly = try await pool.query(
        """
        WITH ranked AS (SELECT r.*, row_number() OVER (PARTITION BY ad_account_id ORDER BY id) AS n
                          FROM nexcomet.sync_runs r WHERE outcome = 'succeeded'),
             second AS (SELECT ad_account_id, id FROM ranked WHERE n = 2),
             firsts AS (SELECT ad_account_id, id FROM ranked WHERE n = 1)
        SELECT count(*)::int, coalesce(sum(r.api_calls)::float8 / nullif(count(DISTINCT r.ad_account_id), 0), 0)
          FROM nexcomet.sync_runs r JOIN second s ON s.ad_account_id = r.ad_account_id
          JOIN firsts f ON f.ad_account_id = r.ad_account_id
         WHERE r.id > f.id AND r.id <= s.id
        """
    ).first!
    log("")
    log(
        String(
            format: "hourly re-syncs the scheduler ran during the first sync: %d runs, %.2f API calls per account",
            try hourly.decode(0) as Int, try hourly.decode(1) as Double))

    /// Re-syncs a sample of connections now, as the scheduler would at their next due time: `daysLater` 0 is the hourly
    /// case (entity lists fresh), 1 the daily one (the sample is made to look one day older first: entity lists fetched
    /// 24 h ago, last synced date a day back). Returns the sampled accounts and their mean API calls per account.
    func incremental(sample: Int, offset: Int, daysLater: Int) async throws -> (
        accounts: Int, calls: Double, seconds: Double
    ) {
        let mark: Int64 = try await pool.query("SELECT coalesce(max(id), 0) FROM nexcomet.sync_runs").first!.decode(0)
        let sampled: [Int64] = try await pool.query(
            """
            SELECT id FROM nexcomet.ad_connections WHERE organization_id = \(orgID) ORDER BY id
             LIMIT \(sample) OFFSET \(offset)
            """
        ).map { try $0.decode(0) }
        let sampledAccounts: Int = try await pool.query(
            """
            WITH aged AS (
                UPDATE nexcomet.ad_accounts
                   SET entities_synced_at = entities_synced_at - \(daysLater) * interval '1 day',
                       last_synced_date = last_synced_date - \(daysLater)::int
                 WHERE connection_id = ANY(\(sampled)) RETURNING 1)
            SELECT count(*)::int FROM aged
            """
        ).first!.decode(0)
        _ = try await pool.query("UPDATE nexcomet.ad_connections SET next_sync_at = now() WHERE id = ANY(\(sampled))")
        let started = ContinuousClock.now
        while true {
            let done: Int = try await pool.query(
                """
                SELECT count(DISTINCT r.ad_account_id)::int FROM nexcomet.sync_runs r
                  JOIN nexcomet.ad_accounts a ON a.id = r.ad_account_id
                 WHERE r.id > \(mark) AND r.outcome = 'succeeded' AND a.connection_id = ANY(\(sampled))
                """
            ).first!.decode(0)
            if done >= sampledAccounts { break }
            checkChildren()
            guard ContinuousClock.now < deadline else {
                stopChildren()
                fail("deadline: incremental sample \(done)/\(sampledAccounts)")
            }
            try await Task.sleep(for: .seconds(2))
        }
        let calls: Double = try await pool.query(
            """
            WITH firsts AS (SELECT r.ad_account_id, min(r.id) AS id FROM nexcomet.sync_runs r
                              JOIN nexcomet.ad_accounts a ON a.id = r.ad_account_id
                             WHERE r.id > \(mark) AND r.outcome = 'succeeded' AND a.connection_id = ANY(\(sampled))
                             GROUP BY r.ad_account_id)
            SELECT coalesce(sum(r.api_calls)::float8 / nullif(count(DISTINCT r.ad_account_id), 0), 0)
              FROM nexcomet.sync_runs r
              JOIN firsts f ON f.ad_account_id = r.ad_account_id AND r.id > \(mark) AND r.id <= f.id
            """
        ).first!.decode(0)
        return (sampledAccounts, calls, seconds(ContinuousClock.now - started))
    }
    let sample = opt["daily_sample"]!
    if sample > 0 {
        let h = try await incremental(sample: sample, offset: 0, daysLater: 0)
        log(
            String(
                format:
                    "== hourly incremental (sample: %d connections, %d accounts): %.2f API calls per account, %.1f s ==",
                sample, h.accounts, h.calls, h.seconds))
        let d = try await incremental(sample: sample, offset: sample, daysLater: 1)
        log(
            String(
                format:
                    "== daily incremental (sample: %d connections, %d accounts): %.2f API calls per account, %.1f s ==",
                sample, d.accounts, d.calls, d.seconds))
    }
}
do {
    try await afterDeploy()
} catch {
    stopChildren()
    fail("\(error)")
}
stopChildren()
await box.stop()
await pool.close()
