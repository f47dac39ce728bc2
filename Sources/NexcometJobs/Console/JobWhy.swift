import Foundation
import Postgres
import Runtime

/// "Why is this job not running?" for Nexcomet's jobs: the engine's findings (`JobDiagnosis`: scheduled later,
/// backoff, no live worker, snoozed, duplicate) plus the application's, read from the job's args:
/// - a sync job whose advertiser's shared rate limit (`nexjobs.rate_limits`, key `platform:external_id`) has its
///   next slot in the future;
/// - a job of a connection or ad account whose organization is restricted or deleted, or whose connection is not
///   active (the handler then skips it).
/// The console's job page and `nexjobs jobs why ID` both call `explain`.
public enum JobWhy {
    public static func explain(_ id: Int64, on pool: PGPool) async throws -> JobDiagnosis? {
        guard var d = try await JobDiagnosis.load(id, on: pool) else { return nil }
        let waiting = d.state == "available" || d.state == "retryable"
        let object = (try? JSONSerialization.jsonObject(with: Data(d.args.utf8))) as? [String: Any]
        func rowID(_ key: String) -> Int64? {
            switch object?[key] {
            case let s as String: return Int64(s)
            case let n as NSNumber: return Int64(exactly: n.doubleValue)
            default: return nil
            }
        }
        var connectionID: Int64?
        var accountID: Int64?
        switch d.kind {
        case "sync_connection", "refresh_token", "disconnect": connectionID = rowID("connection_id")
        case "sync_ad_account": accountID = rowID("ad_account_id")
        default: break
        }
        if let accountID {
            connectionID = try await pool.query(
                "SELECT connection_id FROM nexcomet.ad_accounts WHERE id = \(accountID)"
            ).first?.decode(0)
            if connectionID == nil {
                d.reasons.append(.init("missing_account", "Its ad account \(accountID) no longer exists."))
            }
        }
        if let connectionID {
            if let r = try await pool.query(
                """
                SELECT c.status, o.id, o.processing_restricted, o.processing_restricted_by, o.deleted_at IS NOT NULL
                  FROM nexcomet.ad_connections c JOIN nexcomet.organizations o ON o.id = c.organization_id
                 WHERE c.id = \(connectionID)
                """
            ).first {
                let status: String = try r.decode(0)
                let org: Int64 = try r.decode(1)
                let restricted: Bool = try r.decode(2)
                let by: String? = try r.decode(3)
                let deleted: Bool = try r.decode(4)
                if deleted {
                    d.reasons.append(
                        .init("org_deleted", "Its organization \(org) is deleted: the job will do nothing."))
                } else if restricted {
                    d.reasons.append(
                        .init(
                            "org_restricted",
                            "Its organization \(org) is restricted (processing_restricted\(by.map { " by a '\($0)' request" } ?? "")): no sync runs for it."
                        ))
                }
                if status != "active" && d.kind != "disconnect" {
                    d.reasons.append(
                        .init("connection_inactive", "Its connection \(connectionID) is \(status), not active."))
                }
            } else if d.kind != "disconnect" {
                d.reasons.append(.init("missing_connection", "Its connection \(connectionID) no longer exists."))
            }
        }
        if waiting, d.kind == "sync_ad_account" || d.kind == "sync_connection" {
            // The advertiser's shared request slot: a next slot in the future means calls for it are being paced.
            let rows = try await pool.query(
                """
                SELECT r.key, r.next_slot FROM nexcomet.ad_accounts a
                  JOIN nexjobs.rate_limits r ON r.key = a.platform || ':account:' || a.external_id
                 WHERE (a.id = \(accountID) OR a.connection_id = \(d.kind == "sync_connection" ? connectionID : nil))
                   AND r.next_slot > now()
                UNION ALL
                -- The app's shared quota (sql/051: tiktok:app[:<app id>]), which every account of the platform waits on.
                SELECT r.key, r.next_slot FROM nexcomet.ad_connections c
                  JOIN nexjobs.rate_limits r ON r.key LIKE c.platform || ':app%'
                 WHERE c.id = \(connectionID) AND r.next_slot > now()
                 ORDER BY 2 DESC LIMIT 5
                """)
            for r in rows {
                let key: String = try r.decode(0)
                let until: Date = try r.decode(1)
                let whom = key.contains(":app") ? "the platform app's shared quota" : "advertiser"
                d.reasons.append(
                    .init("rate_limited", "It is rate-limited for \(whom) \(key) until \(PGTimestamp.format(until))."))
            }
        }
        // A job that is only "due" per the engine but blocked by the app should not also say "should start".
        if d.reasons.count > 1 { d.reasons.removeAll { $0.code == "due" } }
        return d
    }
}
