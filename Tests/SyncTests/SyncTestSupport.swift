import Foundation
import HTTP
import Logs
import PGTestSupport
import Platforms
import Postgres
import Privacy
import Queue
import Sandbox
import Synchronization
import XCTest

@testable import Sync

/// Log lines captured from handlers, to prove no token text reaches the logs.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])
    var logger: Logger {
        Logger(
            label: "sync-test", minimum: .debug, sink: Logger.Sink { [self] line in lines.withLock { $0.append(line) } }
        )
    }
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}

/// Days the test clock is ahead of the start instant.
final class DayOffset: Sendable {
    let value = Atomic<Int>(0)
}

/// A sandbox, a database and a sync environment wired to each other, with a movable clock.
struct SyncHarness {
    let db: TestDatabase
    let sandbox: Sandbox
    let ring: KeyRing
    let store: ConnectionStore
    let logs = LogCapture()
    let dayOffset = DayOffset()
    let start: Date
    let orgID: Int64
    var environment: SyncEnvironment

    /// - Parameters: the sandbox shape; `plan` of the one organization owning every connection.
    static func make(
        _ label: String = #function, tiktok: Int = 2, snap: Int = 2, plan: String = "pro",
        retention: [String: Int] = ["free": 7, "pro": 90, "enterprise": 365], quietAccountPercent: Int = 0
    ) async throws -> SyncHarness {
        let start = Date()
        let sandbox = Sandbox(
            config: SandboxConfig(
                seed: 7, tiktokConnections: tiktok, snapConnections: snap, today: start,
                quietAccountPercent: quietAccountPercent))
        _ = try sandbox.start()
        let db = try await TestDatabase.create(label)
        let ring = try KeyRing(keys: [(id: "k1", key: Array(repeating: 7, count: 32))])
        let org: Int64 = try await db.pool.query(
            "INSERT INTO nexcomet.organizations (name, plan) VALUES ('test org', \(plan)) RETURNING id"
        ).first!.decode(0)
        return SyncHarness(
            db: db, sandbox: sandbox, ring: ring, store: ConnectionStore(vault: TokenVault(keyRing: ring)),
            start: start,
            orgID: org,
            environment: SyncEnvironment(
                keyRing: .success(ring), clients: Self.clients(sandbox),
                settings: SyncSettings(retentionDays: retention))
        )
        .withClock()
    }

    func withClock() -> SyncHarness {
        var h = self
        let start = self.start
        let offset = self.dayOffset
        h.environment.settings.now = {
            start.addingTimeInterval(Double(offset.value.load(ordering: .relaxed)) * 86_400)
        }
        return h
    }

    static func clients(_ sandbox: Sandbox) -> PlatformClientProvider {
        let tiktokURL = URL(string: sandbox.tiktokBaseURL)!
        let snapURL = URL(string: sandbox.snapAPIBaseURL)!
        let oauthURL = URL(string: sandbox.snapOAuthURL)!
        return PlatformClientProvider { platform, _ in
            switch platform {
            case .tiktok:
                return TikTokClient(
                    configuration: TikTokConfiguration(baseURL: tiktokURL, appId: "app-1", secret: "tiktok-app-secret"))
            case .snapchat:
                return SnapchatClient(
                    configuration: SnapchatConfiguration(
                        apiBaseURL: snapURL, tokenURL: oauthURL, clientId: "client-1",
                        clientSecret: "snap-client-secret"))
            }
        }
    }

    func close() async {
        await sandbox.stop()
        await db.drop()
    }

    /// Moves both the sandbox's and the handlers' clocks forward.
    func advanceDays(_ n: Int) {
        sandbox.advanceDays(n)
        dayOffset.value.add(n, ordering: .relaxed)
    }

    /// Exchanges each sandbox connection's auth code and stores the tokens; returns connection ids in sandbox order.
    func connectAll() async throws -> [(info: SandboxConnectionInfo, id: Int64)] {
        var out: [(SandboxConnectionInfo, Int64)] = []
        for info in sandbox.connections() {
            let platform: AdPlatform = info.platform == .tiktok ? .tiktok : .snapchat
            let client = try environment.clients.client(for: platform, pool: db.pool)
            let tokens = try await client.exchangeAuthorizationCode(info.authCode)
            let id = try await db.pool.withConnection { c in
                try await store.create(organizationID: orgID, platform: platform, tokens: tokens, on: c)
            }
            out.append((info, id))
        }
        return out
    }

    // MARK: Running jobs without a worker

    /// Enqueues a job, claims it as a fake worker and runs `handler` on it; completes it if the handler did not.
    /// Throws whatever the handler throws (the job row is then left running, as after a crash).
    @discardableResult
    func run<H: JobHandler>(_ handler: H, args: String) async throws -> Int64 {
        let job = try await JobClient(pool: db.pool).enqueue(NewJob(kind: H.kind, args: args))
        try await runExisting(handler, jobID: job.id)
        return job.id
    }

    func runExisting<H: JobHandler>(_ handler: H, jobID: Int64) async throws {
        try await runAsFakeWorker(handler, jobID: jobID, pool: db.pool, workerID: "sync-test", logger: logs.logger)
    }

    /// Runs every available job of `kind` once, concurrently; returns each job's error (nil on success).
    func drain<H: JobHandler>(_ handler: H) async throws -> [Int64: String?] {
        let ids: [Int64] = try await db.pool.query(
            "SELECT id FROM nexjobs.jobs WHERE kind = \(H.kind) AND state = 'available' ORDER BY id"
        ).map { try $0.decode(0) }
        return try await withThrowingTaskGroup(of: (Int64, String?).self) { group in
            for id in ids {
                group.addTask {
                    do {
                        try await runExisting(handler, jobID: id)
                        return (id, nil)
                    } catch {
                        return (id, "\(type(of: error)): \(error)")
                    }
                }
            }
            var out: [Int64: String?] = [:]
            for try await (id, e) in group { out[id] = e }
            return out
        }
    }

    /// Syncs every connection and then every account it enqueued; fails the test on any job error.
    func syncEverything(_ connections: [Int64], file: StaticString = #filePath, line: UInt = #line) async throws {
        for id in connections {
            try await run(SyncConnectionHandler(environment: environment), args: #"{"connection_id":"\#(id)"}"#)
        }
        let results = try await drain(SyncAdAccountHandler(environment: environment))
        XCTAssertFalse(results.isEmpty, "no sync_ad_account jobs were enqueued", file: file, line: line)
        for (id, error) in results { XCTAssertNil(error ?? nil, "job \(id)", file: file, line: line) }
    }

    /// Enqueues a fresh sync_ad_account for every account (as the next scheduled sync would) and runs them in turn.
    /// - Returns: each failed job's error, by ad account id.
    @discardableResult
    func resyncAccounts() async throws -> [Int64: String] {
        let ids: [Int64] = try await db.pool.query("SELECT id FROM nexcomet.ad_accounts ORDER BY id").map {
            try $0.decode(0)
        }
        var errors: [Int64: String] = [:]
        for id in ids {
            do {
                try await run(SyncAdAccountHandler(environment: environment), args: #"{"ad_account_id":\#(id)}"#)
            } catch {
                errors[id] = "\(type(of: error)): \(error)"
            }
        }
        return errors
    }

    // MARK: Comparing with the ground truth

    /// The metric rows of the database as `platform|account|level|entity|date -> spend|impr|clicks|conv|value`.
    func databaseMetrics(from: [String: String]? = nil) async throws -> [String: String] {
        let rows = try await db.pool.query(
            """
            SELECT m.platform, a.external_id, m.level, m.entity_id, m.date::text, m.currency, m.spend::text,
                   m.impressions, m.clicks, m.conversions::text, m.conversion_value::text
              FROM nexcomet.daily_metrics m JOIN nexcomet.ad_accounts a ON a.id = m.ad_account_id
            """)
        var out: [String: String] = [:]
        for r in rows {
            let account: String = try r.decode(1)
            let date: String = try r.decode(4)
            if let from, let first = from[account], date < first { continue }
            let key = [try r.decode(0), account, try r.decode(2), try r.decode(3), date].joined(separator: "|")
            out[key] = [
                try r.decode(5) as String, norm(try r.decode(6)), try r.decode(7) as String, try r.decode(8) as String,
                norm(try r.decode(9)), norm(try r.decode(10)),
            ].joined(separator: "|")
        }
        return out
    }

    /// The sandbox's truth from each account's first retained day (`firstDay[account]`) to its today.
    func truth(firstDay: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        for t in sandbox.groundTruth() {
            guard let first = firstDay[t.accountID], t.date >= first else { continue }
            let level = t.level == .adgroup ? "ad_group" : t.level.rawValue
            let key = [t.platform.rawValue, t.accountID, level, t.entityID, t.date].joined(separator: "|")
            out[key] = [
                t.currency, norm("\(t.spend)"), "\(t.impressions)", "\(t.clicks)", "\(t.conversions)",
                norm("\(t.conversionValue)"),
            ].joined(separator: "|")
        }
        return out
    }

    /// First day each account's retention covers at the handlers' current clock.
    func retainedFirstDays(days: Int) async throws -> [String: String] {
        let rows = try await db.pool.query("SELECT external_id, timezone FROM nexcomet.ad_accounts")
        var out: [String: String] = [:]
        for r in rows {
            let tz = TimeZone(identifier: try r.decode(1))!
            out[try r.decode(0)] = LocalDate(environment.settings.now(), in: tz).adding(days: -(days - 1)).description
        }
        return out
    }

    /// Every tuple version of daily_metrics (ctid and xmin change on any update).
    func metricTupleVersions() async throws -> Set<String> {
        Set(
            try await db.pool.query("SELECT ctid::text || '/' || xmin::text FROM nexcomet.daily_metrics").map {
                try $0.decode(0)
            })
    }
}

/// Asserts two metric maps are equal, reporting counts and a few examples instead of whole maps.
func assertSameMetrics(
    _ stored: [String: String], _ truth: [String: String], _ message: String, file: StaticString = #filePath,
    line: UInt = #line
) {
    let missing = truth.keys.filter { stored[$0] == nil }.sorted()
    let extra = stored.keys.filter { truth[$0] == nil }.sorted()
    let different = truth.keys.filter { stored[$0] != nil && stored[$0] != truth[$0] }.sorted()
    if missing.isEmpty && extra.isEmpty && different.isEmpty { return }
    let examples = different.prefix(3).map { "\($0): stored \(stored[$0]!) truth \(truth[$0]!)" }
    XCTFail(
        """
        \(message): \(truth.count) truth rows, \(stored.count) stored; \(missing.count) missing \(missing.prefix(3)), \
        \(extra.count) extra \(extra.prefix(3)), \(different.count) different \(examples)
        """, file: file, line: line)
}

/// A decimal text in canonical form (no trailing zeros), so `1.50` equals `1.5`.
func norm(_ text: String) -> String {
    guard let d = Decimal(string: text, locale: Locale(identifier: "en_US_POSIX")) else { return text }
    return NSDecimalNumber(decimal: d).description(withLocale: Locale(identifier: "en_US_POSIX"))
}

extension XCTestCase {
    /// A TikTok client whose refresh endpoint runs `answer` (given the refresh token it was sent) on a fixture server.
    func tikTokRefreshFixture(_ answer: @escaping @Sendable (String) async -> HTTPResponse) throws -> TikTokClient {
        let router = Router()
        router.add("POST", "/open_api/v1.3/oauth2/refresh_token/") { req in
            let sent = (try? JSONValue.parse(req.bodyText))?["refresh_token"]?.stringValue ?? ""
            return await answer(sent)
        }
        let server = HTTPServer(handler: router.handle)
        let port = try server.start()
        addTeardownBlock { await server.stop(grace: .seconds(1)) }
        return TikTokClient(
            configuration: TikTokConfiguration(
                baseURL: URL(string: "http://127.0.0.1:\(port)/open_api/v1.3/")!, appId: "app", secret: "app-secret"))
    }
}
