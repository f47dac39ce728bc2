import Foundation
import HTTP
import Sandbox
import XCTest

@testable import Platforms

/// A transport that records every request it sends (method and path) before delegating to URLSession.
final class RecordingTransport: PlatformTransport {
    private let inner = URLSessionTransport()
    private let log = LockedBox<[(method: String, path: String)]>([])

    var requests: [(method: String, path: String)] { log.current }

    func get(_ url: URL, headers: [String: String], timeout: Duration) async throws -> TransportResponse {
        log.withLock { $0.append(("GET", QueryString.path(of: url))) }
        return try await inner.get(url, headers: headers, timeout: timeout)
    }

    func postToken(_ request: OAuthTokenRequest, timeout: Duration) async throws -> TransportResponse {
        log.withLock { $0.append(("POST", QueryString.path(of: request.url))) }
        return try await inner.postToken(request, timeout: timeout)
    }
}

/// Starts a sandbox and builds clients pointed at it.
struct SandboxHarness {
    let sandbox: Sandbox
    let transport = RecordingTransport()

    init(_ config: SandboxConfig = SandboxConfig()) throws {
        sandbox = Sandbox(config: config)
        try sandbox.start(port: 0)
    }

    func tiktok(pageSize: Int = 1000, limiter: any RequestRateLimiter = UnlimitedRateLimiter()) -> TikTokClient {
        TikTokClient(
            configuration: TikTokConfiguration(
                baseURL: URL(string: sandbox.tiktokBaseURL)!, appId: "sandbox-app", secret: "sandbox-secret-XYZ",
                pageSize: pageSize, requestTimeout: .seconds(10)),
            transport: transport, rateLimiter: limiter)
    }

    func snap(pageSize: Int = 1000, limiter: any RequestRateLimiter = UnlimitedRateLimiter()) -> SnapchatClient {
        SnapchatClient(
            configuration: SnapchatConfiguration(
                apiBaseURL: URL(string: sandbox.snapAPIBaseURL)!, tokenURL: URL(string: sandbox.snapOAuthURL)!,
                clientId: "sandbox-client", clientSecret: "sandbox-secret-XYZ", redirectURI: "http://localhost/cb",
                pageSize: pageSize, requestTimeout: .seconds(10)),
            transport: transport, rateLimiter: limiter)
    }

    func client(_ platform: AdPlatform, pageSize: Int = 1000) -> any AdPlatformClient {
        platform == .tiktok ? tiktok(pageSize: pageSize) : snap(pageSize: pageSize)
    }

    func connection(_ platform: AdPlatform, _ index: Int = 0) -> SandboxConnectionInfo {
        sandbox.connections().first { $0.platform.rawValue == platform.rawValue && $0.index == index }!
    }

    func session(_ platform: AdPlatform, _ index: Int = 0) -> TokenSession {
        let info = connection(platform, index)
        return TokenSession(tokens: OAuthTokens(accessToken: info.accessToken, refreshToken: info.refreshToken))
    }

    func stop() async { await sandbox.stop() }
}

private func level(_ level: ReportLevel) -> SandboxLevel {
    switch level {
    case .campaign: return .campaign
    case .adGroup: return .adgroup
    case .ad: return .ad
    }
}

final class SandboxClientTests: XCTestCase {
    /// Full hierarchy and every level's daily metrics for every account of one connection per platform, compared
    /// with the sandbox's ground truth: exact Decimal money, ids as strings, account-local dates.
    func testFullSyncMatchesGroundTruth() async throws {
        let harness = try SandboxHarness(SandboxConfig(seed: 7, tiktokConnections: 2, snapConnections: 2, days: 75))
        var sawLargeId = false
        var sawDSTZone = false
        for platform in AdPlatform.allCases {
            let client = harness.client(platform)
            for index in 0..<2 {
                let info = harness.connection(platform, index)
                let tokens = try await client.exchangeAuthorizationCode(info.authCode)
                let session = TokenSession(tokens: tokens)
                let accounts = try await client.adAccounts(session: session)
                XCTAssertEqual(Set(accounts.map(\.id)), Set(info.accountIDs), "\(platform) connection \(index)")
                for account in accounts {
                    XCTAssertNotNil(TimeZone(identifier: account.timeZone))
                    if ["America/Los_Angeles", "Europe/Paris"].contains(account.timeZone) { sawDSTZone = true }
                    let truth = harness.sandbox.groundTruth(
                        platform: platform == .tiktok ? .tiktok : .snapchat, account: account.id)
                    let dates = truth.compactMap { LocalDate(parsing: $0.date) }
                    guard let first = dates.min(), let last = dates.max() else { continue }
                    for reportLevel in ReportLevel.allCases {
                        let entities = try await client.entities(reportLevel, account: account, session: session)
                        let wanted = truth.filter { $0.level == level(reportLevel) }
                        XCTAssertTrue(Set(wanted.map(\.entityID)).isSubset(of: Set(entities.map(\.id))))
                        let rows = try await client.dailyMetrics(
                            reportLevel, account: account, window: DateWindow(first: first, last: last),
                            session: session)
                        var byKey: [String: DailyMetric] = [:]
                        for row in rows { byKey["\(row.entityId)|\(row.date)"] = row }
                        XCTAssertEqual(byKey.count, rows.count, "duplicate rows")
                        for expected in wanted {
                            guard let row = byKey.removeValue(forKey: "\(expected.entityID)|\(expected.date)") else {
                                XCTFail("missing \(platform) \(reportLevel) \(expected.entityID) \(expected.date)")
                                continue
                            }
                            XCTAssertEqual(row.spend, expected.spend)
                            XCTAssertEqual(row.impressions ?? 0, expected.impressions)
                            XCTAssertEqual(row.clicks ?? 0, expected.clicks)
                            XCTAssertEqual(row.conversions ?? 0, Decimal(expected.conversions))
                            XCTAssertEqual(row.conversionValue ?? 0, expected.conversionValue)
                            XCTAssertEqual(row.currency, expected.currency)
                            if platform == .tiktok, let id = Decimal(string: row.entityId),
                                id > Decimal(9_007_199_254_740_993)
                            {
                                sawLargeId = true
                            }
                        }
                        // Rows the truth omits must be all-zero days.
                        for extra in byKey.values {
                            XCTAssertEqual(extra.spend, 0)
                            XCTAssertEqual(extra.impressions ?? 0, 0)
                        }
                    }
                }
            }
        }
        await harness.stop()
        XCTAssertTrue(sawLargeId, "expected TikTok ids above 2^53 in the sandbox world")
        XCTAssertTrue(sawDSTZone, "expected an account in a DST time zone")
        let methods = Set(harness.transport.requests.map(\.method))
        XCTAssertTrue(methods.isSubset(of: ["GET", "POST"]))
        XCTAssertTrue(
            harness.transport.requests.filter { $0.method == "POST" }.allSatisfy {
                $0.path.hasSuffix("/oauth2/access_token/") || $0.path == "/login/oauth2/access_token"
            })
    }

    /// Pagination at 0, 1, page size and page size + 1 campaigns, over the sandbox.
    func testPaginationBoundariesAgainstTheSandbox() async throws {
        // TikTok page size 2 (any size up to 1000 is allowed); Snap's smallest entity page is 50.
        for (platform, pageSize) in [(AdPlatform.tiktok, 2), (.snapchat, 50)] {
            for count in [0, 1, pageSize, pageSize + 1] {
                let harness = try SandboxHarness(
                    SandboxConfig(
                        seed: 3, tiktokConnections: 1, snapConnections: 1, accountsPerConnection: 1...1,
                        campaignsPerAccount: count...count, adGroupsPerCampaign: 1...1, adsPerAdGroup: 1...1, days: 5))
                let client = harness.client(platform, pageSize: pageSize)
                let session = harness.session(platform)
                let account = try await client.adAccounts(session: session)[0]
                let before = harness.transport.requests.count
                let campaigns = try await client.campaigns(account: account, session: session)
                let pages = harness.transport.requests.count - before
                await harness.stop()
                XCTAssertEqual(campaigns.count, count, "\(platform) \(count)")
                XCTAssertEqual(Set(campaigns.map(\.id)).count, count)
                XCTAssertEqual(pages, count <= pageSize ? 1 : 2, "\(platform) pages for \(count)")
            }
        }
    }

    func testInjectedFaultsMapToErrorClasses() async throws {
        let harness = try SandboxHarness(SandboxConfig(seed: 11, tiktokConnections: 1, snapConnections: 1, days: 10))
        let cases: [(FaultKind, PlatformError.Kind?)] = [
            (.rateLimit, nil), (.serverError, .transient), (.malformedJSON, .transient),
            (.truncatedBody, .transient), (.truncatedJSON, .transient), (.htmlBody, .transient),
            (.wrongShape, .malformedResponse), (.revokedToken, .reauthorizationRequired),
        ]
        for platform in AdPlatform.allCases {
            let client = harness.client(platform)
            let session = harness.session(platform)
            let account = try await client.adAccounts(session: session)[0]
            for (fault, expected) in cases {
                harness.sandbox.setFaults(
                    FaultConfig(rules: [FaultRule(kind: fault, account: account.id, count: 5)]))
                let error = await expectPlatformError {
                    _ = try await client.campaigns(account: account, session: session)
                }
                harness.sandbox.setFaults(.none)
                guard let error else { continue }
                if let expected {
                    XCTAssertEqual(error.kind, expected, "\(platform) \(fault)")
                } else if case .rateLimited = error.kind {
                } else {
                    XCTFail("\(platform) \(fault): \(error.kind)")
                }
                let text = "\(error)"
                XCTAssertFalse(text.contains("sandbox-secret-XYZ"))
                XCTAssertFalse(text.contains(harness.connection(platform).accessToken))
                XCTAssertFalse(text.contains(harness.connection(platform).refreshToken))
            }
            // Query too large on every report request: TikTok halves down to a single day, then gives up.
            if platform == .tiktok {
                harness.sandbox.setFaults(FaultConfig(rules: [FaultRule(kind: .queryTooLarge, account: account.id)]))
                let before = harness.transport.requests.count
                let error = await expectPlatformError {
                    _ = try await client.dailyMetrics(
                        .ad, account: account, window: DateWindow(first: date("2024-01-01"), last: date("2024-01-04")),
                        session: session)
                }
                harness.sandbox.setFaults(.none)
                XCTAssertEqual(error?.apiCode, "40067")
                XCTAssertEqual(harness.transport.requests.count - before, 3)  // 4 days, 2 days, 1 day
            }
        }
        await harness.stop()
    }

    /// Account totals (reconciliation, issue 14): one request for a window of up to 365 days, 365-day requests
    /// beyond, equal to the ground truth's ad-level sums; TikTok halves a totals window answered with 40067.
    func testAccountTotalsAreOneRequestPer365DaysAndMatchTheGroundTruth() async throws {
        let harness = try SandboxHarness(SandboxConfig(seed: 11, tiktokConnections: 1, snapConnections: 1, days: 60))
        for platform in AdPlatform.allCases {
            let client = harness.client(platform)
            let session = harness.session(platform)
            let account = try await client.adAccounts(session: session)[0]
            let sandboxPlatform: SandboxPlatform = platform == .tiktok ? .tiktok : .snapchat
            let truth = harness.sandbox.groundTruth(platform: sandboxPlatform, account: account.id)
                .filter { $0.level == .ad }
            let last = try XCTUnwrap(truth.compactMap { LocalDate(parsing: $0.date) }.max())
            func expected(_ window: DateWindow) -> AccountTotals {
                truth.filter {
                    $0.date >= window.first.description && $0.date <= window.last.description
                }.reduce(into: AccountTotals()) {
                    $0 += AccountTotals(
                        spend: $1.spend, impressions: $1.impressions, conversions: Decimal($1.conversions),
                        clicks: $1.clicks, conversionValue: $1.conversionValue)
                }
            }
            for (days, requests) in [(90, 1), (365, 1), (400, 2)] {
                let window = DateWindow(first: last.adding(days: 1 - days), last: last)
                harness.sandbox.resetRequestCounts()
                let totals = try await client.accountTotals(account: account, window: window, session: session)
                XCTAssertEqual(totals, expected(window), "\(platform) \(days) days")
                XCTAssertGreaterThan(totals.spend, 0)
                XCTAssertGreaterThan(totals.clicks, 0, "clicks / swipes are asked too (the quiet-account check)")
                XCTAssertGreaterThan(totals.conversionValue, 0)
                let log = harness.sandbox.reportRequests()
                XCTAssertEqual(log.count, requests, "\(platform) \(days) days: \(log)")
                XCTAssertTrue(log.allSatisfy { $0.granularity == "TOTAL" }, "\(log)")
                XCTAssertEqual(log.first?.first, window.first.description)
                XCTAssertEqual(log.last?.last, window.last.description)
                if requests == 2 {
                    XCTAssertEqual(log[0].last, window.first.adding(days: 364).description, "a 365-day first request")
                }
            }
            if platform == .tiktok {
                harness.sandbox.setFaults(
                    FaultConfig(rules: [FaultRule(kind: .queryTooLarge, account: account.id, count: 1)]))
                let window = DateWindow(first: last.adding(days: -59), last: last)
                let before = harness.transport.requests.count
                let totals = try await client.accountTotals(account: account, window: window, session: session)
                harness.sandbox.setFaults(.none)
                XCTAssertEqual(totals, expected(window))
                XCTAssertEqual(harness.transport.requests.count - before, 3, "40067, then the two halves")
            }
        }
        await harness.stop()
    }

    func testExpiredSnapTokenIsRefreshedOnceAndTheCallSucceeds() async throws {
        let harness = try SandboxHarness(SandboxConfig(seed: 5, tiktokConnections: 1, snapConnections: 1, days: 5))
        let client = harness.snap()
        let session = harness.session(.snapchat)
        let account = try await client.adAccounts(session: session)[0]
        harness.sandbox.expireSnapTokens()
        let before = harness.transport.requests.count
        let campaigns = try await client.campaigns(account: account, session: session)
        let sent = harness.transport.requests[before...].map { "\($0.method) \($0.path)" }
        await harness.stop()
        XCTAssertFalse(campaigns.isEmpty)
        XCTAssertEqual(
            sent,
            [
                "GET /v1/adaccounts/\(account.id)/campaigns", "POST /login/oauth2/access_token",
                "GET /v1/adaccounts/\(account.id)/campaigns",
            ])
        let refreshes = await session.refreshCount
        XCTAssertEqual(refreshes, 1)
        let tokens = await session.tokens
        XCTAssertNotEqual(tokens.accessToken, harness.connection(.snapchat).accessToken)
        XCTAssertNotNil(tokens.accessTokenExpiresAt)
    }

    func testSnapTokenPastExpiresInIsRefreshedBeforeUse() async throws {
        let harness = try SandboxHarness(
            SandboxConfig(seed: 5, tiktokConnections: 1, snapConnections: 1, days: 5, snapAccessTokenTTL: .seconds(1)))
        let client = harness.snap()
        let tokens = try await client.exchangeAuthorizationCode(harness.connection(.snapchat).authCode)
        let expiry = try XCTUnwrap(tokens.accessTokenExpiresAt)
        XCTAssertLessThan(expiry.timeIntervalSinceNow, 2)
        let session = TokenSession(tokens: tokens)
        // expires_in (1 s) is inside the 60 s refresh margin: the client refreshes before the first call.
        let before = harness.transport.requests.count
        _ = try await client.adAccounts(session: session)
        await harness.stop()
        XCTAssertEqual(harness.transport.requests[before].method, "POST")
        let refreshes = await session.refreshCount
        XCTAssertEqual(refreshes, 1)
    }

    func testRevokedConnectionNeedsReauthorizationWithoutRetryStorm() async throws {
        let harness = try SandboxHarness(SandboxConfig(seed: 9, tiktokConnections: 1, snapConnections: 1, days: 5))
        for platform in AdPlatform.allCases {
            let client = harness.client(platform)
            let session = harness.session(platform)
            let account = try await client.adAccounts(session: session)[0]
            harness.sandbox.revokeConnection(platform == .tiktok ? .tiktok : .snapchat, 0)
            let before = harness.transport.requests.count
            let error = await expectPlatformError {
                _ = try await client.dailyMetrics(
                    .campaign, account: account,
                    window: DateWindow(first: date("2024-01-01"), last: date("2024-03-31")),
                    session: session)
            }
            XCTAssertEqual(error?.kind, .reauthorizationRequired, "\(platform)")
            let sent = harness.transport.requests[before...].map(\.method)
            // TikTok: one report request (40105). Snap: the 401, then one refresh attempt that is refused.
            XCTAssertEqual(sent, platform == .tiktok ? ["GET"] : ["GET", "POST"], "\(platform)")
        }
        await harness.stop()
    }

    /// Ten clients for one advertiser sharing an in-process limiter at 10 req/s: the sandbox never counts more
    /// than 10 requests for it in any second. (The cross-process version is in PostgresRateLimiterTests.)
    func testTenConcurrentClientsStayUnderTheRateAtTheSandbox() async throws {
        let harness = try SandboxHarness(
            SandboxConfig(
                seed: 13, tiktokConnections: 1, snapConnections: 1, accountsPerConnection: 1...1,
                campaignsPerAccount: 3...3, days: 5))
        let limiter = InProcessRateLimiter(policy: RateLimitPolicy(requestsPerSecond: [.tiktok: 10]))
        let account = try await harness.tiktok().adAccounts(session: harness.session(.tiktok))[0]
        harness.sandbox.resetRequestCounts()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<10 {
                let client = harness.tiktok(pageSize: 1, limiter: limiter)
                let session = harness.session(.tiktok)
                group.addTask { _ = try await client.campaigns(account: account, session: session) }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let counts = harness.sandbox.requestCounts().filter { $0.accountID == account.id }
        await harness.stop()
        XCTAssertEqual(counts.map(\.count).reduce(0, +), 30)
        XCTAssertLessThanOrEqual(harness.sandbox.maxRequestsPerSecond(account: account.id), 10, "\(counts)")
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(29 * 111))
    }
}

final class SandboxChaosTests: XCTestCase {
    /// Under random (seeded) faults every failure surfaces as a classified `PlatformError` of a retryable or
    /// malformed kind, never as a crash, a hang or an unclassified error, and a retried operation gets through.
    func testRandomFaultsAlwaysSurfaceAsClassifiedErrors() async throws {
        let harness = try SandboxHarness(SandboxConfig(seed: 17, tiktokConnections: 1, snapConnections: 1, days: 40))
        var failures: [String: Int] = [:]
        var successes = 0
        for platform in AdPlatform.allCases {
            let client = harness.client(platform)
            let session = harness.session(platform)
            let account = try await client.adAccounts(session: session)[0]
            harness.sandbox.setFaults(
                FaultConfig(
                    probabilities: [
                        .rateLimit: 0.1, .serverError: 0.1, .malformedJSON: 0.05, .truncatedBody: 0.05, .slow: 0.05,
                    ], slowDelay: .milliseconds(20)))
            for round in 0..<15 {
                do {
                    switch round % 3 {
                    case 0: _ = try await client.campaigns(account: account, session: session)
                    case 1: _ = try await client.ads(account: account, session: session)
                    default:
                        _ = try await client.dailyMetrics(
                            .adGroup, account: account,
                            window: DateWindow(first: date("2026-10-01"), last: date("2026-11-20")), session: session)
                    }
                    successes += 1
                } catch let error as PlatformError {
                    switch error.kind {
                    case .rateLimited, .transient, .malformedResponse: failures[error.kindName, default: 0] += 1
                    default: XCTFail("unexpected class under random faults: \(error)")
                    }
                    XCTAssertFalse("\(error)".contains(harness.connection(platform).accessToken))
                }
            }
            harness.sandbox.setFaults(.none)
        }
        await harness.stop()
        XCTAssertGreaterThan(successes, 0)
        XCTAssertGreaterThan(failures.values.reduce(0, +), 0, "the faults should have hit something")
    }
}
