import Foundation
import Postgres
import Queue

/// `gdpr_export {request_id}`: a machine-readable (JSON) export of the request's subject, stored in the
/// request's `result` and the request marked `completed`, in the transaction that completes the job.
///
/// For an organization (`user_id` NULL): the organization, its users, connections (metadata only: never token
/// ciphertext or key ids), ad accounts, campaigns, ad groups, ads, daily metrics, sync runs, usage logs and
/// notifications. For a user: the organization's name and id, the user's own row and usage logs. Nothing of
/// another organization: every part is selected by the request's organization id.
public struct GDPRExportHandler: JobHandler {
    public typealias Args = PrivacyRequestJobArgs

    public static let kind = "gdpr_export"
    public var timeout: Duration { .seconds(1800) }

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.requestID.value
        try await PrivacyRequests.failOnRefusal(id, context: context) {
            try await context.pool.withTransaction { c in
                guard let request = try await PrivacyRequest.lock(id, kind: "export", on: c) else {
                    throw JobDiscard("privacy request \(id) does not exist")
                }
                guard request.status != "completed" else {
                    try await context.complete(on: c)
                    return
                }
                let org = request.organizationID
                let export: String
                if let user = request.userID {
                    try await PrivacyRequest.checkUser(user, belongsTo: org, on: c)
                    export = try await c.query(
                        """
                        SELECT jsonb_build_object(
                          'format', 'nexcomet-export-v1', 'exported_at', now(), 'subject', 'user',
                          'organization', (SELECT jsonb_build_object('id', o.id, 'name', o.name)
                                             FROM nexcomet.organizations o WHERE o.id = \(org)),
                          'user', (SELECT to_jsonb(u) FROM nexcomet.users u WHERE u.id = \(user) AND u.organization_id = \(org)),
                          'usage_logs', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.at), '[]')
                                           FROM nexcomet.usage_logs l WHERE l.user_id = \(user) AND l.organization_id = \(org))
                        )::text
                        """
                    ).first!.decode(0)
                } else {
                    export = try await c.query(
                        """
                        WITH accounts AS (
                          SELECT a.* FROM nexcomet.ad_accounts a JOIN nexcomet.ad_connections x ON x.id = a.connection_id
                           WHERE x.organization_id = \(org))
                        SELECT jsonb_build_object(
                          'format', 'nexcomet-export-v1', 'exported_at', now(), 'subject', 'organization',
                          'organization', (SELECT to_jsonb(o) FROM nexcomet.organizations o WHERE o.id = \(org)),
                          'users', (SELECT coalesce(jsonb_agg(to_jsonb(u) ORDER BY u.id), '[]')
                                      FROM nexcomet.users u WHERE u.organization_id = \(org)),
                          'connections', (SELECT coalesce(jsonb_agg(to_jsonb(x) - 'access_token_ciphertext'
                                                            - 'refresh_token_ciphertext' - 'token_key_id' ORDER BY x.id), '[]')
                                            FROM nexcomet.ad_connections x WHERE x.organization_id = \(org)),
                          'ad_accounts', (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.id), '[]') FROM accounts a),
                          'campaigns', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM nexcomet.campaigns e
                                         WHERE e.ad_account_id IN (SELECT id FROM accounts)),
                          'ad_groups', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM nexcomet.ad_groups e
                                         WHERE e.ad_account_id IN (SELECT id FROM accounts)),
                          'ads', (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]') FROM nexcomet.ads e
                                   WHERE e.ad_account_id IN (SELECT id FROM accounts)),
                          'daily_metrics', (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.ad_account_id, m.date, m.level,
                                                                       m.entity_id), '[]')
                                              FROM nexcomet.daily_metrics m WHERE m.ad_account_id IN (SELECT id FROM accounts)),
                          'sync_runs', (SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id), '[]')
                                          FROM nexcomet.sync_runs r JOIN nexcomet.ad_connections x ON x.id = r.connection_id
                                         WHERE x.organization_id = \(org)),
                          'usage_logs', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.at), '[]')
                                           FROM nexcomet.usage_logs l WHERE l.organization_id = \(org)),
                          'notifications', (SELECT coalesce(jsonb_agg(to_jsonb(n) ORDER BY n.id), '[]')
                                              FROM nexcomet.notifications n WHERE n.organization_id = \(org))
                        )::text
                        """
                    ).first!.decode(0)
                }
                try await c.execute(
                    """
                    UPDATE nexcomet.privacy_requests
                       SET status = 'completed', result = \(export)::jsonb, error = NULL,
                           started_at = coalesce(started_at, now()), completed_at = now()
                     WHERE id = \(id)
                    """)
                try await audit(
                    "export", requestID: id, organizationID: org,
                    details: ["bytes": Int64(export.utf8.count), "user_level": request.userID == nil ? 0 : 1], on: c)
                try await context.complete(on: c)
            }
        }
    }
}
