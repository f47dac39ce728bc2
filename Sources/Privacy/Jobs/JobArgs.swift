import Foundation

// Args shared by the privacy jobs and the sync jobs (Sync depends on this module, not the other way round).

/// Args `{"connection_id": N}` of the jobs about one connection (sync_connection, refresh_token, disconnect).
public struct ConnectionJobArgs: Decodable, Sendable {
    public var connectionID: RowID
    enum CodingKeys: String, CodingKey { case connectionID = "connection_id" }
}

/// Args `{"request_id": N}` of the jobs about one privacy request (gdpr_export, gdpr_erase).
public struct PrivacyRequestJobArgs: Decodable, Sendable {
    public var requestID: RowID
    enum CodingKeys: String, CodingKey { case requestID = "request_id" }
}

/// A database row id in job args, given as a JSON number or a string of digits (the due-work SQL writes
/// strings). Not a queue job id: it names a connection, an ad account or a privacy request.
public struct RowID: Codable, Sendable, Hashable, CustomStringConvertible {
    public var value: Int64
    public init(_ value: Int64) { self.value = value }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let text = try? c.decode(String.self), let v = Int64(text) {
            value = v
        } else {
            value = try c.decode(Int64.self)
        }
    }
    /// Written as a string of digits, as the due-work SQL writes it (and exact above 2^53 for any JSON reader).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(String(value))
    }
    public var description: String { String(value) }
}

/// How many days of metrics each plan keeps (privacy policy section 7: Free 7 days, Pro 90; Enterprise is
/// unlimited, and a first sync backfills 365 days of it). Shared by the retention purge and the sync window.
/// Configured values (`NEXJOBS_SYNC_RETENTION_*`) are capped by the policy: a free plan never keeps more than 7
/// days, a pro plan never more than 90, whatever is configured.
public struct PlanRetention: Sendable, Equatable {
    /// The policy's windows; a plan not listed (enterprise) is unlimited.
    public static let policyMaxDays: [String: Int] = ["free": 7, "pro": 90]
    public var days: [String: Int]
    public init(days: [String: Int] = ["free": 7, "pro": 90, "enterprise": 365]) { self.days = days }
    /// Retention of a plan, capped by the policy; an unknown plan gets the free plan's (or 7 days).
    public func days(plan: String) -> Int {
        let name = ["free", "pro", "enterprise"].contains(plan) ? plan : "free"
        let configured = max(1, days[name] ?? days["free"] ?? 7)
        guard let cap = PlanRetention.policyMaxDays[name] else { return configured }
        return min(configured, cap)
    }
    /// True when the plan's data is kept only for ``days(plan:)`` days (free, pro and unknown plans); false for
    /// enterprise, whose retention is unlimited (its `days` only bound a first sync's backfill).
    public func isLimited(plan: String) -> Bool { plan != "enterprise" }
}
