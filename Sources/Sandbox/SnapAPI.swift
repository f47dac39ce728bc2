import Foundation
import HTTP

/// Snap Marketing API v1 under `/v1/` and Snap OAuth at `/login/oauth2/access_token`.
extension Sandbox {
    func registerSnap(_ router: Router) {
        router.add("POST", "/login/oauth2/access_token") { [self] req in
            await snapGuard(req, account: nil, isOAuth: true) { snapToken(req) }
        }
        router.add("GET", "/v1/me") { [self] req in
            await snapGuard(req, account: nil) { snapMe(req) }
        }
        router.add("GET", "/v1/me/organizations") { [self] req in
            await snapGuard(req, account: nil) { snapOrganizations(req) }
        }
        router.add("GET", "/v1/organizations/:id/adaccounts") { [self] req in
            await snapGuard(req, account: nil) { snapAdAccounts(req) }
        }
        router.add("GET", "/v1/adaccounts/:id") { [self] req in
            await snapGuard(req, account: req.pathParameters["id"]) { snapAdAccount(req) }
        }
        for (collection, level) in [("campaigns", SandboxLevel.campaign), ("adsquads", .adgroup), ("ads", .ad)] {
            router.add("GET", "/v1/adaccounts/:id/\(collection)") { [self] req in
                await snapGuard(req, account: req.pathParameters["id"]) { snapEntities(req, level) }
            }
        }
        for kind in ["adaccounts", "campaigns", "adsquads", "ads"] {
            router.add("GET", "/v1/\(kind)/:id/stats") { [self] req in
                let id = req.pathParameters["id"] ?? ""
                let account = kind == "adaccounts" ? id : world.owner[id]
                return await snapGuard(req, account: account) { snapStats(req, kind: kind) }
            }
        }
    }

    // MARK: Envelopes

    func snapError(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        .json(
            JSONText.object([
                ("request_status", JSONText.string("ERROR")), ("request_id", JSONText.string(nextRequestID())),
                ("debug_message", JSONText.string(message)), ("display_message", JSONText.string(message)),
                ("error_code", JSONText.string(code)),
            ]), status: status)
    }

    private func snapOK(_ fields: [(String, String)]) -> HTTPResponse {
        .json(
            JSONText.object(
                [("request_status", JSONText.string("SUCCESS")), ("request_id", JSONText.string(nextRequestID()))]
                    + fields))
    }

    /// Counts the request, applies any injected fault, else runs `body`. Alike in shape to `tiktokGuard` on purpose:
    /// each fault is rendered in its own platform's format (Snap's `request_status` envelope, TikTok's `code`), so
    /// the two switches stay per platform.
    ///
    /// Before that, an authorized API request over the app QPS limit (`SandboxConfig.snapAppQPS`) is refused like
    /// Snap's own rate limit (ad-apis.md B5: HTTP 429 with `X-Rate-Limit-*` and `Retry-After`).
    private func snapGuard(
        _ req: HTTPRequest, account: String?, isOAuth: Bool = false, _ body: () -> HTTPResponse
    ) async -> HTTPResponse {
        if !isOAuth, snapTokenIsValid(req), let over = admitAppQPS(.snapchat) {
            return snapTooManyRequests(limit: over.limit)
        }
        switch admit(
            .snapchat, account: account, path: req.path, query: req.rawQuery, isOAuth: isOAuth, isReport: false)
        {
        case nil:
            return body()
        case .slow:
            try? await Task.sleep(for: slowDelay())
            return body()
        case .truncatedBody:
            var r = body()
            r.truncatedBodyLength = r.body.count / 2
            return r
        case .malformedJSON:
            return .json("{\"request_status\":\"SUCCESS\",\"campaigns\":[{\"sub_request_status\":")
        case .truncatedJSON:
            return FaultKind.cutInHalf(body())
        case .htmlBody:
            return FaultKind.htmlPage
        case .wrongShape:
            return snapOK([("note", JSONText.string("no entity or stats list"))])
        case .rateLimit:
            return snapTooManyRequests(limit: 20)
        case .serverError:
            return nextServerErrorTurn() % 2 == 0
                ? snapError(500, "E9000", "Internal server error") : snapError(503, "E9001", "Service unavailable")
        case .queryTooLarge:
            return body()
        case .expiredToken, .revokedToken:
            return snapUnauthorized()
        }
    }

    /// Snap's rate-limit answer (ad-apis.md B5): 429 with `X-Rate-Limit-Limit/Remaining/Reset` and `Retry-After: 1`
    /// (a one-second window frees a slot within a second).
    private func snapTooManyRequests(limit: Int) -> HTTPResponse {
        var r = snapError(429, "E1005", "Too many requests")
        let reset = Int(Date().timeIntervalSince1970) + 1
        r.headers["X-Rate-Limit-Limit"] = "\(limit)"
        r.headers["X-Rate-Limit-Remaining"] = "0"
        r.headers["X-Rate-Limit-Reset"] = "\(reset)"
        r.headers["Retry-After"] = "1"
        return r
    }

    /// Whether the request carries a valid Snap access token (no response built, no request id used).
    private func snapTokenIsValid(_ req: HTTPRequest) -> Bool {
        if case .ok = checkToken(snapBearer(req), .snapchat) { return true }
        return false
    }

    /// The token of `Authorization: Bearer <token>`, or nil.
    private func snapBearer(_ req: HTTPRequest) -> String? {
        guard let header = req.headers["Authorization"], header.lowercased().hasPrefix("bearer ") else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    private func snapUnauthorized() -> HTTPResponse {
        var r = snapError(401, "E0001", "Unauthorized: the access token is invalid or has expired")
        r.headers["WWW-Authenticate"] = "Bearer error=\"invalid_token\""
        return r
    }

    /// Resolves `Authorization: Bearer` to a connection index.
    private func snapAuth(_ req: HTTPRequest) -> Answer<Int> {
        if case .ok(let c) = checkToken(snapBearer(req), .snapchat) { return .success(c) }
        return .failure(snapUnauthorized())
    }

    /// The ad account, when it exists and the token's organization owns it.
    private func snapAccount(_ id: String, connection: Int, actions: String) -> Answer<Account> {
        guard let acct = world.accounts[id], acct.platform == .snapchat else {
            return .failure(snapError(404, "E3003", "Resource can not be found"))
        }
        guard acct.connection == connection else {
            return .failure(
                snapError(
                    403, "E3002",
                    "None of the requested actions [\(actions)] can be authorized for this user on ad account \(id)"))
        }
        return .success(acct)
    }

    // MARK: OAuth

    private func snapToken(_ req: HTTPRequest) -> HTTPResponse {
        let form = req.formBody
        func oauthError(_ error: String, _ description: String, status: Int = 400) -> HTTPResponse {
            .json(
                JSONText.object([
                    ("error", JSONText.string(error)), ("error_description", JSONText.string(description)),
                ]), status: status)
        }
        guard form["client_id"]?.isEmpty == false, form["client_secret"]?.isEmpty == false else {
            return oauthError("invalid_client", "client_id and client_secret are required", status: 401)
        }
        let index: Int
        switch form["grant_type"] {
        case "authorization_code":
            guard let code = form["code"],
                let conn = world.connections.first(where: { $0.platform == .snapchat && $0.authCode == code })
            else { return oauthError("invalid_grant", "Invalid authorization code") }
            index = conn.index
        case "refresh_token":
            guard case .ok(let c) = checkToken(form["refresh_token"], .snapchat, kind: .refresh) else {
                return oauthError("invalid_grant", "Invalid refresh token")
            }
            index = c
        default:
            return oauthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
        }
        let (access, refresh) = issueTokens(.snapchat, index)
        let ttl = config.snapAccessTokenTTL.components.seconds
        return .json(
            JSONText.object([
                ("access_token", JSONText.string(access)), ("token_type", JSONText.string("Bearer")),
                ("expires_in", "\(ttl)"), ("refresh_token", JSONText.string(refresh)),
                ("scope", JSONText.string("snapchat-marketing-api")),
            ]))
    }

    // MARK: Entities

    private func snapMe(_ req: HTTPRequest) -> HTTPResponse {
        guard case .success(let c) = snapAuth(req) else { return snapUnauthorized() }
        let conn = world.connection(.snapchat, c)!
        return snapOK([
            (
                "me",
                JSONText.object([
                    ("id", JSONText.string(conn.userID)), ("email", JSONText.string("user\(c)@example.com")),
                    ("display_name", JSONText.string("Sandbox User \(c)")),
                    ("organization_id", JSONText.string(conn.organizationID)),
                ])
            )
        ])
    }

    private func snapOrganizations(_ req: HTTPRequest) -> HTTPResponse {
        guard case .success(let c) = snapAuth(req) else { return snapUnauthorized() }
        let conn = world.connection(.snapchat, c)!
        let org = JSONText.object([
            ("id", JSONText.string(conn.organizationID)), ("name", JSONText.string(conn.organizationName)),
            ("type", JSONText.string("ENTERPRISE")), ("state", JSONText.string("ACTIVE")),
            ("updated_at", JSONText.string("2024-01-15T10:00:00.000Z")),
        ])
        return snapOK([
            (
                "organizations",
                JSONText.array([
                    JSONText.object([("sub_request_status", JSONText.string("SUCCESS")), ("organization", org)])
                ])
            )
        ])
    }

    private func adAccountJSON(_ a: Account) -> String {
        JSONText.object([
            ("id", JSONText.string(a.id)), ("updated_at", JSONText.string("2024-01-15T10:00:00.000Z")),
            ("created_at", JSONText.string(Self.snapTime(a.createdUnix))), ("name", JSONText.string(a.name)),
            ("type", JSONText.string("PARTNER")), ("status", JSONText.string("ACTIVE")),
            ("organization_id", JSONText.string(a.organizationID)), ("currency", JSONText.string(a.currency)),
            ("timezone", JSONText.string(a.timezoneID)),
        ])
    }

    private static func snapTime(_ unix: Int) -> String {
        let day = CivilDay(day: unix / 86_400)
        let s = unix % 86_400
        return String(format: "%@T%02d:%02d:%02d.000Z", day.description, s / 3600, s / 60 % 60, s % 60)
    }

    private func snapAdAccounts(_ req: HTTPRequest) -> HTTPResponse {
        let connection: Int
        switch snapAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        let orgID = req.pathParameters["id"] ?? ""
        guard let conn = world.connections.first(where: { $0.platform == .snapchat && $0.organizationID == orgID })
        else { return snapError(404, "E3003", "Resource can not be found") }
        guard conn.index == connection else {
            return snapError(
                403, "E3002", "None of the requested actions [READ_CONTAINER_ENTITY] can be authorized for this user")
        }
        let items = conn.accountIDs.map { id in
            JSONText.object([
                ("sub_request_status", JSONText.string("SUCCESS")), ("adaccount", adAccountJSON(world.accounts[id]!)),
            ])
        }
        return snapPage(req, root: "adaccounts", items: items)
    }

    private func snapAdAccount(_ req: HTTPRequest) -> HTTPResponse {
        let connection: Int
        switch snapAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        switch snapAccount(req.pathParameters["id"] ?? "", connection: connection, actions: "READ_CONTAINER_ENTITY") {
        case .failure(let r): return r
        case .success(let a):
            return snapOK([
                (
                    "adaccounts",
                    JSONText.array([
                        JSONText.object([
                            ("sub_request_status", JSONText.string("SUCCESS")), ("adaccount", adAccountJSON(a)),
                        ])
                    ])
                )
            ])
        }
    }

    /// The request's `limit` (nil when absent) in `range` and `cursor` offset (0 when absent), or the documented
    /// 400 answer for a bad one: entity lists allow 50...1000, stats 1...200 (ad-apis.md B2).
    private func snapPaging(_ req: HTTPRequest, range: ClosedRange<Int>) -> Answer<(limit: Int?, offset: Int)> {
        var limit: Int? = nil
        if let raw = req.query["limit"] {
            guard let l = Int(raw), range.contains(l) else {
                return .failure(
                    snapError(
                        400, "E1001", "The value for limit must be between \(range.lowerBound) and \(range.upperBound)")
                )
            }
            limit = l
        }
        var offset = 0
        if let cursor = req.query["cursor"] {
            guard let o = Int(cursor), o >= 0 else {
                return .failure(snapError(400, "E1001", "Invalid cursor"))
            }
            offset = o
        }
        return .success((limit, offset))
    }

    /// Applies `limit` (50...1000, default: everything) and `cursor` paging with an absolute `next_link`.
    private func snapPage(_ req: HTTPRequest, root: String, items: [String]) -> HTTPResponse {
        let paging: (limit: Int?, offset: Int)
        switch snapPaging(req, range: 50...1000) {
        case .failure(let r): return r
        case .success(let p): paging = p
        }
        let limit = paging.limit ?? items.count
        let offset = paging.offset
        let end = min(items.count, offset + max(limit, 1))
        let page = offset < items.count ? Array(items[offset..<end]) : []
        var fields: [(String, String)] = [(root, JSONText.array(page))]
        if end < items.count {
            let next = "\(baseURL)\(req.path)?limit=\(limit)&cursor=\(end)"
            fields.append(("paging", JSONText.object([("next_link", JSONText.string(next))])))
        } else {
            fields.append(("paging", "{}"))
        }
        return snapOK(fields)
    }

    private func snapStatus(_ s: EntityStatus) -> String {
        // The sandbox's Snap accounts show deleted entities as paused, so every entity with metrics is listable.
        s == .active ? "ACTIVE" : "PAUSED"
    }

    private func snapEntities(_ req: HTTPRequest, _ level: SandboxLevel) -> HTTPResponse {
        let connection: Int
        switch snapAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        let account: Account
        let actions = level == .ad ? "READ_AD" : level == .adgroup ? "READ_AD_SQUAD" : "READ_CAMPAIGN"
        switch snapAccount(req.pathParameters["id"] ?? "", connection: connection, actions: actions) {
        case .failure(let r): return r
        case .success(let a): account = a
        }
        let ts = JSONText.string(Self.snapTime(account.createdUnix + 86_400))
        var items: [String] = []
        for c in account.campaigns {
            if level == .campaign {
                items.append(
                    wrap(
                        "campaign",
                        [
                            ("id", JSONText.string(c.id)), ("updated_at", ts), ("created_at", ts),
                            ("name", JSONText.string(c.name)), ("ad_account_id", JSONText.string(account.id)),
                            ("status", JSONText.string(snapStatus(c.status))),
                            ("objective", JSONText.string(c.objective)), ("start_time", ts),
                            ("daily_budget_micro", "\(c.budgetCents * 10_000)"),
                        ]))
                continue
            }
            for g in c.adGroups {
                if level == .adgroup {
                    items.append(
                        wrap(
                            "adsquad",
                            [
                                ("id", JSONText.string(g.id)), ("updated_at", ts), ("created_at", ts),
                                ("name", JSONText.string(g.name)), ("campaign_id", JSONText.string(c.id)),
                                ("status", JSONText.string(snapStatus(g.status))),
                                ("type", JSONText.string("SNAP_ADS")),
                                ("daily_budget_micro", "\(g.budgetCents * 10_000)"),
                            ]))
                    continue
                }
                for ad in g.ads where !isHiddenFromLists(ad.id) {
                    let creative = SplitMix64(seed: ad.key ^ config.seed)
                    var rng = creative
                    items.append(
                        wrap(
                            "ad",
                            [
                                ("id", JSONText.string(ad.id)), ("updated_at", ts), ("created_at", ts),
                                ("name", JSONText.string(ad.name)), ("ad_squad_id", JSONText.string(g.id)),
                                ("creative_id", JSONText.string(rng.uuid())),
                                ("status", JSONText.string(snapStatus(ad.status))),
                                ("type", JSONText.string("SNAP_AD")), ("review_status", JSONText.string("APPROVED")),
                            ]))
                }
            }
        }
        let root = level == .campaign ? "campaigns" : level == .adgroup ? "adsquads" : "ads"
        return snapPage(req, root: root, items: items)
    }

    private func wrap(_ name: String, _ fields: [(String, String)]) -> String {
        JSONText.object([("sub_request_status", JSONText.string("SUCCESS")), (name, JSONText.object(fields))])
    }

    // MARK: Stats

    static let snapFields: Set<String> = [
        "impressions", "swipes", "spend", "video_views", "conversion_purchases", "conversion_purchases_value",
    ]

    private func snapStats(_ req: HTTPRequest, kind: String) -> HTTPResponse {
        let connection: Int
        switch snapAuth(req) {
        case .failure(let r): return r
        case .success(let c): connection = c
        }
        let id = req.pathParameters["id"] ?? ""
        let accountID = kind == "adaccounts" ? id : world.owner[id]
        guard let accountID, world.accounts[accountID]?.platform == .snapchat,
            kind == "adaccounts" || Self.kindMatches(kind, world.level[id])
        else { return snapError(404, "E3003", "Resource can not be found") }
        let account: Account
        switch snapAccount(accountID, connection: connection, actions: "READ_STATS") {
        case .failure(let r): return r
        case .success(let a): account = a
        }
        let fields = (req.query["fields"] ?? "impressions,swipes,spend").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        if let bad = fields.first(where: { !Self.snapFields.contains($0) }) {
            return snapError(400, "E1001", "Invalid stats field: \(bad)")
        }
        let breakdown = req.query["breakdown"]
        if kind == "adaccounts" && breakdown == nil && fields.contains(where: { $0 != "spend" }) {
            return snapError(
                400, "E1001", "Unsupported Stats Query: Ad account level stats support the spend field only")
        }
        for (param, allowed) in [
            ("swipe_up_attribution_window", ["1_DAY", "7_DAY", "28_DAY"]),
            ("view_attribution_window", ["1_HOUR", "3_HOUR", "6_HOUR", "1_DAY", "7_DAY", "28_DAY"]),
        ] {
            if let v = req.query[param], !allowed.contains(v) {
                return snapError(400, "E1001", "Invalid value for \(param): \(v)")
            }
        }
        let granularity = req.query["granularity"] ?? "TOTAL"
        guard ["DAY", "TOTAL"].contains(granularity) else {
            return snapError(400, "E1001", "Unsupported Stats Query: the sandbox serves DAY and TOTAL granularity only")
        }
        guard let startText = req.query["start_time"], let endText = req.query["end_time"],
            let startUnix = Zone.parseISO(startText), let endUnix = Zone.parseISO(endText)
        else { return snapError(400, "E1001", "start_time and end_time must be ISO 8601 timestamps") }
        guard endUnix > startUnix else { return snapError(400, "E1008", "End time must be after start time") }
        let tz = account.timezone
        let startDay = Zone.localDay(tz, at: startUnix)
        let endDay = Zone.localDay(tz, at: endUnix)
        if granularity == "DAY" {
            guard Zone.midnight(tz, startDay) == startUnix else {
                return snapError(
                    400, "E1001",
                    "Unsupported Stats Query: Timeseries queries with DAY granularity must have a start time that is the start of day (00:00:00) for the account's timezone. This account's timezone is: \(account.timezoneID)"
                )
            }
            guard Zone.midnight(tz, endDay) == endUnix else {
                return snapError(
                    400, "E1001",
                    "Unsupported Stats Query: Timeseries queries with DAY granularity must have an end time that is the start of day (00:00:00) for the account's timezone. This account's timezone is: \(account.timezoneID)"
                )
            }
            guard endDay.day - startDay.day <= 31 else {
                return snapError(
                    400, "E1001",
                    "Unsupported Stats Query: Timeseries queries with DAY granularity must have a range of at most 31 days"
                )
            }
        }
        let lastDay = granularity == "DAY" ? endDay - 1 : Zone.localDay(tz, at: endUnix - 1)
        logReport(
            .snapchat, account: account.id, level: breakdown ?? "none", granularity: granularity, first: startDay,
            last: lastDay)

        let today = localToday(account)
        let ads: [Ad]
        let statType: String
        switch kind {
        case "adaccounts":
            ads = account.allAds
            statType = "AD_ACCOUNT"
        case "campaigns":
            ads = account.campaigns.first { $0.id == id }!.adGroups.flatMap(\.ads)
            statType = "CAMPAIGN"
        case "adsquads":
            ads = account.allAdGroups.first { $0.id == id }!.ads
            statType = "AD_SQUAD"
        default:
            ads = account.allAds.filter { $0.id == id }
            statType = "AD"
        }

        func statsJSON(_ m: DayMetrics) -> String {
            JSONText.object(
                fields.map { f in
                    switch f {
                    case "impressions": return (f, "\(m.impressions)")
                    case "swipes": return (f, "\(m.clicks)")
                    case "spend": return (f, "\(m.spendCents * 10_000)")
                    case "video_views": return (f, "\(m.videoViews)")
                    case "conversion_purchases": return (f, "\(m.conversions)")
                    default: return (f, "\(m.valueCents * 10_000)")
                    }
                })
        }
        func series(_ ads: [Ad]) -> (timeseries: String, total: DayMetrics) {
            var entries: [String] = []
            var total = DayMetrics()
            if startDay.day <= lastDay.day {
                for d in startDay.day...lastDay.day {
                    let day = CivilDay(day: d)
                    var sum = DayMetrics()
                    for ad in ads { sum += metrics(account, ad, day, today: today) }
                    total += sum
                    entries.append(
                        JSONText.object([
                            ("start_time", JSONText.string(Zone.snapTimestamp(tz, Zone.midnight(tz, day)))),
                            ("end_time", JSONText.string(Zone.snapTimestamp(tz, Zone.midnight(tz, day + 1)))),
                            ("stats", statsJSON(sum)),
                        ]))
                }
            }
            return (JSONText.array(entries), total)
        }
        let finalized = Zone.snapTimestamp(tz, Zone.midnight(tz, today - (MetricsModel.restatementDays - 1)))
        func header(_ entityID: String, _ type: String) -> [(String, String)] {
            [
                ("id", JSONText.string(entityID)), ("type", JSONText.string(type)),
                ("granularity", JSONText.string(granularity)),
                ("start_time", JSONText.string(Zone.snapTimestamp(tz, startUnix))),
                ("end_time", JSONText.string(Zone.snapTimestamp(tz, endUnix))),
                ("finalized_data_end_time", JSONText.string(finalized)),
            ]
        }
        var skewCents: Int64 = granularity == "TOTAL" && kind == "adaccounts" ? takeTotalSkew(account.id) : 0
        func body(_ entityID: String, _ type: String, _ ads: [Ad]) -> [(String, String)] {
            let (ts, sum) = series(ads)
            var total = sum
            total.spendCents += skewCents
            skewCents = 0
            return header(entityID, type)
                + (granularity == "DAY" ? [("timeseries", ts)] : [("stats", statsJSON(total))])
        }

        // `limit` 1...200 for stats (ad-apis.md B2) pages the breakdown's entities; `cursor` is the offset of the
        // page's first one. Absent: every entity in one answer. `next_link` repeats the whole query (fields, range,
        // granularity, attribution windows) with the next cursor, as an absolute URL.
        let limit: Int?
        let offset: Int
        switch snapPaging(req, range: 1...200) {
        case .failure(let r): return r
        case .success(let p): (limit, offset) = (p.limit, p.offset)
        }
        var nextLink: String? = nil
        var stat: [(String, String)]
        if let breakdown {
            var groups: [(String, [Ad])]
            let type: String
            switch breakdown {
            case "campaign" where ["adaccounts"].contains(kind):
                groups = account.campaigns.filter { c in
                    c.adGroups.contains { g in g.ads.contains { a in ads.contains { $0.id == a.id } } }
                }
                .map { ($0.id, $0.adGroups.flatMap(\.ads)) }
                type = "CAMPAIGN"
            case "adsquad" where ["adaccounts", "campaigns"].contains(kind):
                groups = account.allAdGroups.filter { g in g.ads.contains { a in ads.contains { $0.id == a.id } } }
                    .map { ($0.id, $0.ads) }
                type = "AD_SQUAD"
            case "ad" where kind != "ads":
                groups = ads.map { ($0.id, [$0]) }
                type = "AD"
            default:
                return snapError(400, "E1001", "Unsupported breakdown \(breakdown) for \(statType) stats")
            }
            let end = min(groups.count, offset + (limit ?? groups.count))
            if end < groups.count {
                let rest = req.rawQuery.split(separator: "&").filter { !$0.hasPrefix("cursor=") }.joined(separator: "&")
                nextLink = "\(baseURL)\(req.path)?\(rest)&cursor=\(end)"
            }
            groups = offset < groups.count ? Array(groups[offset..<end]) : []
            stat = header(id, statType)
            stat.append(
                (
                    "breakdown_stats",
                    JSONText.object([
                        (breakdown, JSONText.array(groups.map { JSONText.object(body($0.0, type, $0.1)) }))
                    ])
                ))
        } else {
            stat = body(id, statType, ads)
        }
        let (root, item) =
            granularity == "DAY" ? ("timeseries_stats", "timeseries_stat") : ("total_stats", "total_stat")
        return snapOK([
            (
                root,
                JSONText.array([
                    JSONText.object([("sub_request_status", JSONText.string("SUCCESS")), (item, JSONText.object(stat))])
                ])
            ),
            ("paging", nextLink.map { JSONText.object([("next_link", JSONText.string($0))]) } ?? "{}"),
        ])
    }

    private static func kindMatches(_ kind: String, _ level: SandboxLevel?) -> Bool {
        switch kind {
        case "campaigns": return level == .campaign
        case "adsquads": return level == .adgroup
        case "ads": return level == .ad
        default: return false
        }
    }
}
