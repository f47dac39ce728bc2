import Foundation

/// Settings of the Snap Marketing API client; every field has the production default except the credentials.
public struct SnapchatConfiguration: Sendable {
    /// API root. Default: `https://adsapi.snapchat.com/v1/`.
    public var apiBaseURL: URL
    /// OAuth token endpoint. Default: `https://accounts.snapchat.com/login/oauth2/access_token`.
    public var tokenURL: URL
    public var clientId: String
    /// Never logged, scrubbed from every error message.
    public var clientSecret: String
    /// The redirect URI registered for the app, sent with the code exchange.
    public var redirectURI: String
    /// Page size for entity lists (Snap allows 50-1000). Default 1000.
    public var pageSize: Int
    /// Breakdown entities per stats page (`limit`, Snap allows 1-200 for stats, ad-apis.md B2; more pages follow
    /// `paging.next_link`). Default 200, the most one request may carry.
    public var statsPageSize: Int
    /// Longest DAY stats window in days (Snap's limit is 31). Default 31.
    public var maxReportDays: Int
    /// Sent explicitly because Snap's default is disputed. Default `28_DAY`.
    public var swipeUpAttributionWindow: String
    /// Default `1_DAY`.
    public var viewAttributionWindow: String
    /// An access token this close to its expiry is refreshed before use. Default 60 s.
    public var refreshMargin: Duration
    /// Per-request timeout. Default 30 s.
    public var requestTimeout: Duration
    /// Tries of one GET whose response is damaged (not JSON, cut short, not the documented shape), 1...10, before
    /// the error is thrown for the job to retry. Default 3.
    public var responseTries: Int
    /// Wait before the second try of a damaged response, doubled before each later try (0...30 s). Default 250 ms.
    public var responseRetryDelay: Duration

    public init(
        apiBaseURL: URL = URL(string: "https://adsapi.snapchat.com/v1/")!,
        tokenURL: URL = URL(string: "https://accounts.snapchat.com/login/oauth2/access_token")!,
        clientId: String, clientSecret: String, redirectURI: String = "", pageSize: Int = 1000,
        maxReportDays: Int = 31, swipeUpAttributionWindow: String = "28_DAY", viewAttributionWindow: String = "1_DAY",
        refreshMargin: Duration = .seconds(60), requestTimeout: Duration = .seconds(30), responseTries: Int = 3,
        responseRetryDelay: Duration = .milliseconds(250), statsPageSize: Int = 200
    ) {
        self.apiBaseURL = apiBaseURL
        self.tokenURL = tokenURL
        self.clientId = clientId
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
        self.pageSize = max(50, min(pageSize, 1000))
        self.statsPageSize = max(1, min(statsPageSize, 200))
        self.maxReportDays = max(1, min(maxReportDays, 31))
        self.swipeUpAttributionWindow = swipeUpAttributionWindow
        self.viewAttributionWindow = viewAttributionWindow
        self.refreshMargin = refreshMargin
        self.requestTimeout = requestTimeout
        self.responseTries = max(1, min(responseTries, 10))
        self.responseRetryDelay = max(.zero, min(responseRetryDelay, .seconds(30)))
    }
}

/// Snap Marketing API v1 client: OAuth (form bodies), organizations, ad accounts, campaigns, ad squads, ads and DAY
/// stats with a per-entity breakdown.
///
/// Reads only (GET), apart from the OAuth token POSTs. Access tokens are refreshed ahead of `expires_in` and once on
/// a 401; a second 401 is `.reauthorizationRequired`. `paging.next_link` is followed only on the configured host, so
/// the bearer token never leaves for another origin. Stats windows are split to 31 days, aligned to the account's
/// local midnight with the UTC offset in force on each boundary day.
///
/// Its stored dependencies and initializer mirror `TikTokClient`'s by design (one protocol, two APIs); what differs
/// is every request and response format, so nothing further is shared.
public struct SnapchatClient: AdPlatformClient {
    public let platform = AdPlatform.snapchat
    public let configuration: SnapchatConfiguration
    private let transport: any PlatformTransport
    private let rateLimiter: any RequestRateLimiter
    private let logger: PlatformLogger

    static let statsFields = ["impressions", "swipes", "spend", "conversion_purchases", "conversion_purchases_value"]

    public init(
        configuration: SnapchatConfiguration, transport: any PlatformTransport = URLSessionTransport(),
        rateLimiter: any RequestRateLimiter = UnlimitedRateLimiter(), logger: PlatformLogger = .disabled
    ) {
        self.configuration = configuration
        self.transport = transport
        self.rateLimiter = rateLimiter
        self.logger = logger
    }

    // MARK: OAuth

    public func exchangeAuthorizationCode(_ code: String) async throws -> OAuthTokens {
        var form = [
            ("grant_type", "authorization_code"), ("client_id", configuration.clientId),
            ("client_secret", configuration.clientSecret), ("code", code),
        ]
        if !configuration.redirectURI.isEmpty { form.append(("redirect_uri", configuration.redirectURI)) }
        return try await tokenRequest(form, secrets: [code])
    }

    public func refreshTokens(_ refreshToken: String) async throws -> OAuthTokens {
        let form = [
            ("grant_type", "refresh_token"), ("client_id", configuration.clientId),
            ("client_secret", configuration.clientSecret), ("refresh_token", refreshToken),
        ]
        return try await tokenRequest(form, secrets: [refreshToken])
    }

    private func tokenRequest(_ form: [(String, String)], secrets: [String]) async throws -> OAuthTokens {
        do {
            return try await postTokenRequest(form, secrets: secrets)
        } catch var error as PlatformError {
            error.fromTokenRequest = true
            throw error
        }
    }

    private func postTokenRequest(_ form: [(String, String)], secrets: [String]) async throws -> OAuthTokens {
        let endpoint = QueryString.path(of: configuration.tokenURL)
        let scrubber = SecretScrubber(secrets: [configuration.clientSecret] + secrets)
        let request = OAuthTokenRequest(
            url: configuration.tokenURL, contentType: "application/x-www-form-urlencoded",
            body: Array(QueryString.build(form).utf8))
        let response: TransportResponse
        do {
            response = try await transport.postToken(request, timeout: configuration.requestTimeout)
        } catch {
            throw transportFailure(error, endpoint: endpoint)
        }
        let parsed: Result<JSONValue, JSONParseError>
        do { parsed = .success(try JSONValue.parse(response.body)) } catch { parsed = .failure(error) }
        let body = try? parsed.get()
        guard (200..<300).contains(response.status) else {
            let code = body?["error"]?.stringValue
            var kind = ErrorClassifier.oauth(status: response.status, error: code)
            if case .rateLimited = kind {
                kind = .rateLimited(retryAfter: ErrorClassifier.retryAfter(headers: response.headers))
            }
            let detail = body?["error_description"]?.stringValue ?? body?["debug_message"]?.stringValue ?? ""
            throw PlatformError(
                kind, platform: .snapchat, endpoint: endpoint, httpStatus: response.status, apiCode: code,
                message: detail.isEmpty ? "token request rejected" : scrubber.scrub(detail))
        }
        guard let body else {
            if case .failure(let error) = parsed {
                throw PlatformError.unparseableBody(
                    error, response: response, platform: .snapchat, endpoint: endpoint)
            }
            throw PlatformError(
                .malformedResponse, platform: .snapchat, endpoint: endpoint, httpStatus: response.status,
                message: "token response is not JSON")
        }
        guard let access = body["access_token"]?.stringValue, !access.isEmpty else {
            throw PlatformError(
                .malformedResponse, platform: .snapchat, endpoint: endpoint, httpStatus: response.status,
                message: "token response without access_token")
        }
        var expiresAt: Date?
        if case .some(.some(let seconds)) = Values.int64(body["expires_in"]), seconds > 0 {
            expiresAt = Date().addingTimeInterval(TimeInterval(seconds))
        }
        return OAuthTokens(
            accessToken: access, refreshToken: body["refresh_token"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 },
            accessTokenExpiresAt: expiresAt, scope: body["scope"]?.stringValue)
    }

    // MARK: Accounts and entities

    public func adAccounts(session: TokenSession) async throws -> [AdAccount] {
        let organizations = try await list(
            "me/organizations", root: "organizations", item: "organization",
            accountId: nil, session: session)
        var accounts: [AdAccount] = []
        for organization in organizations {
            guard let orgId = organization["id"]?.idText else {
                throw malformed("me/organizations", "organization without id")
            }
            let path = "organizations/\(QueryString.encode(orgId))/adaccounts"
            for item in try await list(path, root: "adaccounts", item: "adaccount", accountId: nil, session: session) {
                guard let id = item["id"]?.idText, let currency = item["currency"]?.stringValue,
                    let zone = item["timezone"]?.stringValue
                else { throw malformed(path, "ad account without id, currency or timezone") }
                guard TimeZone(identifier: zone) != nil else {
                    throw malformed(path, "ad account \(id) has unknown timezone \(zone)")
                }
                accounts.append(
                    AdAccount(
                        platform: .snapchat, id: id, name: item["name"]?.stringValue ?? "", currency: currency,
                        timeZone: zone, status: item["status"]?.stringValue, organizationId: orgId))
            }
        }
        return accounts
    }

    public func entities(_ level: ReportLevel, account: AdAccount, session: TokenSession) async throws -> [AdEntity] {
        let (collection, item): (String, String)
        switch level {
        case .campaign: (collection, item) = ("campaigns", "campaign")
        case .adGroup: (collection, item) = ("adsquads", "adsquad")
        case .ad: (collection, item) = ("ads", "ad")
        }
        let path = "adaccounts/\(QueryString.encode(account.id))/\(collection)"
        // Each record is decoded as part of its page's request, so a page in the wrong shape is fetched again.
        return try await list(path, root: collection, item: item, accountId: account.id, session: session) { record in
            guard let id = record["id"]?.idText else { throw malformed(path, "\(item) without id") }
            let status = record["status"]?.stringValue ?? "UNKNOWN"
            let parent: String?
            switch level {
            case .campaign: parent = nil
            case .adGroup: parent = record["campaign_id"]?.idText
            case .ad: parent = record["ad_squad_id"]?.idText
            }
            return AdEntity(
                platform: .snapchat, accountId: account.id, level: level, id: id,
                name: record["name"]?.stringValue ?? "", parentId: parent,
                campaignId: level == .campaign ? id : record["campaign_id"]?.idText, status: status,
                isDeleted: status.uppercased().contains("DELETE"), updatedAt: record["updated_at"]?.stringValue)
        }.uniqueByID()
    }

    // MARK: Stats

    public func dailyMetrics(
        _ level: ReportLevel, account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> [DailyMetric] {
        guard let zone = TimeZone(identifier: account.timeZone) else {
            throw PlatformError(
                .permanent, platform: .snapchat, endpoint: "stats",
                message: "ad account \(account.id) has unknown timezone \(account.timeZone)")
        }
        let breakdown: String
        switch level {
        case .campaign: breakdown = "campaign"
        case .adGroup: breakdown = "adsquad"
        case .ad: breakdown = "ad"
        }
        // One account-level stats request per window of up to 31 days with `granularity=DAY` and
        // `breakdown=campaign|adsquad|ad` (ad-apis.md B4: DAY windows <= 31 days, breakdown on the ad account's
        // stats), instead of one request per entity; `fields` are exactly the five stored (`statsFields`). Snap
        // zero-fills every entity-day; the writer drops rows without activity.
        let path = "adaccounts/\(QueryString.encode(account.id))/stats"
        var rows: [DailyMetric] = []
        for part in window.split(maxDays: configuration.maxReportDays) {
            let query = Self.statsQuery(
                window: part, zone: zone, breakdown: breakdown, swipeUp: configuration.swipeUpAttributionWindow,
                view: configuration.viewAttributionWindow, limit: configuration.statsPageSize)
            var next = QueryString.url(base: configuration.apiBaseURL, path: path, query: query)
            while let url = next {
                let (page, link) = try await get(url, accountId: account.id, session: session) { body in
                    let endpoint = QueryString.path(of: url)
                    return (
                        try Self.statsRows(
                            body, level: level, breakdown: breakdown, account: account, endpoint: endpoint),
                        try nextLink(body, endpoint: endpoint)
                    )
                }
                rows += page
                next = link
            }
        }
        return rows.uniqueByEntityDay()
    }

    /// Longest window of one account-totals request. ad-apis.md B4 documents range limits for DAY (31 days) and
    /// HOUR (7 days) granularity only; TOTAL has none there, so a sync's whole window is one request. Windows longer
    /// than this (a job fetches at most 3,660 days) are still split, a safety net against an undocumented limit,
    /// matching TikTok's 365-day totals range.
    public static let maxTotalsDays = 365

    /// Account totals from the ad account's `granularity=TOTAL` stats with `breakdown=campaign` (ad-apis.md B4:
    /// account-level stats without a breakdown support `spend` only, so impressions and conversions come as the
    /// platform's campaign totals): one request (plus its pages) per sync for any window of up to
    /// ``maxTotalsDays`` days.
    public func accountTotals(
        account: AdAccount, window: DateWindow, session: TokenSession
    ) async throws -> AccountTotals {
        guard let zone = TimeZone(identifier: account.timeZone) else {
            throw PlatformError(
                .permanent, platform: .snapchat, endpoint: "stats",
                message: "ad account \(account.id) has unknown timezone \(account.timeZone)")
        }
        let path = "adaccounts/\(QueryString.encode(account.id))/stats"
        var totals = AccountTotals()
        for part in window.split(maxDays: Self.maxTotalsDays) {
            let query: [(String, String)] = [
                ("granularity", "TOTAL"), ("breakdown", "campaign"),
                ("fields", "spend,impressions,conversion_purchases,swipes,conversion_purchases_value"),
                ("start_time", part.first.midnightISO8601(in: zone)),
                ("end_time", part.last.adding(days: 1).midnightISO8601(in: zone)),
                ("swipe_up_attribution_window", configuration.swipeUpAttributionWindow),
                ("view_attribution_window", configuration.viewAttributionWindow),
                ("limit", String(configuration.statsPageSize)),
            ]
            var next = QueryString.url(base: configuration.apiBaseURL, path: path, query: query)
            while let url = next {
                let endpoint = QueryString.path(of: url)
                let (page, link) = try await get(url, accountId: account.id, session: session) {
                    body -> (AccountTotals, URL?) in
                    guard let wrappers = body["total_stats"]?.arrayValue else {
                        throw malformed(endpoint, "total_stats missing")
                    }
                    var sum = AccountTotals()
                    for wrapper in wrappers {
                        guard let stat = wrapper["total_stat"] else { throw malformed(endpoint, "total_stat missing") }
                        for entry in stat["breakdown_stats"]?["campaign"]?.arrayValue ?? [] {
                            let stats = entry["stats"] ?? .object([])
                            guard let spend = Values.decimal(stats["spend"]),
                                let impressions = Values.int64(stats["impressions"]),
                                let conversions = Values.decimal(stats["conversion_purchases"]),
                                let swipes = Values.int64(stats["swipes"]),
                                let value = Values.decimal(stats["conversion_purchases_value"])
                            else { throw malformed(endpoint, "campaign totals are not numbers") }
                            sum += AccountTotals(
                                spend: spend.map(Values.fromMicros) ?? 0, impressions: impressions ?? 0,
                                conversions: conversions ?? 0, clicks: swipes ?? 0,
                                conversionValue: value.map(Values.fromMicros) ?? 0)
                        }
                    }
                    return (sum, try nextLink(body, endpoint: endpoint))
                }
                totals += page
                next = link
            }
        }
        return totals
    }

    /// Query of one DAY stats request: `[first 00:00, last+1 00:00)` in the account zone, each with its own offset.
    static func statsQuery(
        window: DateWindow, zone: TimeZone, breakdown: String, swipeUp: String, view: String, limit: Int
    ) -> [(String, String)] {
        [
            ("granularity", "DAY"), ("breakdown", breakdown), ("fields", statsFields.joined(separator: ",")),
            ("start_time", window.first.midnightISO8601(in: zone)),
            ("end_time", window.last.adding(days: 1).midnightISO8601(in: zone)),
            ("swipe_up_attribution_window", swipeUp), ("view_attribution_window", view), ("limit", String(limit)),
        ]
    }

    /// Normalizes a stats response: `timeseries_stats[].timeseries_stat.breakdown_stats.<level>[]` each with a
    /// `timeseries` of days, or (for a stats call on the entity itself) the `timeseries_stat` directly.
    static func statsRows(
        _ body: JSONValue, level: ReportLevel, breakdown: String, account: AdAccount, endpoint: String
    ) throws -> [DailyMetric] {
        func bad(_ why: String) -> PlatformError {
            PlatformError(.malformedResponse, platform: .snapchat, endpoint: endpoint, message: why)
        }
        guard let wrappers = body["timeseries_stats"]?.arrayValue else { throw bad("timeseries_stats missing") }
        // Each entry with the end of the finalized data of its response part (account-local midnight).
        var series: [(entry: JSONValue, finalizedEnd: LocalDate?)] = []
        for wrapper in wrappers {
            if let status = wrapper["sub_request_status"]?.stringValue, status.uppercased() != "SUCCESS" {
                throw PlatformError(
                    .permanent, platform: .snapchat, endpoint: endpoint, message: "stats sub request status \(status)")
            }
            guard let stat = wrapper["timeseries_stat"] else { throw bad("timeseries_stat missing") }
            var finalizedEnd: LocalDate? = nil
            if let value = stat["finalized_data_end_time"], value != .null {
                // ISO 8601 with the account's offset, e.g. 2022-06-30T00:00:00.000-07:00: the date part is local.
                guard let text = value.stringValue, let end = LocalDate(parsing: text) else {
                    throw bad("finalized_data_end_time is not a timestamp")
                }
                finalizedEnd = end
            }
            if let breakdowns = stat["breakdown_stats"] {
                guard let level = breakdowns[breakdown] else {
                    // Snap omits the level's key when nothing ran in the window.
                    continue
                }
                guard let entries = level.arrayValue else { throw bad("breakdown_stats.\(breakdown) is not a list") }
                series += entries.map { ($0, finalizedEnd) }
            } else if stat["type"]?.stringValue?.uppercased() != "AD_ACCOUNT" {
                // A stats call on the entity itself (the reference example) carries its series directly; an
                // account-level series without breakdown has no per-entity rows to give.
                series.append((stat, finalizedEnd))
            }
        }
        var rows: [DailyMetric] = []
        for (entity, finalizedEnd) in series {
            guard let id = entity["id"]?.idText else { throw bad("stats entry without id") }
            guard let days = entity["timeseries"]?.arrayValue else { throw bad("stats entry \(id) without timeseries") }
            for day in days {
                guard let start = day["start_time"]?.stringValue, let date = LocalDate(parsing: start) else {
                    throw bad("timeseries entry without a valid start_time")
                }
                let stats = day["stats"] ?? .object([])
                func decimal(_ key: String) throws -> Decimal? {
                    guard let value = Values.decimal(stats[key]) else { throw bad("stat \(key) is not a number") }
                    return value
                }
                func count(_ key: String) throws -> Int64? {
                    guard let value = Values.int64(stats[key]) else { throw bad("stat \(key) is not an integer") }
                    return value
                }
                rows.append(
                    DailyMetric(
                        platform: .snapchat, accountId: account.id, level: level, entityId: id, date: date,
                        currency: account.currency, spend: try decimal("spend").map(Values.fromMicros) ?? 0,
                        impressions: try count("impressions"), clicks: try count("swipes"),
                        conversions: try decimal("conversion_purchases"),
                        conversionValue: try decimal("conversion_purchases_value").map(Values.fromMicros),
                        isFinal: finalizedEnd.map { date.adding(days: 1) <= $0 }))
            }
        }
        return rows
    }

    // MARK: Requests

    /// All items of a paginated list, unwrapped from `{root: [{item: {...}}]}`.
    private func list(
        _ path: String, root: String, item: String, accountId: String?, session: TokenSession
    ) async throws -> [JSONValue] {
        try await list(path, root: root, item: item, accountId: accountId, session: session) { $0 }
    }

    /// All items of a paginated list, each decoded by `transform` as part of its page's request.
    private func list<T>(
        _ path: String, root: String, item: String, accountId: String?, session: TokenSession,
        transform: (JSONValue) throws -> T
    ) async throws -> [T] {
        var next = QueryString.url(
            base: configuration.apiBaseURL, path: path, query: [("limit", String(configuration.pageSize))])
        var all: [T] = []
        while let url = next {
            let (records, link) = try await get(url, accountId: accountId, session: session) { body in
                guard let wrappers = body[root]?.arrayValue else {
                    throw malformed(QueryString.path(of: url), "\(root) missing")
                }
                let records = try wrappers.map { wrapper in
                    if let status = wrapper["sub_request_status"]?.stringValue, status.uppercased() != "SUCCESS" {
                        throw PlatformError(
                            .permanent, platform: .snapchat, endpoint: QueryString.path(of: url),
                            message: "sub request status \(status)")
                    }
                    guard let record = wrapper[item] else {
                        throw malformed(QueryString.path(of: url), "\(root)[].\(item) missing")
                    }
                    return try transform(record)
                }
                return (records, try nextLink(body, endpoint: QueryString.path(of: url)))
            }
            all += records
            next = link
        }
        return all
    }

    /// The next page URL, accepted only on the configured API origin (the bearer token goes with it).
    private func nextLink(_ body: JSONValue, endpoint: String) throws -> URL? {
        guard let text = body["paging"]?["next_link"]?.stringValue, !text.isEmpty else { return nil }
        guard let url = URL(string: text), url.scheme == configuration.apiBaseURL.scheme,
            url.host == configuration.apiBaseURL.host, url.port == configuration.apiBaseURL.port
        else {
            // Permanent, not retried: the bearer token must not follow it, and the same configuration gets the
            // same link (typically an API base URL that is not the host Snap's links name).
            throw PlatformError(
                .permanent, platform: .snapchat, endpoint: endpoint,
                message: "paging.next_link points outside the configured API host")
        }
        return url
    }

    /// One authorized GET whose body is turned into a value by `decode`; a damaged response (not JSON, cut short, or
    /// failing `decode` with `malformedResponse`) is fetched again per ``SnapchatConfiguration/responseTries``.
    private func get<T>(
        _ url: URL, accountId: String?, session: TokenSession, decode: (JSONValue) throws -> T
    ) async throws -> T {
        let retry = ResponseRetry(tries: configuration.responseTries, delay: configuration.responseRetryDelay)
        return try await retry.run(platform: .snapchat, endpoint: QueryString.path(of: url), logger: logger) {
            try decode(try await fetch(url, accountId: accountId, session: session))
        }
    }

    /// One authorized GET; refreshes ahead of expiry, and once on a 401 before retrying.
    private func fetch(_ url: URL, accountId: String?, session: TokenSession) async throws -> JSONValue {
        var refreshed = false
        var tokens = await session.tokens
        if let expiry = tokens.accessTokenExpiresAt, tokens.refreshToken != nil,
            Self.refreshDue(
                expiry: expiry, lastRefresh: await session.lastRefreshAt, margin: configuration.refreshMargin)
        {
            logger.log(
                .info, "snapchat access token about to expire, refreshing", ["endpoint": QueryString.path(of: url)])
            tokens = try await refresh(session, stale: tokens.accessToken, endpoint: QueryString.path(of: url))
            refreshed = true
        }
        while true {
            // Requests tied to no account (discovery) still take a slot under the app's limit.
            try await rateLimiter.acquire(platform: .snapchat, accountId: accountId)
            let scrubber = SecretScrubber(
                secrets: [configuration.clientSecret, tokens.accessToken] + (tokens.refreshToken.map { [$0] } ?? []))
            let response: TransportResponse
            await session.countRequest()
            do {
                response = try await transport.get(
                    url, headers: ["Authorization": "Bearer \(tokens.accessToken)"],
                    timeout: configuration.requestTimeout)
                await session.countResponse(status: response.status)
            } catch {
                await session.countResponse(status: nil)
                throw transportFailure(error, endpoint: QueryString.path(of: url))
            }
            do {
                return try checked(response, endpoint: QueryString.path(of: url), scrubber: scrubber)
            } catch let error as PlatformError where error.kind == .accessTokenExpired {
                guard !refreshed, tokens.refreshToken != nil else {
                    var reauth = error
                    reauth.kind = .reauthorizationRequired
                    reauth.message += refreshed ? " (again after a refresh)" : " (no refresh token held)"
                    throw reauth
                }
                refreshed = true
                logger.log(.info, "snapchat access token rejected, refreshing", ["endpoint": QueryString.path(of: url)])
                tokens = try await refresh(session, stale: tokens.accessToken, endpoint: QueryString.path(of: url))
            }
        }
    }

    /// Whether to refresh before sending: the token has expired, or expires within `margin` and this session has
    /// not refreshed within the last `margin` (a platform issuing tokens shorter-lived than the margin would
    /// otherwise make every request refresh).
    static func refreshDue(expiry: Date, lastRefresh: Date?, margin: Duration, now: Date = Date()) -> Bool {
        let remaining = expiry.timeIntervalSince(now)
        if remaining <= 0 { return true }
        guard remaining < margin.seconds else { return false }
        guard let lastRefresh else { return true }
        return now.timeIntervalSince(lastRefresh) > margin.seconds
    }

    private func refresh(_ session: TokenSession, stale: String, endpoint: String) async throws -> OAuthTokens {
        do {
            return try await session.refresh(replacing: stale) { try await refreshTokens($0) }
        } catch is RefreshUnavailable {
            throw PlatformError(
                .reauthorizationRequired, platform: .snapchat, endpoint: endpoint,
                message: "access token expired and no refresh token is held")
        }
    }

    /// Checks status and `request_status`, returning the parsed body.
    private func checked(_ response: TransportResponse, endpoint: String, scrubber: SecretScrubber) throws -> JSONValue
    {
        let parsed: JSONValue?
        var parseError: JSONParseError?
        do { parsed = try JSONValue.parse(response.body) } catch {
            parsed = nil
            parseError = error
        }
        if !(200..<300).contains(response.status) {
            var kind = ErrorClassifier.snap(status: response.status)
            if case .rateLimited = kind {
                kind = .rateLimited(retryAfter: ErrorClassifier.retryAfter(headers: response.headers))
            }
            let detail = parsed?["debug_message"]?.stringValue ?? parsed?["display_message"]?.stringValue ?? ""
            throw PlatformError(
                kind, platform: .snapchat, endpoint: endpoint, httpStatus: response.status,
                apiCode: parsed?["error_code"]?.stringValue,
                message: detail.isEmpty ? "HTTP \(response.status)" : scrubber.scrub(detail))
        }
        guard let body = parsed else {
            // Every Snap response, errors included, is a JSON object with request_status (ad-apis.md B2 "Envelope
            // and pagination", B5 "Errors and limits"), so a 2xx body that does not parse (cut short with a
            // matching Content-Length, an intermediary's HTML page) is a delivery fault: transient, and retried on
            // the request. A body shorter than its Content-Length is reported by the transport before this.
            throw PlatformError.unparseableBody(
                parseError ?? JSONParseError(offset: 0, reason: "no document"), response: response,
                platform: .snapchat, endpoint: endpoint)
        }
        guard let status = body["request_status"]?.stringValue else {
            throw malformed(endpoint, "response without request_status")
        }
        guard status.uppercased() == "SUCCESS" else {
            // A well-formed answer whose request_status says the request failed is the platform's verdict on the
            // request (ad-apis.md B5: "request_status":"ERROR" with error_code / debug_message): permanent.
            throw PlatformError(
                .permanent, platform: .snapchat, endpoint: endpoint, httpStatus: response.status,
                apiCode: body["error_code"]?.stringValue,
                message: scrubber.scrub(body["debug_message"]?.stringValue ?? "request_status \(status)"))
        }
        return body
    }

    private func transportFailure(_ error: any Error, endpoint: String) -> any Error {
        PlatformError.transport(error, platform: .snapchat, endpoint: endpoint)
    }

    private func malformed(_ path: String, _ why: String) -> PlatformError {
        PlatformError(.malformedResponse, platform: .snapchat, endpoint: path, message: why)
    }
}
