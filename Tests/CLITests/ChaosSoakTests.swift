import Foundation
import PGTestSupport
import Postgres
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Chaos soak: the whole system as real processes (`nexjobs sandbox` with fault injection, two schedulers, several
/// workers) on a PostgreSQL cluster of its own, while the test `kill -9`s a random worker every 2-5 s, kills the
/// leading scheduler once and restarts PostgreSQL once. Afterwards the system must quiesce and be exact:
///
/// - every ad account's metrics equal the sandbox's ground truth (each account's retained 90 days);
/// - no metric row was written twice: each row's current version (`xmin`) is the transaction of one succeeded
///   `sync_runs` row of its account, and each succeeded run's `rows_written` equals the rows still carrying its
///   `xmin` (a row rewritten by a later run would lower that count), so the sum of `rows_written` is the row count;
///   no job recorded two succeeded runs;
/// - every job is `completed`, or `failed` for a deliberate reason: the revoked connection's sync
///   ("re-authorization required") or a `noop` asked to fail more often than its `max_attempts`;
/// - every completed `noop {"record_tx": true}` job (a stream enqueued during the soak, plus an `@every 2s` schedule)
///   has exactly one `noop_log` row (written in its completion transaction), and the schedule fired every 2 s
///   exactly once across the leader kill and the restart.
///
/// Settings (environment; the defaults are the CI run, about 2 minutes on 2 cores):
/// `NEXJOBS_SOAK_SECONDS` chaos duration 20...7200 (default 70), `NEXJOBS_SOAK_SEED` (default random; printed, it
/// fixes the kill schedule and the sandbox's world and fault draws), `NEXJOBS_SOAK_CONNECTIONS` per platform 2...50
/// (default 4), `NEXJOBS_SOAK_WORKERS` 2...20 (default 3), `NEXJOBS_SOAK_FAULTS` to replace the fault set, e.g.
/// `rate_limit=0.05,server_error=0.1` (kinds of `Sources/Sandbox/Faults.swift`, probabilities 0...1).
/// `bench/soak/run.sh` runs a long one.
final class ChaosSoakTests: XCTestCase {
    /// The fault probabilities per API request (the sandbox draws them from its seed): rate limits, 5xx, slow
    /// answers, and every damaged-body kind (`FaultKind.damagedBodies`: not JSON, cut-short transfer, truncated
    /// JSON, an HTML error page, JSON of the wrong shape), which the clients retry on the request, then the job.
    static var defaultFaults: [String: Double] {
        [
            "rate_limit": 0.04, "server_error": 0.08, "slow": 0.05, "truncated_body": 0.01, "malformed_json": 0.01,
            "truncated_json": 0.01, "html_body": 0.01, "wrong_shape": 0.01,
        ]
    }

    struct Settings {
        var seconds = 70
        var seed = UInt64.random(in: 0...UInt64(Int64.max))
        var connectionsPerPlatform = 4
        var workers = 3
        var faults = ChaosSoakTests.defaultFaults

        static func fromEnvironment(_ env: [String: String]) throws -> Settings {
            var s = Settings()
            func int(_ name: String, _ range: ClosedRange<Int>) throws -> Int? {
                guard let text = env[name], !text.isEmpty else { return nil }
                guard let v = Int(text), range.contains(v) else {
                    throw TestEnvironmentError(
                        description: "\(name) must be an integer in \(range.lowerBound)...\(range.upperBound)")
                }
                return v
            }
            s.seconds = try int("NEXJOBS_SOAK_SECONDS", 20...7_200) ?? s.seconds
            s.connectionsPerPlatform = try int("NEXJOBS_SOAK_CONNECTIONS", 2...50) ?? s.connectionsPerPlatform
            s.workers = try int("NEXJOBS_SOAK_WORKERS", 2...20) ?? s.workers
            if let text = env["NEXJOBS_SOAK_SEED"], !text.isEmpty {
                guard let v = UInt64(text), v <= UInt64(Int64.max) else {
                    throw TestEnvironmentError(description: "NEXJOBS_SOAK_SEED must be an integer in 0...\(Int64.max)")
                }
                s.seed = v
            }
            if let text = env["NEXJOBS_SOAK_FAULTS"], !text.isEmpty {
                s.faults = [:]
                for item in text.split(separator: ",") {
                    let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    guard parts.count == 2, let p = Double(parts[1]), (0...1).contains(p) else {
                        throw TestEnvironmentError(
                            description: "NEXJOBS_SOAK_FAULTS must be kind=probability,... with probabilities in 0...1")
                    }
                    s.faults[parts[0]] = p
                }
            }
            return s
        }
    }

    /// Kill schedule randomness, reproducible from the printed seed.
    struct SplitMix64 {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        /// Milliseconds in `range`.
        mutating func millis(_ range: ClosedRange<Int>) -> Duration {
            .milliseconds(range.lowerBound + below(range.upperBound - range.lowerBound + 1))
        }
    }

    /// What happened, for the summary line and `bench/soak/README.md`.
    struct Tally {
        var workerKills = 0
        var schedulerKills = 0
        var postgresRestarts = 0
        var takeover: Duration = .zero
        var restartOutage: Duration = .zero
        var drain: Duration = .zero
    }

    // Worker and scheduler timing: short leases and terms so rescues and the handover happen within seconds.
    static let workerArgs = [
        "worker", "--concurrency", "8", "--poll", "200ms", "--retry-base", "200ms", "--retry-max", "2s",
        "--lease", "3s", "--heartbeat", "500ms", "--maintenance-interval", "500ms",
    ]
    static let schedulerTiming = [
        "--tick", "200ms", "--term", "3s", "--renew", "500ms", "--standby-retry", "300ms", "--safety-margin", "1s",
    ]
    static let scheduleName = "soak_every_2s"

    func testChaosSoakEndsExactWithEveryJobAccountedFor() async throws {
        let settings = try Settings.fromEnvironment(ProcessInfo.processInfo.environment)
        let faultText = settings.faults.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            .joined(separator: ",")
        print(
            """
            soak: seed \(settings.seed) (NEXJOBS_SOAK_SEED repeats it), \(settings.seconds) s of chaos, \
            \(settings.connectionsPerPlatform) connections per platform, \(settings.workers) workers, faults \(faultText)
            """)
        let cluster = try await PrivateCluster.start()
        defer { cluster.stop() }
        let soak = Soak(settings: settings, cluster: cluster)
        do {
            try await soak.run()
        } catch {
            XCTFail("soak: \(error)")
        }
        await soak.stopAll()
        await soak.pool.close()
    }
}

/// A PostgreSQL cluster owned by one test (it restarts it), on a random port in 26000...31999.
struct PrivateCluster {
    let directory: URL
    let dataDirectory: String
    let adminURL: String
    static let script = TestDatabase.repositoryRoot.appendingPathComponent("deploy/pg-cluster.sh").path

    /// Runs `deploy/pg-cluster.sh` (output to /dev/null: the server it starts would hold a pipe open).
    static func run(_ args: [String]) async throws {
        let status = try await runDetached(["/bin/bash", script] + args)
        guard status == 0 else {
            throw TestEnvironmentError(description: "pg-cluster.sh \(args.joined(separator: " ")) exited \(status)")
        }
    }

    static func start() async throws -> PrivateCluster {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nexjobs-soak-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        _ = chmod(dir.path, 0o755)
        let data = dir.appendingPathComponent("data").path
        // Below the ephemeral range (32768+); another attempt when some other server holds the port.
        for attempt in 1...5 {
            let port = Int.random(in: 26000...31999)
            do {
                try await run(["start", data, String(port)])
                let user = getuid() == 0 ? "postgres" : String(cString: getpwuid(getuid())!.pointee.pw_name)
                return PrivateCluster(
                    directory: dir, dataDirectory: data, adminURL: "postgres://\(user)@127.0.0.1:\(port)/postgres")
            } catch  where attempt < 5 {
                try? await run(["stop", data])
            } catch {
                let log = (try? String(contentsOfFile: data + "/server.log", encoding: .utf8)) ?? "(no server.log)"
                try? FileManager.default.removeItem(at: dir)
                throw TestEnvironmentError(description: "\(error); server.log:\n\(log.suffix(2000))")
            }
        }
        throw TestEnvironmentError(description: "no port found for the soak's cluster")
    }

    func restart() async throws { try await Self.run(["restart", dataDirectory]) }

    /// Stops synchronously (from `defer`): the cluster must not outlive the test.
    func stop() {
        _ = system("/bin/bash '\(Self.script)' stop '\(dataDirectory)' >/dev/null 2>&1")
        try? FileManager.default.removeItem(at: directory)
    }
}

/// One soak run. Mutated only by the test's task, sequentially.
final class Soak: @unchecked Sendable {
    typealias Settings = ChaosSoakTests.Settings
    let settings: Settings
    let cluster: PrivateCluster
    let pool: PGPool
    var rng: ChaosSoakTests.SplitMix64
    var tally = ChaosSoakTests.Tally()
    var env: [String: String] = [:]
    var base = ""
    var sandbox: NexjobsProcess?
    var workers: [NexjobsProcess] = []
    var schedulers: [String: NexjobsProcess] = [:]
    var schedulerSerial = 0
    /// Every process ever started (killed ones included), for the token check over all logs.
    var everything: [NexjobsProcess] = []
    var secrets = Set<String>()
    var revokedConnection: Int64 = 0
    var revokedAccounts = Set<String>()

    init(settings: Settings, cluster: PrivateCluster) {
        self.settings = settings
        self.cluster = cluster
        pool = try! PGPool(url: cluster.adminURL, maxConnections: 3)
        rng = .init(state: settings.seed)
    }

    func start(_ args: [String]) throws -> NexjobsProcess {
        let p = NexjobsProcess(args, databaseURL: cluster.adminURL, environment: env)
        try p.start()
        everything.append(p)
        return p
    }

    func startWorker() throws -> NexjobsProcess { try start(ChaosSoakTests.workerArgs) }

    func startScheduler() throws {
        schedulerSerial += 1
        let id = "soak-s\(schedulerSerial)"
        schedulers[id] = try start(["scheduler", "--id", id] + ChaosSoakTests.schedulerTiming)
    }

    func int(_ sql: PGQuery) async throws -> Int { try await pool.query(sql).first!.decode(0) }

    // MARK: The run

    func run() async throws {
        try await setUp()
        let started = ContinuousClock.now
        try await chaos()
        let chaosTime = ContinuousClock.now - started
        try await quiesce()
        let snapshot = try await truthSnapshot()
        await stopAll()
        try await check(snapshot, chaosTime: chaosTime)
    }

    func setUp() async throws {
        let (code, out) = try await NexjobsProcess.run(["migrate"], databaseURL: cluster.adminURL)
        guard code == 0 else { throw TestEnvironmentError(description: "migrate exited \(code): \(out)") }
        // This run's data only: no built-in schedule (retention_purge) may delete metrics under the checks.
        try await pool.execute("UPDATE nexjobs.schedules SET enabled = false")
        try await pool.execute(
            """
            INSERT INTO nexjobs.schedules (name, cron, kind, args)
            VALUES (\(ChaosSoakTests.scheduleName), '@every 2s', 'noop', '{"record_tx": true}')
            """)
        let key = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        env = ["NEXJOBS_TOKEN_KEYS": "soak:" + key, "NEXJOBS_LOG_LEVEL": "warning"]
        // The sandbox's Snap tokens live an hour, so no refresh_token job is due within a long run's usual length.
        let sb = try start([
            "sandbox", "--port", "0", "--seed", String(settings.seed % 1_000_000),
            "--tiktok-connections", String(settings.connectionsPerPlatform),
            "--snap-connections", String(settings.connectionsPerPlatform), "--accounts-per-connection", "1-3",
            "--snap-token-ttl", "3600",
        ])
        sandbox = sb
        var port: String?
        _ = await waitUntil(timeout: .seconds(30)) {
            port = sb.text.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/).map { String($0.1) }
            return port != nil
        }
        guard let port else { throw TestEnvironmentError(description: "the sandbox did not start:\n\(sb.text)") }
        base = "http://127.0.0.1:\(port)"
        env.merge([
            "NEXJOBS_TIKTOK_APP_ID": "soak-app", "NEXJOBS_TIKTOK_SECRET": "soak-tiktok-secret",
            "NEXJOBS_TIKTOK_BASE_URL": base + "/open_api/v1.3/",
            "NEXJOBS_SNAP_CLIENT_ID": "soak-client", "NEXJOBS_SNAP_CLIENT_SECRET": "soak-snap-secret",
            "NEXJOBS_SNAP_API_BASE_URL": base + "/v1/", "NEXJOBS_SNAP_TOKEN_URL": base + "/login/oauth2/access_token",
            "NEXJOBS_SYNC_RATE_LIMIT_SNOOZE": "0.5",
        ]) { $1 }
        secrets = ["soak-tiktok-secret", "soak-snap-secret"]
        try await connectAll()
        todayAtStart = try await accountToday()
        // One TikTok grant is revoked: its sync must fail deliberately ("re-authorization required").
        _ = try await http("POST", "/_sandbox/revoke", #"{"platform": "tiktok", "connection": 0}"#)
        var probabilities: [String] = []
        for (kind, p) in settings.faults.sorted(by: { $0.key < $1.key }) { probabilities.append("\"\(kind)\": \(p)") }
        let faults = #"{"slow_delay_ms": 300, "probabilities": {"# + probabilities.joined(separator: ", ") + "}}"
        let answer = try await http("POST", "/_sandbox/faults", faults)
        for kind in settings.faults.keys where !answer.contains("\"\(kind)\"") {
            throw TestEnvironmentError(description: "the sandbox did not take fault \(kind): \(answer)")
        }
        // Every connection syncs at least once a minute (the smallest cadence); the chaos loop also makes some due.
        try await pool.execute("UPDATE nexcomet.ad_connections SET sync_cadence = '1 minute', next_sync_at = now()")
        try startScheduler()
        try startScheduler()
        workers = try (0..<settings.workers).map { _ in try startWorker() }
    }

    /// Exchanges each sandbox auth code and pipes the OAuth answer into `nexjobs connections add` (tokens on stdin).
    func connectAll() async throws {
        let (code, orgText) = try await NexjobsProcess.run(
            ["orgs", "add", "Soak", "--plan", "pro"], input: "", environment: env.merging(dbEnv) { $1 })
        guard code == 0, let org = Int64(orgText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestEnvironmentError(description: "orgs add exited \(code): \(orgText)")
        }
        for i in 0..<settings.connectionsPerPlatform {
            for platform in ["tiktok", "snapchat"] {
                let body: String
                if platform == "tiktok" {
                    body = try await http(
                        "POST", "/open_api/v1.3/oauth2/access_token/",
                        #"{"app_id": "soak-app", "secret": "soak-tiktok-secret", "auth_code": "tiktok-auth-\#(i)"}"#)
                } else {
                    body = try await http(
                        "POST", "/login/oauth2/access_token",
                        "grant_type=authorization_code&client_id=soak-client&client_secret=soak-snap-secret"
                            + "&code=snap-auth-\(i)", contentType: "application/x-www-form-urlencoded")
                }
                for m in body.matches(of: /"(?:access_token|refresh_token)"\s*:\s*"([^"]+)"/) {
                    secrets.insert(String(m.1))
                }
                let (status, out) = try await NexjobsProcess.run(
                    ["connections", "add", "--org", String(org), "--platform", platform], input: body,
                    environment: env.merging(dbEnv) { $1 })
                guard status == 0, let id = Int64(out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    throw TestEnvironmentError(description: "connections add exited \(status): \(out)")
                }
                if platform == "tiktok" && i == 0 { revokedConnection = id }
            }
        }
        let listing = try json(try await http("GET", "/_sandbox/connections"))
        for c in listing["connections"] as? [[String: Any]] ?? []
        where
            c["platform"] as? String == "tiktok" && (c["index"] as? NSNumber)?.intValue == 0
        {
            revokedAccounts.formUnion(c["account_ids"] as? [String] ?? [])
        }
        guard !revokedAccounts.isEmpty else {
            throw TestEnvironmentError(description: "the sandbox listing names no account of TikTok connection 0")
        }
    }

    var dbEnv: [String: String] { ["DATABASE_URL": cluster.adminURL] }

    /// Kills a random worker every 2-5 s (and starts a replacement, as a supervisor would), kills the leading
    /// scheduler at a third of the run and restarts PostgreSQL at two thirds; meanwhile enqueues `noop` jobs and
    /// makes some connections due.
    func chaos() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(settings.seconds)
        let leaderKillAt = start + .seconds(settings.seconds) * 0.35
        let restartAt = start + .seconds(settings.seconds) * 0.65
        var nextKill = start + rng.millis(2000...5000)
        var nextEnqueue = start
        var nextPoke = start + .seconds(8)
        var second = 0
        var pokeRound = 0
        while clock.now < end {
            let now = clock.now
            if now >= nextKill {
                let i = rng.below(workers.count)
                let victim = workers[i]
                victim.signal(SIGKILL)
                guard await victim.wait(timeout: .seconds(10)) != nil else {
                    throw TestEnvironmentError(description: "a worker survived kill -9")
                }
                workers[i] = try startWorker()
                tally.workerKills += 1
                nextKill = now + rng.millis(2000...5000)
            }
            if tally.schedulerKills == 0 && now >= leaderKillAt {
                try await killLeader()
            }
            if tally.postgresRestarts == 0 && now >= restartAt {
                let began = clock.now
                try await cluster.restart()
                tally.restartOutage = clock.now - began
                tally.postgresRestarts += 1
            }
            if now >= nextEnqueue {
                second += 1
                // Enqueues fail while PostgreSQL restarts; the checks read what is in the database at the end.
                _ = try? await pool.execute(
                    """
                    SELECT nexjobs.enqueue('noop', jsonb_build_object('record_tx', true,
                                                                      'sleep_ms', (random() * 400)::int))
                      FROM generate_series(1, 8)
                    """)
                if second % 4 == 0 {
                    // Fails on every attempt: deliberately failed after its two attempts.
                    _ = try? await pool.execute(
                        """
                        SELECT nexjobs.enqueue('noop', '{"fail_times": 1000, "sleep_ms": 100}', max_attempts => 2)
                        """)
                }
                nextEnqueue = nextEnqueue + .seconds(1)
            }
            if now >= nextPoke {
                pokeRound += 1
                _ = try? await pool.execute(
                    """
                    UPDATE nexcomet.ad_connections SET next_sync_at = now()
                     WHERE status = 'active' AND (id + \(pokeRound)) % 2 = 0
                    """)
                nextPoke = now + .seconds(10)
            }
            // Pacing of the chaos schedule (not a wait for a condition).
            try await Task.sleep(for: .milliseconds(100))
        }
        if tally.schedulerKills == 0 { try await killLeader() }
        if tally.postgresRestarts == 0 {
            try await cluster.restart()
            tally.postgresRestarts += 1
        }
    }

    /// kill -9 the leading scheduler, start another one, and wait for a different leader.
    func killLeader() async throws {
        var holder: String?
        _ = await waitUntil(timeout: .seconds(20)) {
            holder = try? await self.pool.query(
                "SELECT holder FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()"
            ).first?.decode(0)
            return holder.map { schedulers[$0] != nil } ?? false
        }
        guard let holder, let leader = schedulers[holder] else {
            throw TestEnvironmentError(description: "no scheduler of this run leads (holder \(holder ?? "none"))")
        }
        let killedAt = ContinuousClock.now
        leader.signal(SIGKILL)
        _ = await leader.wait(timeout: .seconds(10))
        schedulers.removeValue(forKey: holder)
        try startScheduler()
        tally.schedulerKills += 1
        let took = await waitUntil(timeout: .seconds(20)) {
            let now: String? = try? await self.pool.query(
                "SELECT holder FROM nexjobs.leader WHERE name = 'scheduler' AND term_until > now()"
            ).first?.decode(0)
            return now != nil && now != holder
        }
        guard took else { throw TestEnvironmentError(description: "no scheduler took over from \(holder) in 20 s") }
        tally.takeover = ContinuousClock.now - killedAt
    }

    /// Stops new work (no more due syncs, the schedule disabled) and waits until no job is pending or running.
    func quiesce() async throws {
        let began = ContinuousClock.now
        try await pool.execute(
            "UPDATE nexjobs.schedules SET enabled = false WHERE name = \(ChaosSoakTests.scheduleName)")
        try await pool.execute(
            "UPDATE nexcomet.ad_connections SET sync_cadence = '1 day', next_sync_at = now() + interval '1 day'")
        let timeout = Duration.seconds(max(120, settings.seconds))
        let idle = await waitUntil(timeout: timeout) {
            (try? await self.int(
                "SELECT count(*)::int FROM nexjobs.jobs WHERE state IN ('available', 'running', 'retryable')")) == 0
        }
        tally.drain = ContinuousClock.now - began
        guard idle else {
            let states =
                (try? await pool.query(
                    "SELECT string_agg(kind || '/' || state || ':' || n, ' ') FROM (SELECT kind, state, count(*) n FROM nexjobs.jobs GROUP BY 1, 2) s"
                ).first?.text(0)) ?? "?"
            // What holds the stuck jobs: their lease, their worker's row, and who maintains.
            let stuck =
                (try? await pool.query(
                    """
                    SELECT string_agg(format('%s %s attempt %s by %s until %s (worker lease %s, heartbeat %s)', j.id, j.kind,
                                             j.attempt, j.locked_by, j.locked_until, w.lease_until, w.heartbeat_at), '; ')
                      FROM (SELECT * FROM nexjobs.jobs WHERE state = 'running' ORDER BY id LIMIT 10) j
                      LEFT JOIN nexjobs.workers w ON w.id = j.locked_by
                    """
                ).first?.text(0)) ?? "?"
            let leaders =
                (try? await pool.query(
                    "SELECT string_agg(name || '=' || holder || ' until ' || term_until, '; ') FROM nexjobs.leader"
                ).first?.text(0)) ?? "?"
            let schedules =
                (try? await pool.query(
                    """
                    SELECT string_agg(format('%s next %s failures %s retry %s error %s', name, next_fire_at, failures,
                                             retry_at, last_error), '; ')
                      FROM nexjobs.schedules WHERE kind LIKE 'nexjobs.%'
                    """
                ).first?.text(0)) ?? "?"
            throw TestEnvironmentError(
                description: """
                    jobs still pending or running after \(timeout): \(states); now \(Date()); running: \(stuck); \
                    leaders: \(leaders); maintenance schedules: \(schedules)
                    """)
        }
    }

    struct TruthSnapshot {
        /// key platform|account|level|entity|date -> currency|spend|impressions|clicks|conversions|value.
        var rows: [String: String]
        var accountToday: [String: String]
        var accounts: Int
    }

    var todayAtStart: [String: String] = [:]

    /// The sandbox's truth, read between two identical clock readings (no account's day changed meanwhile).
    func truthSnapshot() async throws -> TruthSnapshot {
        for _ in 0..<3 {
            let before = try await accountToday()
            let doc = try json(try await http("GET", "/_sandbox/truth"))
            let after = try await accountToday()
            guard before == after else { continue }
            var rows: [String: String] = [:]
            func text(_ row: [String: Any], _ key: String) -> String {
                if let s = row[key] as? String { return s }
                if let n = row[key] as? NSNumber { return n.stringValue }
                return "?"
            }
            for row in doc["rows"] as? [[String: Any]] ?? [] {
                let account = text(row, "account_id")
                guard let today = after[account], !revokedAccounts.contains(account) else { continue }
                // The retained days of a pro organization: the 90 days ending at the account's local today.
                guard text(row, "date") >= Self.day(today, adding: -89) else { continue }
                let level = text(row, "level") == "adgroup" ? "ad_group" : text(row, "level")
                let key = [text(row, "platform"), account, level, text(row, "entity_id"), text(row, "date")]
                    .joined(separator: "|")
                rows[key] = [
                    text(row, "currency"), norm(text(row, "spend")), text(row, "impressions"), text(row, "clicks"),
                    norm(text(row, "conversions")), norm(text(row, "conversion_value")),
                ].joined(separator: "|")
            }
            let accounts = (doc["totals"] as? [Any])?.count ?? 0
            return TruthSnapshot(rows: rows, accountToday: after, accounts: accounts)
        }
        throw TestEnvironmentError(description: "the sandbox's days kept changing while its truth was read")
    }

    func accountToday() async throws -> [String: String] {
        let doc = try json(try await http("GET", "/_sandbox/clock"))
        return doc["account_today"] as? [String: String] ?? [:]
    }

    static func day(_ text: String, adding days: Int) -> String {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let f = DateFormatter()
        f.calendar = utc
        f.timeZone = utc.timeZone
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd"
        guard let d = f.date(from: text), let shifted = utc.date(byAdding: .day, value: days, to: d) else {
            return text
        }
        return f.string(from: shifted)
    }

    /// SIGTERM to every process still running (workers and schedulers must exit 0), then the sandbox.
    func stopAll() async {
        let running = workers + Array(schedulers.values)
        for p in running where p.process.isRunning { p.signal(SIGTERM) }
        for p in running {
            let status = await p.wait(timeout: .seconds(40))
            if status == nil { p.signal(SIGKILL) }
            XCTAssertEqual(status, 0, "\(p.process.arguments?.first ?? "") exits 0 on SIGTERM:\n\(p.text.suffix(3000))")
        }
        workers = []
        schedulers = [:]
        if let sb = sandbox, sb.process.isRunning {
            sb.signal(SIGTERM)
            _ = await sb.wait(timeout: .seconds(10))
        }
        sandbox = nil
    }

    // MARK: Checks

    func check(_ truth: TruthSnapshot, chaosTime: Duration) async throws {
        // No job left behind, on a stopped system.
        let live = try await int(
            "SELECT count(*)::int FROM nexjobs.jobs WHERE state NOT IN ('completed', 'failed')")
        XCTAssertEqual(live, 0, "every job is completed or failed")

        // Every failed job failed for a deliberate reason.
        var deliberateNoops = 0
        var revokedFailures = 0
        let failed = try await pool.query(
            """
            SELECT id, kind, args::text, max_attempts, jsonb_array_length(errors),
                   coalesce(errors -> -1 ->> 'error', ''), coalesce(args ->> 'fail_times', '0')::int,
                   coalesce(args ->> 'connection_id', '')
              FROM nexjobs.jobs WHERE state = 'failed' ORDER BY id
            """)
        for r in failed {
            let id: Int64 = try r.decode(0)
            let kind: String = try r.decode(1)
            let maxAttempts: Int = try r.decode(3)
            let errorCount: Int = try r.decode(4)
            let reason: String = try r.decode(5)
            let failTimes: Int = try r.decode(6)
            let connection: String = try r.decode(7)
            XCTAssertGreaterThan(errorCount, 0, "failed job \(id) (\(kind)) has an error history")
            XCTAssertFalse(reason.isEmpty, "failed job \(id) (\(kind)) names its reason")
            if kind == "noop" && failTimes >= maxAttempts {
                // Its last attempt failed as asked, or was lost with a killed worker (rescued, no attempts left).
                XCTAssertTrue(
                    reason.hasPrefix("noop: failing attempt") || reason.hasPrefix("rescued:"),
                    "job \(id): unexpected reason \(reason)")
                deliberateNoops += 1
            } else if kind == "sync_connection" && connection == String(revokedConnection) {
                XCTAssertTrue(reason.contains("re-authorization required"), "job \(id): unexpected reason \(reason)")
                revokedFailures += 1
            } else {
                XCTFail("job \(id) (\(kind), args \(try r.decode(2) as String)) failed: \(reason)")
            }
        }
        let deliberate = try await int(
            "SELECT count(*)::int FROM nexjobs.jobs WHERE kind = 'noop' AND args ? 'fail_times'")
        XCTAssertEqual(deliberateNoops, deliberate, "every noop asked to fail did fail")
        XCTAssertGreaterThan(deliberate, 0)
        // Its one sync_connection job failed with that reason; or, if a kill landed between marking the connection
        // and recording the failure, was rescued and completed as "connection not active" (the mark is the outcome).
        let revokedJobs = try await pool.query(
            """
            SELECT state, errors::text FROM nexjobs.jobs
             WHERE kind = 'sync_connection' AND args ->> 'connection_id' = \(String(revokedConnection))
            """)
        XCTAssertEqual(revokedJobs.count, 1, "one sync of the revoked connection")
        for r in revokedJobs where try r.decode(0) as String == "completed" {
            XCTAssertTrue((try r.decode(1) as String).contains("rescued:"), "the revoked connection's sync completed")
        }
        XCTAssertLessThanOrEqual(revokedFailures, 1)
        let notes = try await int(
            "SELECT count(*)::int FROM nexcomet.notifications WHERE connection_id = \(revokedConnection)")
        XCTAssertEqual(notes, 1, "one re-authorization notification")
        let status: String = try await pool.query(
            "SELECT status FROM nexcomet.ad_connections WHERE id = \(revokedConnection)"
        ).first!.decode(0)
        XCTAssertEqual(status, "needs_reauth")
        let othersInactive = try await int(
            "SELECT count(*)::int FROM nexcomet.ad_connections WHERE id <> \(revokedConnection) AND status <> 'active'")
        XCTAssertEqual(othersInactive, 0, "faults and kills pushed no healthy connection out of active")

        // noop jobs that record in their completion transaction: exactly one row per completed job, none otherwise.
        let noopMismatch = try await int(
            """
            SELECT count(*)::int FROM nexjobs.jobs j
             WHERE j.kind = 'noop' AND j.args ? 'record_tx'
               AND (SELECT count(*) FROM nexjobs.noop_log l WHERE l.job_id = j.id)
                   <> CASE WHEN j.state = 'completed' THEN 1 ELSE 0 END
            """)
        XCTAssertEqual(noopMismatch, 0, "a recorded noop job ran to completion zero or two times")
        let fires = try await pool.query(
            """
            SELECT f.fire_at, j.state FROM nexjobs.schedule_fires f LEFT JOIN nexjobs.jobs j ON j.id = f.job_id
             WHERE f.name = \(ChaosSoakTests.scheduleName) ORDER BY f.fire_at
            """)
        let fireTimes: [Date] = try fires.map { try $0.decode(0) }
        XCTAssertGreaterThanOrEqual(fireTimes.count, settings.seconds / 2 - 10, "the schedule fired all along")
        for (a, b) in zip(fireTimes, fireTimes.dropFirst()) where b.timeIntervalSince(a) != 2 {
            XCTFail("schedule fires \(PGTimestamp.format(a)) -> \(PGTimestamp.format(b)): one skipped or doubled")
        }
        let fireStates = try fires.map { try $0.decode(1, as: String?.self) ?? "missing" }
        XCTAssertEqual(Set(fireStates), ["completed"], "every fire has its job, completed")

        // Every account of a healthy connection synced, and its metrics equal the truth.
        let syncedAccounts = try await int(
            """
            SELECT count(DISTINCT a.external_id)::int FROM nexcomet.sync_runs r
              JOIN nexcomet.ad_accounts a ON a.id = r.ad_account_id WHERE r.outcome = 'succeeded'
            """)
        XCTAssertEqual(syncedAccounts, truth.accounts - revokedAccounts.count, "every healthy account synced")
        let stored = try await storedMetrics()
        XCTAssertGreaterThan(truth.rows.count, 500)
        let missing = truth.rows.keys.filter { stored[$0] == nil }
        let extra = stored.keys.filter { truth.rows[$0] == nil }
        let different = truth.rows.keys.filter { stored[$0] != nil && stored[$0] != truth.rows[$0] }
        XCTAssertTrue(
            missing.isEmpty && extra.isEmpty && different.isEmpty,
            """
            metrics differ from the truth: \(truth.rows.count) truth rows, \(stored.count) stored; \(missing.count) \
            missing \(missing.sorted().prefix(3)), \(extra.count) extra \(extra.sorted().prefix(3)), \(different.count) \
            different \(different.sorted().prefix(3).map { "\($0): \(stored[$0]!) vs \(truth.rows[$0]!)" })
            """)

        // No metric row written twice. An account whose local day changed during the run is left out: the new day
        // legitimately restates its recent conversions (rewriting those rows); it was still compared above.
        let crossed = todayAtStart.filter { truth.accountToday[$0.key] != $0.value }.map(\.key)
        if !crossed.isEmpty { print("soak: local day changed for \(crossed.sorted()); write-once check skips them") }
        let orphanRows = try await int(
            """
            SELECT count(*)::int FROM nexcomet.daily_metrics m JOIN nexcomet.ad_accounts a ON a.id = m.ad_account_id
             WHERE a.external_id <> ALL(\(crossed)::text[])
               AND NOT EXISTS (SELECT 1 FROM nexcomet.sync_writes w WHERE w.ad_account_id = m.ad_account_id
                                 AND w.xmin = m.xmin)
            """)
        // Syncs commit per window (issue 14): each window commit records itself in sync_writes in its transaction.
        XCTAssertEqual(orphanRows, 0, "metric rows whose version no committed sync window recorded")
        let rewritten = try await pool.query(
            """
            SELECT w.id, w.rows_upserted,
                   (SELECT count(*) FROM nexcomet.daily_metrics m
                     WHERE m.ad_account_id = w.ad_account_id AND m.xmin = w.xmin)::int AS surviving
              FROM nexcomet.sync_writes w JOIN nexcomet.ad_accounts a ON a.id = w.ad_account_id
             WHERE a.external_id <> ALL(\(crossed)::text[])
            """)
        var writes = 0
        var runsWithWrites = 0
        for r in rewritten {
            let written: Int = try r.decode(1)
            let surviving: Int = try r.decode(2)
            let run: Int64 = try r.decode(0)
            writes += written
            if written > 0 { runsWithWrites += 1 }
            XCTAssertEqual(
                written, surviving, "sync window commit \(run) wrote \(written) rows, \(surviving) still its own")
        }
        let rowCount = try await int(
            """
            SELECT count(*)::int FROM nexcomet.daily_metrics m JOIN nexcomet.ad_accounts a ON a.id = m.ad_account_id
             WHERE a.external_id <> ALL(\(crossed)::text[])
            """)
        XCTAssertEqual(writes, rowCount, "rows written by all sync window commits = metric rows (each written once)")
        let doubleRuns = try await int(
            """
            SELECT count(*)::int FROM (SELECT job_id FROM nexcomet.sync_runs WHERE outcome = 'succeeded'
                                        GROUP BY job_id HAVING count(*) > 1) d
            """)
        XCTAssertEqual(doubleRuns, 0, "a sync job recorded two succeeded runs")

        // Tokens never reach the logs (the killed processes' output included).
        let logs = everything.map(\.text).joined(separator: "\n")
        for secret in secrets where logs.contains(secret) { XCTFail("a token or client secret appears in the logs") }

        // The summary (bench/soak/README.md records these figures).
        let jobs = try await pool.query(
            """
            SELECT count(*)::int, count(*) FILTER (WHERE state = 'completed')::int,
                   count(*) FILTER (WHERE state = 'failed')::int,
                   count(*) FILTER (WHERE kind LIKE 'sync%')::int, coalesce(sum(attempt), 0)::int,
                   count(*) FILTER (WHERE errors::text LIKE '%rescued:%')::int
              FROM nexjobs.jobs
            """
        ).first!
        let syncRuns = try await pool.query(
            "SELECT outcome, count(*)::int FROM nexcomet.sync_runs GROUP BY 1 ORDER BY 1"
        ).map { "\(try $0.decode(0) as String) \(try $0.decode(1) as Int)" }.joined(separator: ", ")
        func seconds(_ d: Duration) -> String {
            String(format: "%.1f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
        }
        print(
            """
            soak result: seed \(settings.seed), chaos \(seconds(chaosTime)), drain \(seconds(tally.drain)); \
            jobs \(try jobs.decode(0) as Int) (completed \(try jobs.decode(1) as Int), failed \(try jobs.decode(2) as Int), \
            sync jobs \(try jobs.decode(3) as Int), attempts \(try jobs.decode(4) as Int), \
            rescued \(try jobs.decode(5) as Int)); worker kills \(tally.workerKills), scheduler kills \
            \(tally.schedulerKills) (takeover \(seconds(tally.takeover))), PostgreSQL restarts \(tally.postgresRestarts) \
            (\(seconds(tally.restartOutage))); sync runs: \(syncRuns); metric rows \(stored.count) vs truth \
            \(truth.rows.count), written \(writes) times by \(runsWithWrites) window commits; schedule fires \(fireTimes.count)
            """)
    }

    /// The database's metrics, keyed like the truth, over each account's retained days.
    func storedMetrics() async throws -> [String: String] {
        let rows = try await pool.query(
            """
            SELECT m.platform, a.external_id, m.level, m.entity_id, m.date::text, m.currency, m.spend::text,
                   m.impressions::text, m.clicks::text, m.conversions::text, m.conversion_value::text
              FROM nexcomet.daily_metrics m JOIN nexcomet.ad_accounts a ON a.id = m.ad_account_id
            """)
        var stored: [String: String] = [:]
        for r in rows {
            // Every stored row counts: one outside the truth's retained days shows up as extra.
            let key = try (0..<5).map { try r.decode($0) as String }.joined(separator: "|")
            stored[key] = [
                try r.decode(5) as String, norm(try r.decode(6)), try r.decode(7), try r.decode(8),
                norm(try r.decode(9)), norm(try r.decode(10)),
            ].joined(separator: "|")
        }
        return stored
    }

    // MARK: HTTP and JSON

    func http(_ method: String, _ path: String, _ body: String? = nil, contentType: String = "application/json")
        async throws -> String
    {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw TestEnvironmentError(description: "\(method) \(path): HTTP \(status)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    func json(_ text: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw TestEnvironmentError(description: "not a JSON object: \(text.prefix(200))")
        }
        return object
    }
}

/// A decimal's canonical text (12.50 and 12.5 compare equal).
private func norm(_ text: String) -> String {
    guard let d = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")) else { return text }
    return NSDecimalNumber(decimal: d).description(withLocale: Locale(identifier: "en_US_POSIX"))
}
