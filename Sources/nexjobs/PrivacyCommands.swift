import Foundation
import Postgres
import Privacy
import Sync

/// `nexjobs privacy list | show | retry | request | download`: operators see and act on GDPR requests (policy section 8:
/// answered within 30 days). Requests that arrive by email are entered with `privacy request`.
func privacyCommand(_ args: [String]) async throws -> Int32 {
    let help = """
        Usage: nexjobs privacy <list|show|retry|request|download> ...

          privacy list [--open] [--overdue] [--limit N] [--json]
              requests, oldest due first. --open: pending, running or failed (not yet answered);
              --overdue: open and past due_at (requested_at + 30 days). N in 1...10000, default 100.
          privacy show ID [--json]     one request with its status history (privacy_audit)
          privacy retry ID             a failed request goes back to pending; the scheduler runs it again
          privacy request --org ID [--user ID] --kind K [--json]
              records a request (e.g. one that arrived by email); K is one of
              export, erase, restrict, lift_restriction, object. Without --user it concerns the organization.
              Prints the new request's id.
          privacy download ID > FILE   streams a completed export to standard output: NDJSON, a header line
              then one {"category": ..., "row": {...}} line per row. Exit 3 when the request does not exist, is
              not an export or is not completed (yet, or failed); 1 when the database or the output fails.

        IDs are integers in 1...9223372036854775807. Exit codes: 0 ok, 1 database failure, 2 invalid input
        (nothing changed), 3 request/organization/user not found or request not in a state that allows it.
        """
    let a = try Arguments(args, valued: ["limit", "org", "user", "kind"], flags: ["open", "overdue", "json"])
    if a.wantsHelp || a.positionals.isEmpty {
        print(help)
        return a.wantsHelp ? Exit.ok : Exit.usage
    }
    let command = a.positionals[0]
    func onlyFor(_ allowed: Set<String>, _ names: [String]) throws {
        for n in names where !allowed.contains(command) && (a.options[n] != nil || a.flag(n)) {
            throw UsageError("--\(n) does not apply to 'privacy \(command)'")
        }
    }
    try onlyFor(["list"], ["limit", "open", "overdue"])
    try onlyFor(["request"], ["org", "user", "kind"])
    func requestID() throws -> Int64 {
        guard a.positionals.count == 2 else { throw UsageError("privacy \(command) needs exactly one ID") }
        return try parsePrivacyID(a.positionals[1], name: "request id")
    }
    switch command {
    case "list":
        guard a.positionals.count == 1 else { throw UsageError("privacy list takes no positional arguments") }
        let limit = try a.int("limit", range: 1...10_000) ?? 100
        let open = a.flag("open") || a.flag("overdue")
        let overdue = a.flag("overdue")
        let pool = try openPool(maxConnections: 1)
        let rows = try await pool.query(
            """
            \(unsafeSQL: privacySelect)
             WHERE (NOT \(open) OR r.status IN ('pending', 'running', 'failed'))
               AND (NOT \(overdue) OR r.due_at < now())
             ORDER BY r.due_at, r.id LIMIT \(limit)
            """)
        let list = try rows.map(PrivacyRow.init)
        await pool.close()
        if a.flag("json") {
            print(JSONOut.array(list.map(\.json)).text)
        } else {
            print(
                pad("ID", 8) + pad("KIND", 18) + pad("STATUS", 11) + pad("ORG", 8) + pad("USER", 8)
                    + pad("DUE", 22) + "ERROR")
            for r in list {
                print(
                    pad(String(r.id), 8) + pad(r.kind, 18) + pad(r.status, 11) + pad(String(r.org), 8)
                        + pad(r.user.map(String.init) ?? "-", 8) + pad(r.due + (r.overdue ? "!" : ""), 22)
                        + (r.error ?? ""))
            }
        }
        return Exit.ok
    case "show":
        let id = try requestID()
        let pool = try openPool(maxConnections: 1)
        guard let row = try await pool.query("\(unsafeSQL: privacySelect) WHERE r.id = \(id)").first else {
            await pool.close()
            printErr("error: privacy request \(id) not found")
            return Exit.notFound
        }
        let r = try PrivacyRow(row)
        let history = try await pool.query(
            """
            SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), action, details::text
              FROM nexcomet.privacy_audit WHERE request_id = \(id) ORDER BY at, id
            """
        ).map { (try $0.decode(0) as String, try $0.decode(1) as String, try $0.decode(2) as String) }
        await pool.close()
        if a.flag("json") {
            var o = r.fields
            o.append(
                (
                    "history",
                    .array(
                        history.map {
                            .object([
                                ("at", .string($0.0)), ("action", .string($0.1)),
                                ("details", .raw($0.2)),
                            ])
                        })
                ))
            print(JSONOut.object(o).text)
        } else {
            for (k, v) in r.fields {
                print(pad(k + ":", 16) + (v.text.hasPrefix("\"") ? String(v.text.dropFirst().dropLast()) : v.text))
            }
            print("history:")
            for h in history { print("  \(h.0)  \(h.1)  \(h.2)") }
        }
        return Exit.ok
    case "download":
        let id = try requestID()
        let pool = try openPool(maxConnections: 1)
        // A closed reader (`| head`) is a failed write (exit 1), not a SIGPIPE death.
        signal(SIGPIPE, SIG_IGN)
        let out = FileHandle.standardOutput
        let result: Result<Int64, PrivacyExport.Unavailable>
        do {
            result = try await PrivacyExport.stream(id, pool: pool) { body in
                try out.write(contentsOf: Data(body.utf8))
            }
        } catch {
            await pool.close()
            throw error
        }
        await pool.close()
        switch result {
        case .success:
            return Exit.ok
        case .failure(.notFound):
            printErr("error: privacy request \(id) not found")
        case .failure(.notAnExport(let kind)):
            printErr("error: privacy request \(id) is a '\(kind)' request, not an export")
        case .failure(.notCompleted(let status)):
            printErr("error: privacy request \(id) is \(status); only a completed export can be downloaded")
        }
        return Exit.notFound
    case "retry":
        let id = try requestID()
        let pool = try openPool(maxConnections: 1)
        let before = try await PrivacyRequests.retry(id, pool: pool)
        await pool.close()
        guard let before else {
            printErr("error: privacy request \(id) not found")
            return Exit.notFound
        }
        guard before == "failed" else {
            printErr("error: privacy request \(id) is \(before); only a failed request can be retried")
            return Exit.notFound
        }
        print("privacy request \(id) is pending again")
        return Exit.ok
    case "request":
        guard a.positionals.count == 1 else { throw UsageError("privacy request takes no positional arguments") }
        guard let orgText = a.options["org"] else { throw UsageError("privacy request needs --org ID") }
        let org = try parsePrivacyID(orgText, name: "--org")
        let user = try a.options["user"].map { try parsePrivacyID($0, name: "--user") }
        guard let kind = a.options["kind"] else { throw UsageError("privacy request needs --kind K") }
        guard PrivacyRequests.kinds.contains(kind) else {
            throw UsageError("--kind must be one of \(PrivacyRequests.kinds.joined(separator: ", ")), got '\(kind)'")
        }
        let pool = try openPool(maxConnections: 1)
        let outcome: Result<Int64, PrivacyRefusal> = try await pool.withTransaction { c in
            guard
                let deleted: Bool = try await c.query(
                    "SELECT deleted_at IS NOT NULL FROM nexcomet.organizations WHERE id = \(org) FOR SHARE"
                ).first?.decode(0)
            else { return .failure(PrivacyRefusal(message: "organization \(org) not found")) }
            if deleted && kind != "export" && kind != "erase" {
                return .failure(PrivacyRefusal(message: "organization \(org) is deleted; only export and erase apply"))
            }
            if let user {
                guard
                    let owner: Int64 = try await c.query(
                        "SELECT organization_id FROM nexcomet.users WHERE id = \(user)"
                    ).first?.decode(0)
                else { return .failure(PrivacyRefusal(message: "user \(user) not found")) }
                guard owner == org else {
                    return .failure(PrivacyRefusal(message: "user \(user) does not belong to organization \(org)"))
                }
            }
            let id: Int64 = try await c.query(
                """
                INSERT INTO nexcomet.privacy_requests (organization_id, user_id, kind)
                VALUES (\(org), \(user), \(kind)) RETURNING id
                """
            ).first!.decode(0)
            return .success(id)
        }
        await pool.close()
        switch outcome {
        case .failure(let refusal):
            printErr("error: \(refusal.message)")
            return Exit.notFound
        case .success(let id):
            print(a.flag("json") ? JSONOut.object([("id", .int(id))]).text : String(id))
            return Exit.ok
        }
    default:
        throw UsageError("unknown privacy command '\(command)' (list, show, retry, request, download)")
    }
}

/// Why `privacy request` records nothing (exit 3).
struct PrivacyRefusal: Error { var message: String }

/// A positive 64-bit id; anything else is a usage error naming the flag and the range.
func parsePrivacyID(_ text: String, name: String) throws -> Int64 {
    guard let v = Int64(text), v >= 1 else {
        throw UsageError("\(name) must be an integer in 1...\(Int64.max), got '\(text)'")
    }
    return v
}

/// The `privacy_requests` columns shown; never the export payload itself (only its size).
let privacySelect = """
    SELECT r.id, r.kind, r.status, r.organization_id, r.user_id,
           to_char(r.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           to_char(r.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           to_char(r.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           r.error, r.status IN ('pending', 'running', 'failed') AND r.due_at < now(),
           coalesce(octet_length(r.result::text), 0)::bigint
      FROM nexcomet.privacy_requests r
    """

struct PrivacyRow {
    var id: Int64, kind: String, status: String, org: Int64, user: Int64?
    var requested: String, due: String, completed: String?, error: String?, overdue: Bool, resultBytes: Int64

    init(_ r: PGRow) throws {
        id = try r.decode(0)
        kind = try r.decode(1)
        status = try r.decode(2)
        org = try r.decode(3)
        user = try r.decode(4)
        requested = try r.decode(5)
        due = try r.decode(6)
        completed = try r.decode(7)
        error = try r.decode(8)
        overdue = try r.decode(9)
        resultBytes = try r.decode(10)
    }

    var fields: [(String, JSONOut)] {
        [
            ("id", .int(id)), ("kind", .string(kind)), ("status", .string(status)), ("organization_id", .int(org)),
            ("user_id", user.map { .int($0) } ?? .null), ("requested_at", .string(requested)), ("due_at", .string(due)),
            ("completed_at", completed.map { .string($0) } ?? .null), ("error", error.map { .string($0) } ?? .null),
            ("overdue", .bool(overdue)), ("result_bytes", .int(resultBytes)),
        ]
    }

    var json: JSONOut { .object(fields) }
}

/// Lines for `nexjobs stats`: open privacy requests and their deadlines.
func privacyStats(_ pool: PGPool) async throws -> (text: String, json: JSONOut) {
    let d = try await PrivacyDeadlines.load(on: pool)
    let open = d.openByKind.reduce(Int64(0)) { $0 + $1.count }
    let text =
        "privacy requests: \(open) open (" + d.openByKind.map { "\($0.kind) \($0.count)" }.joined(separator: ", ")
        + "), \(d.overdue) overdue, oldest open \(String(format: "%.1f", d.oldestOpenAgeSeconds / 86400)) days"
    let json = JSONOut.object([
        ("open", .object(d.openByKind.map { ($0.kind, .int($0.count)) })), ("overdue", .int(d.overdue)),
        ("oldest_open_age_seconds", .double(d.oldestOpenAgeSeconds)),
    ])
    return (text, json)
}
