import Foundation
import Postgres
import Queue

/// `gdpr_erase {request_id}`: erases the request's subject everywhere, keeping only a non-personal audit row.
///
/// A user (who must belong to the request's organization, or be gone already): their usage logs, their user row,
/// and the results of the organization's earlier exports that hold them; the request keeps the bare user id (no
/// foreign key, sql/025) and is marked `completed`. An organization: the organization row and, by cascade, everything it owns
/// (users, connections and sealed tokens, accounts, entities, metrics, runs, logs, notifications, requests, this
/// one included). One transaction, together with the job's completion.
public struct GDPREraseHandler: JobHandler {
    public typealias Args = PrivacyRequestJobArgs

    public static let kind = "gdpr_erase"
    public var timeout: Duration { .seconds(1800) }

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.requestID.value
        try await PrivacyRequests.failOnRefusal(id, context: context) {
            try await context.pool.withTransaction { c in
                guard let request = try await PrivacyRequest.lock(id, kind: "erase", on: c) else {
                    // An organization's erasure deletes its own request: a re-run finds it gone, and the audit shows it.
                    let done: Int = try await c.query(
                        "SELECT count(*)::int FROM nexcomet.privacy_audit WHERE action = 'erase' AND request_id = \(id)"
                    ).first!.decode(0)
                    guard done > 0 else { throw JobDiscard("privacy request \(id) does not exist") }
                    try await context.complete(on: c)
                    return
                }
                guard request.status != "completed" else {
                    try await context.complete(on: c)
                    return
                }
                let org = request.organizationID
                if let user = request.userID {
                    try await PrivacyRequest.checkUser(user, belongsTo: org, on: c)
                    try await lockOrganizationForErasure(org, on: c)
                    // Every catalogued column holding the user's data: their logs of this organization (or of
                    // none), their user row, external_user_id on the organization's connections (no column records
                    // who authorized which; re-set at reconnection), their requests' results, and the organization's
                    // and their earlier exports (chunks), which hold copies.
                    let erased = try await PrivacyCatalogue.eraseUser(user, organization: org, on: c)
                    let logs = erased["usage_logs"] ?? 0
                    let users = erased["users"] ?? 0
                    // The last member gone: the organization is deleted and its tokens go now (policy section 7).
                    let members: Int = try await c.query(
                        """
                        SELECT count(*)::int FROM nexcomet.users WHERE organization_id = \(org) AND deleted_at IS NULL
                        """
                    ).first!.decode(0)
                    if members == 0 {
                        try await c.execute(
                            """
                            UPDATE nexcomet.organizations SET deleted_at = coalesce(deleted_at, now()), updated_at = now()
                             WHERE id = \(org)
                            """)
                        try await c.query("SELECT nexcomet.wipe_tokens_of_deleted_organizations(1000000)")
                    }
                    try await c.execute(
                        """
                        UPDATE nexcomet.privacy_requests
                           SET status = 'completed', started_at = coalesce(started_at, now()), completed_at = now(),
                               result = jsonb_build_object('erased', jsonb_build_object('users', \(users)::int,
                                                                                    'usage_logs', \(logs)::int))
                         WHERE id = \(id)
                        """)
                    try await audit(
                        "erase", requestID: id, organizationID: org,
                        details: erased,
                        on: c)
                } else {
                    // Completed first, so the status trigger audits it; the cascade then deletes the request.
                    try await c.execute(
                        """
                        UPDATE nexcomet.privacy_requests
                           SET status = 'completed', started_at = coalesce(started_at, now()), completed_at = now()
                         WHERE id = \(id)
                        """)
                    try await audit("erase", requestID: id, organizationID: org, details: ["organizations": 1], on: c)
                    try await deleteOrganization(org, on: c)
                }
                try await context.complete(on: c)
            }
        }
    }
}
