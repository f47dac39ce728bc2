import Foundation
import Postgres
import Queue

/// `disconnect {connection_id}`: the platform is disconnected. Its sealed tokens are deleted at once (the policy:
/// "retained until you disconnect"), the connection stays as `disconnected` (no token, never scheduled), and its ad
/// accounts go with their entities and metrics. One transaction, together with the job's completion.
///
/// Revocation at the platform never delays this: where the platform documents a revoke endpoint (TikTok), a sealed
/// copy of the access token is kept in `token_revocations` (at most 24 hours) and a `revoke_tokens` job is queued
/// in the same transaction; it calls the platform afterwards, with retries. A `disconnected` notification tells the
/// customer what happened at the platform: revocation requested, or (Snapchat, no revoke endpoint) how to remove
/// the app's access in the platform's own settings.
public struct DisconnectHandler: JobHandler {
    public typealias Args = ConnectionJobArgs

    public static let kind = "disconnect"
    public var timeout: Duration { .seconds(600) }

    /// What the notification says when the platform has no revoke endpoint, by platform.
    public static let removeAccessInstructions: [String: String] = [
        "snapchat": """
        Snapchat offers no way for Nexcomet to revoke its access for you. To remove it, open Snapchat, go to \
        Settings > Privacy Controls > Connected Apps, choose Nexcomet and tap Remove App.
        """
    ]

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.connectionID.value
        try await context.pool.withTransaction { c in
            // The organization before the connection: the erasure's lock order (the notification's foreign key).
            try await c.execute(
                """
                SELECT 1 FROM nexcomet.organizations
                 WHERE id = (SELECT organization_id FROM nexcomet.ad_connections WHERE id = \(id)) FOR KEY SHARE
                """)
            let kept: Int = try await c.query(
                "SELECT nexcomet.keep_tokens_for_revocation(ARRAY[\(id)]::bigint[])"
            ).first!.decode(0)
            guard
                let row = try await c.query(
                    """
                    UPDATE nexcomet.ad_connections
                       SET \(unsafeSQL: forgetTokensSQL), last_error = NULL, external_user_id = NULL
                     WHERE id = \(id)
                    RETURNING organization_id, platform
                    """
                ).first
            else { throw JobDiscard("connection \(id) does not exist") }
            let org: Int64 = try row.decode(0)
            let platform: String = try row.decode(1)
            let accounts = try await c.execute("DELETE FROM nexcomet.ad_accounts WHERE connection_id = \(id)")
            let instructions = Self.removeAccessInstructions[platform]
            try await c.execute(
                """
                INSERT INTO nexcomet.notifications (organization_id, connection_id, kind, payload)
                VALUES (\(org), \(id), 'disconnected',
                        jsonb_strip_nulls(jsonb_build_object(
                            'platform', \(platform)::text,
                            'revocation', CASE WHEN \(kept)::int > 0 THEN 'requested'
                                               WHEN \(instructions)::text IS NULL THEN 'not_needed'
                                               ELSE 'unavailable' END,
                            'remove_access', \(instructions)::text)))
                """)
            if kept > 0 { try await enqueueRevocation(on: c) }
            try await audit(
                "disconnect", organizationID: org,
                details: ["connection_id": id, "ad_accounts": Int64(accounts), "revocations_queued": Int64(kept)], on: c
            )
            try await context.complete(on: c)
        }
    }
}

/// Queues the `revoke_tokens` job (one live job at a time: unique key `revoke_tokens`) on `c`.
func enqueueRevocation(on c: PGConnection) async throws {
    try await c.query(
        """
        SELECT nexjobs.enqueue_ex('revoke_tokens', '{}'::jsonb, 'default', -5, NULL, 'revoke_tokens', 20)
        """)
}
