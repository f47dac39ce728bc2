import Foundation
import HTTP

/// Control endpoints under `/_sandbox/` (JSON in and out); the in-process methods do the same.
extension Sandbox {
    func registerControl(_ router: Router) {
        router.add("GET", "/_sandbox/faults") { [self] _ in .json(faults().json) }
        router.add("POST", "/_sandbox/faults") { [self] req in
            switch FaultConfig.parse(req.bodyText.isEmpty ? "{}" : req.bodyText) {
            case .failure(let e): return controlError(e.message)
            case .success(let f):
                setFaults(f)
                return .json(f.json)
            }
        }
        router.add("POST", "/_sandbox/revoke") { [self] req in
            guard let body = JSONValue.parse(req.bodyText) else { return controlError("body is not JSON") }
            if let token = body["token"]?.text {
                return revoke(token: token) ? .json("{\"revoked\":1}") : controlError("unknown token", status: 404)
            }
            guard let p = body["platform"]?.text,
                let platform = SandboxPlatform(rawValue: p == "snap" ? "snapchat" : p),
                let index = body["connection"]?.intValue, world.connection(platform, index) != nil
            else { return controlError("give {\"token\"} or {\"platform\", \"connection\"}") }
            revokeConnection(platform, index)
            return .json("{\"revoked\":\"connection\"}")
        }
        router.add("POST", "/_sandbox/expire") { [self] req in
            let body = JSONValue.parse(req.bodyText.isEmpty ? "{}" : req.bodyText)
            expireSnapTokens(connection: body?["connection"]?.intValue)
            return .json("{\"expired\":true}")
        }
        router.add("GET", "/_sandbox/clock") { [self] _ in .json(clockJSON()) }
        router.add("POST", "/_sandbox/clock") { [self] req in
            guard let days = JSONValue.parse(req.bodyText)?["advance_days"]?.intValue,
                Sandbox.clockDays.contains(days)
            else {
                return controlError(
                    "give {\"advance_days\": N} with N in \(Sandbox.clockDays.lowerBound)...\(Sandbox.clockDays.upperBound)"
                )
            }
            guard tryAdvanceDays(days) else {
                return controlError(
                    "the clock may move at most \(Sandbox.clockDays.upperBound) days from its start in total",
                    status: 409)
            }
            return .json(clockJSON())
        }
        router.add("GET", "/_sandbox/truth") { [self] req in
            let platform = req.query["platform"].flatMap { SandboxPlatform(rawValue: $0 == "snap" ? "snapchat" : $0) }
            let rows = groundTruth(
                platform: platform, account: req.query["account"], from: req.query["from"], to: req.query["to"])
            let totals = accountTotals(platform: platform).filter {
                req.query["account"] == nil || $0.accountID == req.query["account"]
            }
            let rowJSON = rows.map { r in
                JSONText.object([
                    ("platform", JSONText.string(r.platform.rawValue)), ("account_id", JSONText.string(r.accountID)),
                    ("level", JSONText.string(r.level.rawValue)), ("entity_id", JSONText.string(r.entityID)),
                    ("date", JSONText.string(r.date)), ("currency", JSONText.string(r.currency)),
                    ("spend", JSONText.string("\(r.spend)")), ("impressions", "\(r.impressions)"),
                    ("clicks", "\(r.clicks)"), ("conversions", "\(r.conversions)"),
                    ("conversion_value", JSONText.string("\(r.conversionValue)")),
                ])
            }
            let totalJSON = totals.map { t in
                JSONText.object([
                    ("platform", JSONText.string(t.platform.rawValue)), ("account_id", JSONText.string(t.accountID)),
                    ("currency", JSONText.string(t.currency)), ("spend", JSONText.string("\(t.spend)")),
                    ("impressions", "\(t.impressions)"), ("clicks", "\(t.clicks)"),
                    ("conversions", "\(t.conversions)"),
                    ("conversion_value", JSONText.string("\(t.conversionValue)")),
                ])
            }
            return .json(JSONText.object([("rows", JSONText.array(rowJSON)), ("totals", JSONText.array(totalJSON))]))
        }
        router.add("GET", "/_sandbox/requests") { [self] _ in
            let counts = requestCounts()
            var maxima: [String: Int] = [:]
            for c in counts { maxima[c.accountID] = max(maxima[c.accountID] ?? 0, c.count) }
            let list = counts.map { c in
                JSONText.object([
                    ("platform", JSONText.string(c.platform.rawValue)), ("account_id", JSONText.string(c.accountID)),
                    ("second", "\(c.second)"), ("count", "\(c.count)"),
                ])
            }
            let maxJSON = JSONText.object(maxima.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") })
            let refusals = JSONText.object(
                SandboxPlatform.allCases.map { ($0.rawValue, "\(appQPSRefusals($0))") })
            return .json(
                JSONText.object([
                    ("counts", JSONText.array(list)), ("max_per_second", maxJSON), ("app_qps_refusals", refusals),
                ]))
        }
        router.add("GET", "/_sandbox/app-qps") { [self] _ in .json(appQPSJSON()) }
        router.add("POST", "/_sandbox/app-qps") { [self] req in
            // {"tiktok": N, "snapchat": N}: each given platform's limit, 0 or null = unlimited; others unchanged.
            guard let body = JSONValue.parse(req.bodyText) else { return controlError("body is not JSON") }
            var changes: [(SandboxPlatform, Int?)] = []
            for platform in SandboxPlatform.allCases {
                guard let value = body[platform.rawValue] else { continue }
                if value == .null {
                    changes.append((platform, nil))
                } else if let n = value.intValue, Sandbox.appQPSRange.contains(n) {
                    changes.append((platform, n))
                } else {
                    return controlError(
                        "\(platform.rawValue) must be an integer in \(Sandbox.appQPSRange.lowerBound)...\(Sandbox.appQPSRange.upperBound) or null (0 and null: unlimited)"
                    )
                }
            }
            for (platform, limit) in changes { setAppQPS(platform, limit) }
            return .json(appQPSJSON())
        }
        router.add("GET", "/_sandbox/report-requests") { [self] _ in
            let list = reportRequests().map { r in
                JSONText.object([
                    ("platform", JSONText.string(r.platform.rawValue)), ("account_id", JSONText.string(r.accountID)),
                    ("level", JSONText.string(r.level)), ("granularity", JSONText.string(r.granularity)),
                    ("first", JSONText.string(r.first)),
                    ("last", JSONText.string(r.last)),
                ])
            }
            return .json(JSONText.object([("requests", JSONText.array(list))]))
        }
        router.add("POST", "/_sandbox/requests/reset") { [self] _ in
            resetRequestCounts()
            return .json("{\"reset\":true}")
        }
        router.add("GET", "/_sandbox/connections") { [self] _ in
            let list = connections().map { c in
                JSONText.object([
                    ("platform", JSONText.string(c.platform.rawValue)), ("index", "\(c.index)"),
                    ("auth_code", JSONText.string(c.authCode)), ("access_token", JSONText.string(c.accessToken)),
                    ("refresh_token", JSONText.string(c.refreshToken)),
                    ("account_ids", JSONText.array(c.accountIDs.map(JSONText.string))),
                    ("organization_id", JSONText.string(c.organizationID)),
                ])
            }
            return .json(
                JSONText.object([
                    ("tiktok_base_url", JSONText.string(tiktokBaseURL)),
                    ("snap_api_base_url", JSONText.string(snapAPIBaseURL)),
                    ("snap_oauth_url", JSONText.string(snapOAuthURL)), ("connections", JSONText.array(list)),
                ]))
        }
    }

    private func controlError(_ message: String, status: Int = 400) -> HTTPResponse {
        .json(JSONText.object([("error", JSONText.string(message))]), status: status)
    }

    private func appQPSJSON() -> String {
        let limits = appQPS()
        return JSONText.object(SandboxPlatform.allCases.map { ($0.rawValue, limits[$0].map { "\($0)" } ?? "null") })
    }

    private func clockJSON() -> String {
        let offset = state.withLock { $0.dayOffset }
        let todays = world.accountOrder.compactMap { world.accounts[$0] }.map {
            ($0.id, JSONText.string(localToday($0).description))
        }
        return JSONText.object([("advanced_days", "\(offset)"), ("account_today", JSONText.object(todays))])
    }
}
