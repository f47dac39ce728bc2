import Foundation
import Postgres
import Queue

// The privacy policy's obligations as jobs (../shared/reference/privacy-policy.txt, section 7 and the GDPR rights;
// DESIGN.md "Job kinds"): retention_purge, disconnect, gdpr_export, gdpr_erase. Each records what it did in
// nexcomet.privacy_audit: action, ids and counts, never personal data or tokens.

/// The SET list that forgets a connection's tokens and stops its scheduling (disconnect, deleted organizations).
let forgetTokensSQL = """
    status = 'disconnected', access_token_ciphertext = NULL, refresh_token_ciphertext = NULL, token_key_id = NULL,
    access_token_expires_at = NULL, refresh_token_expires_at = NULL, next_sync_at = NULL, refresh_enqueued_at = NULL,
    updated_at = now()
    """

/// Writes one audit row on `c`. `details` holds counts and ids only.
func audit(
    _ action: String, requestID: Int64? = nil, organizationID: Int64?, details: [String: Int64], on c: PGConnection
) async throws {
    let keys = details.keys.sorted()
    try await c.execute(
        """
        INSERT INTO nexcomet.privacy_audit (action, request_id, organization_id, details)
        SELECT \(action)::text, \(requestID)::bigint, \(organizationID)::bigint,
               coalesce(jsonb_object_agg(k, v), '{}') FROM unnest(\(keys)::text[], \(keys.map { details[$0]! })::bigint[]) AS d(k, v)
        """)
}

/// Takes the row locks an erasure of organization `id` needs, in one fixed order: the organization, then its
/// connections by id, then their ad accounts by id. Sync jobs lock a connection and its organization before they
/// write under them, so an erasure waits for a running sync rather than deadlocking with it (issue 12, 40P01).
func lockOrganizationForErasure(_ id: Int64, on c: PGConnection) async throws {
    try await c.execute("SELECT 1 FROM nexcomet.organizations WHERE id = \(id) FOR UPDATE")
    try await c.execute(
        "SELECT 1 FROM nexcomet.ad_connections WHERE organization_id = \(id) ORDER BY id FOR UPDATE")
    try await c.execute(
        """
        SELECT 1 FROM nexcomet.ad_accounts a JOIN nexcomet.ad_connections x ON x.id = a.connection_id
         WHERE x.organization_id = \(id) ORDER BY a.id FOR UPDATE OF a
        """)
}

/// Deletes an organization and everything it owns, and nothing another organization owns, table by table from
/// ``PrivacyCatalogue`` (children first): its users' usage logs of this organization (or of none) go; another
/// organization's log rows that name one of its users stay, with the user unlinked. Locks in the fixed erasure
/// order first. The `privacy_audit` record (ids and counts) stays.
func deleteOrganization(_ id: Int64, on c: PGConnection) async throws {
    try await lockOrganizationForErasure(id, on: c)
    // Revocation at the platform outlives the organization: sealed copies of its access tokens (TikTok).
    let kept: Int = try await c.query(
        """
        SELECT nexcomet.keep_tokens_for_revocation(
                   ARRAY(SELECT id FROM nexcomet.ad_connections WHERE organization_id = \(id)))
        """
    ).first!.decode(0)
    if kept > 0 { try await enqueueRevocation(on: c) }
    try await c.execute(
        """
        UPDATE nexcomet.usage_logs SET user_id = NULL
         WHERE organization_id <> \(id)
           AND user_id IN (SELECT u.id FROM nexcomet.users u WHERE u.organization_id = \(id))
        """)
    try await PrivacyCatalogue.eraseOrganization(id, on: c)
}

/// A privacy request row, locked for the job handling it.
struct PrivacyRequest {
    var organizationID: Int64
    var userID: Int64?
    var status: String

    /// Locks the request; `nil` when it does not exist. Throws `JobDiscard` when it is of another kind.
    static func lock(_ id: Int64, kind: String, on c: PGConnection) async throws -> PrivacyRequest? {
        guard
            let r = try await c.query(
                """
                SELECT organization_id, user_id, status, kind FROM nexcomet.privacy_requests
                 WHERE id = \(id) FOR UPDATE
                """
            ).first
        else { return nil }
        let actual: String = try r.decode(3)
        guard actual == kind else { throw JobDiscard("privacy request \(id) is a '\(actual)' request, not '\(kind)'") }
        return PrivacyRequest(organizationID: try r.decode(0), userID: try r.decode(1), status: try r.decode(2))
    }

    /// Refuses a request whose user belongs to another organization or no longer exists (erased or purged): the
    /// job fails at once and the request ends `failed` with the reason (``PrivacyRequests/failOnRefusal``).
    static func checkUser(_ user: Int64, belongsTo org: Int64, on c: PGConnection) async throws {
        guard
            let owner: Int64 = try await c.query(
                "SELECT organization_id FROM nexcomet.users WHERE id = \(user)"
            ).first?.decode(0)
        else {
            throw JobDiscard("refused: the subject, user \(user), no longer exists")
        }
        guard owner == org else {
            throw JobDiscard("refused: user \(user) does not belong to organization \(org)")
        }
    }
}
