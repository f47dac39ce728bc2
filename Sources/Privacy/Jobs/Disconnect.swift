import Foundation
import Postgres
import Queue

/// `disconnect {connection_id}`: the platform is disconnected. Its sealed tokens are deleted at once (the policy:
/// "retained until you disconnect"), the connection stays as `disconnected` (no token, never scheduled), and its ad
/// accounts go with their entities and metrics. One transaction, together with the job's completion.
public struct DisconnectHandler: JobHandler {
    public typealias Args = ConnectionJobArgs

    public static let kind = "disconnect"
    public var timeout: Duration { .seconds(600) }

    public init() {}

    public func run(_ args: Args, context: JobContext) async throws {
        let id = args.connectionID.value
        try await context.pool.withTransaction { c in
            guard
                let org: Int64 = try await c.query(
                    """
                    UPDATE nexcomet.ad_connections
                       SET \(unsafeSQL: forgetTokensSQL), last_error = NULL, external_user_id = NULL
                     WHERE id = \(id)
                    RETURNING organization_id
                    """
                ).first?.decode(0)
            else { throw JobDiscard("connection \(id) does not exist") }
            let accounts = try await c.execute("DELETE FROM nexcomet.ad_accounts WHERE connection_id = \(id)")
            try await audit(
                "disconnect", organizationID: org, details: ["connection_id": id, "ad_accounts": Int64(accounts)], on: c
            )
            try await context.complete(on: c)
        }
    }
}
