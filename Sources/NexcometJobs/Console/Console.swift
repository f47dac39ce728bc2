import Foundation
import HTTP
import Logs
import Postgres
import Privacy
import Queue
import Runtime

/// The operator console: server-rendered HTML pages, no JavaScript, served by `nexjobs serve`.
///
/// Routes: `GET /` overview, `GET /jobs` (filters `state`, `kind`, `queue`, `id`, keyset page `before`),
/// `GET /jobs/:id`, `POST /jobs/:id/{retry,cancel,discard,run-now}`, `POST /jobs/bulk` (same actions over a
/// filter), `GET /schedules`, `POST /schedules/:name/{enable,disable}`, `GET /connections`, `GET /privacy`,
/// `GET|POST /login`, `POST /logout`, `GET /console.css`. Every POST needs the session's CSRF token and
/// `confirm=yes`; every action is written to `nexjobs.operator_audit`.
public struct Console: Sendable {
    public var pool: PGPool
    public var access: ConsoleAccess?
    public var logger: Logger
    /// Most jobs one bulk action touches (newest first); repeat the action for more.
    public static let bulkLimit = 1000
    static let pageSize = 50

    public init(pool: PGPool, access: ConsoleAccess?, logger: Logger) {
        self.pool = pool
        self.access = access
        self.logger = logger
    }

    /// Adds the console's routes to `router`.
    public func register(on r: Router) {
        r.add("GET", "/console.css") { _ in
            HTML.secure(.text(HTML.css, contentType: "text/css; charset=utf-8"))
        }
        r.add("GET", "/login") { req in await self.loginForm(req) }
        r.add("POST", "/login") { req in await self.login(req) }
        r.add("POST", "/logout") { req in await self.guarded(req, post: true) { s, f in await self.logout(req, s, f) } }
        r.add("GET", "/") { req in await self.guarded(req) { s, _ in try await self.overview(s) } }
        r.add("GET", "/jobs") { req in await self.guarded(req) { s, _ in try await self.jobs(req, s) } }
        r.add("POST", "/jobs/bulk") { req in await self.guarded(req, post: true) { s, f in try await self.bulk(s, f) } }
        r.add("GET", "/jobs/:id") { req in await self.guarded(req) { s, _ in try await self.job(req, s) } }
        r.add("POST", "/jobs/:id/:action") { req in
            await self.guarded(req, post: true) { s, f in try await self.jobAction(req, s, f) }
        }
        r.add("GET", "/schedules") { req in await self.guarded(req) { s, _ in try await self.schedules(s) } }
        r.add("POST", "/schedules/:name/:action") { req in
            await self.guarded(req, post: true) { s, f in try await self.scheduleToggle(req, s, f) }
        }
        r.add("GET", "/connections") { req in await self.guarded(req) { s, _ in try await self.connections(s) } }
        r.add("GET", "/privacy") { req in await self.guarded(req) { s, _ in try await self.privacy(s) } }
    }

    // MARK: access

    /// Runs `body` for a logged-in operator. GET without a session redirects to /login; POST without a session
    /// answers 401, with a wrong or missing CSRF token 403. Errors become 503 pages (details only in the log).
    func guarded(
        _ req: HTTPRequest, post: Bool = false,
        _ body: (ConsoleSession, [String: String]) async throws -> HTTPResponse
    ) async -> HTTPResponse {
        guard let access else {
            return HTML.error(503, "The console is disabled: set NEXJOBS_CONSOLE_TOKENS.")
        }
        do {
            guard let session = try await access.session(req, pool: pool) else {
                return post
                    ? HTML.error(401, "Your session has expired or you are not logged in. Log in again at /login.")
                    : HTML.redirect("/login")
            }
            var form: [String: String] = [:]
            if post {
                form = req.formBody
                guard let given = form["csrf"],
                    constantTimeEquals(Array(given.utf8), Array(session.csrf.utf8))
                else {
                    return HTML.error(
                        403,
                        "The form's CSRF token is missing or stale (from another session). Reload the page and try again.",
                        session: session)
                }
            }
            return try await body(session, form)
        } catch let e as ConsoleInputError {
            return HTML.error(e.status, e.message)
        } catch {
            logger.warning("console request failed", ("path", req.path), ("error", "\(error)"))
            return HTML.error(503, "The database is unavailable or the request failed; see the server log.")
        }
    }

    func loginForm(_ req: HTTPRequest, message: String? = nil, status: Int = 200) async -> HTTPResponse {
        let note = message.map { "<p class=\"error\">\(HTML.h($0))</p>" } ?? ""
        let disabled =
            access == nil ? "<p class=\"error\">The console is disabled: set NEXJOBS_CONSOLE_TOKENS.</p>" : ""
        return HTML.page(
            "Log in",
            """
            <form method="post" action="/login" class="login">\(disabled)\(note)
            <label>Operator token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
            <button type="submit">Log in</button></form>
            """, status: status)
    }

    func login(_ req: HTTPRequest) async -> HTTPResponse {
        guard let access else { return await loginForm(req, message: "The console is disabled.", status: 503) }
        do {
            // The host without the port: every new connection has a port of its own.
            let (admitted, retryAfter) = try await access.admitLogin(from: req.clientAddress, pool: pool)
            guard admitted else {
                logger.info("console login throttled", ("remote", req.clientAddress))
                var r = await loginForm(
                    req, message: "Too many login attempts from your address; try again in \(retryAfter) s.",
                    status: 429)
                r.headers["Retry-After"] = "\(retryAfter)"
                return r
            }
        } catch {
            logger.warning("console login failed", ("error", "\(error)"))
            return HTML.error(503, "The database is unavailable.")
        }
        let token = req.formBody["token"] ?? ""
        guard let who = access.check(token: token) else {
            logger.info("console login refused", ("remote", req.remoteAddress))
            return await loginForm(req, message: "Unknown token.", status: 401)
        }
        do {
            let cookie = try await access.createSession(operatorName: who, request: req, pool: pool)
            try await audit(who, "login", ids: [], filter: nil, target: nil, count: 0)
            logger.info("console login", ("operator", who))
            var r = HTML.redirect("/")
            r.headers["Set-Cookie"] = cookie
            return r
        } catch {
            logger.warning("console login failed", ("error", "\(error)"))
            return HTML.error(503, "The database is unavailable.")
        }
    }

    func logout(_ req: HTTPRequest, _ s: ConsoleSession, _ form: [String: String]) async -> HTTPResponse {
        try? await access?.deleteSession(req, pool: pool)
        try? await audit(s.operatorName, "logout", ids: [], filter: nil, target: nil, count: 0)
        var r = HTML.redirect("/login")
        r.headers["Set-Cookie"] = access?.cookie("", maxAge: 0, request: req)
        return r
    }

    func audit(
        _ who: String, _ action: String, ids: [Int64], filter: String?, target: String?, count: Int,
        on c: PGConnection? = nil
    )
        async throws
    {
        let filterJSON: PGJSON? = filter.map { PGJSON($0) }
        let q: PGQuery = """
            INSERT INTO nexjobs.operator_audit (operator, action, job_ids, filter, target, count)
            VALUES (\(who), \(action), \(ids)::bigint[], \(filterJSON)::jsonb, \(target), \(count))
            """
        if let c { try await c.execute(q) } else { try await pool.execute(q) }
    }

    // MARK: overview

    func overview(_ s: ConsoleSession) async throws -> HTTPResponse {
        let states = ["available", "running", "retryable", "completed", "failed", "cancelled"]
        var queues: [String: [String: Int64]] = [:]
        for r in try await pool.query("SELECT queue, state, count(*)::bigint FROM nexjobs.jobs GROUP BY 1, 2") {
            queues[try r.decode(0), default: [:]][try r.decode(1)] = try r.decode(2)
        }
        var rates: [String: (Double, Double)] = [:]
        for r in try await pool.query(
            """
            SELECT queue, count(*) FILTER (WHERE state = 'completed') / 60.0, count(*) FILTER (WHERE state = 'failed') / 60.0
              FROM nexjobs.jobs WHERE state IN ('completed', 'failed', 'cancelled') AND finished_at > now() - interval '1 hour'
             GROUP BY 1
            """)
        {
            rates[try r.decode(0)] = (try r.decode(1), try r.decode(2))
        }
        var oldest: [String: Double] = [:]
        for r in try await pool.query(
            """
            SELECT queue, extract(epoch FROM now() - min(run_at))::float8 FROM nexjobs.jobs
             WHERE state IN ('available', 'retryable') AND run_at <= now() GROUP BY 1
            """)
        {
            oldest[try r.decode(0)] = try r.decode(1)
        }
        let names = Set(queues.keys).union(rates.keys).sorted()
        let queueRows: [[String]] = names.map { q in
            [
                "<a href=\"/jobs\(HTML.h(HTML.query([("queue", q)])))\">\(HTML.h(q))</a>"
            ]
                + states.map { st in
                    let n = queues[q]?[st] ?? 0
                    return n == 0
                        ? "0" : "<a href=\"/jobs\(HTML.h(HTML.query([("queue", q), ("state", st)])))\">\(n)</a>"
                } + [
                    HTML.h(String(format: "%.2f", rates[q]?.0 ?? 0)), HTML.h(String(format: "%.2f", rates[q]?.1 ?? 0)),
                    oldest[q].map { HTML.h(Self.age($0)) } ?? "-",
                ]
        }
        let workers = try await pool.query(
            """
            SELECT w.id, w.host, w.pid, array_to_string(w.queues, ', '), w.concurrency, w.heartbeat_at, w.started_at,
                   (SELECT count(*) FROM nexjobs.jobs j WHERE j.state = 'running' AND j.locked_by = w.id)
              FROM nexjobs.workers w WHERE w.lease_until > now() ORDER BY w.started_at
            """
        ).map { r -> [String] in
            let inFlight: Int64 = try r.decode(7)
            return [
                HTML.h(try r.decode(0, as: String.self)), HTML.h(try r.decode(1, as: String.self)),
                HTML.h(try r.decode(2, as: Int.self)), HTML.h(try r.decode(3, as: String.self)),
                HTML.h(try r.decode(4, as: Int.self)), HTML.h(inFlight), HTML.h(try r.decode(5, as: Date.self)),
                HTML.h(try r.decode(6, as: Date.self)),
            ]
        }
        let leaders = try await pool.query(
            "SELECT name, holder, term_until, elected_at FROM nexjobs.leader WHERE term_until > now() ORDER BY name"
        ).map { r -> [String] in
            [
                HTML.h(try r.decode(0, as: String.self)), HTML.h(try r.decode(1, as: String.self)),
                HTML.h(try r.decode(3, as: Date.self)), HTML.h(try r.decode(2, as: Date.self)),
            ]
        }
        let failing = try await pool.query(
            """
            SELECT kind, count(*) FILTER (WHERE state = 'failed'), count(*) FILTER (WHERE state = 'retryable'),
                   max(finished_at) FILTER (WHERE state = 'failed')
              FROM nexjobs.jobs
             WHERE (state = 'failed' AND finished_at > now() - interval '24 hours') OR state = 'retryable'
             GROUP BY kind ORDER BY 2 DESC, 3 DESC LIMIT 50
            """
        ).map { r -> [String] in
            let kind: String = try r.decode(0)
            let failed: Int64 = try r.decode(1)
            return [
                "<a href=\"/jobs\(HTML.h(HTML.query([("kind", kind), ("state", "failed")])))\">\(HTML.h(kind))</a>",
                HTML.h(failed), HTML.h(try r.decode(2, as: Int64.self)), HTML.h(try r.decode(3, as: Date?.self)),
            ]
        }
        let body = """
            <h2>Queues</h2>
            \(HTML.table(["queue"] + states + ["completed/min (1 h)", "failed/min (1 h)", "oldest available"], queueRows, empty: "No jobs."))
            <h2>Workers alive</h2>
            \(HTML.table(["worker", "host", "pid", "queues", "concurrency", "in flight", "heartbeat", "started"], workers, empty: "No live worker."))
            <h2>Scheduler leader</h2>
            \(HTML.table(["role", "holder", "elected", "term until"], leaders, empty: "No leader holds a live term."))
            <h2>Failing kinds (failed in the last 24 h, or retrying now)</h2>
            \(HTML.table(["kind", "failed (24 h)", "retrying", "last failure"], failing, empty: "Nothing is failing."))
            """
        return HTML.page("Overview", body, session: s)
    }

    static func age(_ seconds: Double) -> String {
        let s = Int(max(0, min(seconds, 9e15)))
        if s < 120 { return "\(s) s" }
        if s < 7200 { return "\(s / 60) min" }
        if s < 172_800 { return "\(s / 3600) h" }
        return "\(s / 86400) d"
    }

    // MARK: jobs

    func jobs(_ req: HTTPRequest, _ s: ConsoleSession) async throws -> HTTPResponse {
        if let idText = req.query["id"], !idText.isEmpty {
            guard let id = Int64(idText), id > 0 else {
                throw ConsoleInputError(400, "A job id is a positive integer, got '\(idText)'.")
            }
            return HTML.redirect("/jobs/\(id)")
        }
        let filter = try JobFilter(req.query)
        let rows = try await pool.query(filter.listQuery(limit: Self.pageSize + 1))
        var cells: [[String]] = []
        var lastID: Int64?
        for (i, r) in rows.enumerated() where i < Self.pageSize {
            let id: Int64 = try r.decode(0)
            let state: String = try r.decode(3)
            lastID = id
            cells.append([
                "<a href=\"/jobs/\(id)\">\(id)</a>", HTML.h(try r.decode(1, as: String.self)),
                HTML.h(try r.decode(2, as: String.self)),
                "<span class=\"state state-\(HTML.h(state))\">\(HTML.h(state))</span>",
                "\(try r.decode(4, as: Int.self))/\(try r.decode(5, as: Int.self))",
                HTML.h(try r.decode(6, as: Date.self)),
                HTML.h(try r.decode(7, as: Date.self)), HTML.h(try r.decode(8, as: Date?.self)),
            ])
        }
        let stateOptions = ([""] + JobState.allCases.map(\.rawValue)).map { st in
            "<option value=\"\(HTML.h(st))\"\(st == (filter.state ?? "") ? " selected" : "")>\(st.isEmpty ? "any" : HTML.h(st))</option>"
        }.joined()
        var pager = ""
        if rows.count > Self.pageSize, let lastID {
            pager =
                "<p class=\"pager\"><a href=\"/jobs\(HTML.h(HTML.query(filter.pairs + [("before", String(lastID))])))\">Older jobs &rarr;</a></p>"
        }
        let hidden = filter.pairs.map {
            "<input type=\"hidden\" name=\"\(HTML.h($0.0))\" value=\"\(HTML.h($0.1 ?? ""))\">"
        }.joined()
        let body = """
            <form method="get" action="/jobs" class="filters">
            <label>State <select name="state">\(stateOptions)</select></label>
            <label>Kind <input name="kind" value="\(HTML.h(filter.kind ?? ""))" size="18"></label>
            <label>Queue <input name="queue" value="\(HTML.h(filter.queue ?? ""))" size="12"></label>
            <button type="submit">Filter</button>
            </form>
            <form method="get" action="/jobs" class="filters"><label>Job id <input name="id" inputmode="numeric" size="12"></label>
            <button type="submit">Open</button></form>
            \(HTML.table(["id", "kind", "queue", "state", "attempt", "run at", "created", "finished"], cells, empty: "No job matches."))
            \(pager)
            <h2>Bulk action over this filter</h2>
            <form method="post" action="/jobs/bulk" class="actions">
            <input type="hidden" name="csrf" value="\(HTML.h(s.csrf))">\(hidden)
            <label>Action <select name="action"><option value="retry">retry</option><option value="cancel">cancel</option>
            <option value="discard">discard</option><option value="run-now">run now</option></select></label>
            <label class="check"><input type="checkbox" name="confirm" value="yes" required> I confirm: apply to up to \(Self.bulkLimit) matching jobs (newest first)</label>
            <button type="submit">Apply</button></form>
            <p class="empty">A bulk action needs a state filter.</p>
            """
        return HTML.page("Jobs", body, session: s)
    }

    func job(_ req: HTTPRequest, _ s: ConsoleSession) async throws -> HTTPResponse {
        let id = try Self.jobID(req)
        guard
            let r = try await pool.query(
                """
                SELECT kind, queue, state, args::text, priority, attempt, max_attempts, run_at, unique_key, locked_by,
                       created_at, attempted_at, finished_at, errors::text, snoozes
                  FROM nexjobs.jobs WHERE id = \(id)
                """
            ).first
        else { throw ConsoleInputError(404, "No job has id \(id).") }
        let state: String = try r.decode(2)
        let attempt: Int = try r.decode(5)
        let created: Date = try r.decode(10)
        let attemptedAt: Date? = try r.decode(11)
        let finishedAt: Date? = try r.decode(12)
        let errors = Self.errorEntries(try r.decode(13))
        let why = try await JobWhy.explain(id, on: pool)

        var timeline: [[String]] = [["enqueued", HTML.h(created), ""]]
        for e in errors {
            timeline.append(["attempt \(HTML.h(e.attempt)) failed", HTML.h(e.at), HTML.h(e.error)])
        }
        if let attemptedAt, attempt > 0, !errors.contains(where: { $0.attempt == attempt }) || state == "running" {
            timeline.append(["attempt \(attempt) started", HTML.h(attemptedAt), state == "running" ? "running" : ""])
        }
        if let finishedAt, ["completed", "failed", "cancelled"].contains(state) {
            timeline.append([
                "<span class=\"state state-\(HTML.h(state))\">\(HTML.h(state))</span>", HTML.h(finishedAt), "",
            ])
        } else if state == "available" || state == "retryable" {
            timeline.append(["waiting (\(HTML.h(state)))", "runs at " + HTML.h(try r.decode(7, as: Date.self)), ""])
        }
        let errorRows = errors.map { e in
            [HTML.h(e.attempt), HTML.h(e.at), HTML.h(e.worker), "<pre>\(HTML.h(e.error))</pre>"]
        }
        let reasons = (why?.reasons ?? []).map {
            "<li><span class=\"code\">\(HTML.h($0.code))</span> \(HTML.h($0.text))</li>"
        }.joined()
        let actions = ["retry", "cancel", "discard", "run-now"].map { a in
            """
            <form method="post" action="/jobs/\(id)/\(a)" class="actions">
            <input type="hidden" name="csrf" value="\(HTML.h(s.csrf))">
            <label class="check"><input type="checkbox" name="confirm" value="yes" required> confirm</label>
            <button type="submit">\(HTML.h(a == "run-now" ? "Run now" : a.capitalized))</button></form>
            """
        }.joined()
        let body = """
            <div class="grid"><div>
            <dl><dt>kind</dt><dd>\(HTML.h(try r.decode(0, as: String.self)))</dd>
            <dt>queue</dt><dd>\(HTML.h(try r.decode(1, as: String.self)))</dd>
            <dt>state</dt><dd><span class="state state-\(HTML.h(state))">\(HTML.h(state))</span></dd>
            <dt>priority</dt><dd>\(HTML.h(try r.decode(4, as: Int.self)))</dd>
            <dt>attempt</dt><dd>\(attempt) of \(HTML.h(try r.decode(6, as: Int.self)))</dd>
            <dt>snoozed</dt><dd>\(HTML.h(try r.decode(14, as: Int.self))) times</dd>
            <dt>run at</dt><dd>\(HTML.h(try r.decode(7, as: Date.self)))</dd>
            <dt>unique key</dt><dd>\(HTML.h(try r.decode(8, as: String?.self) ?? "-"))</dd>
            <dt>locked by</dt><dd>\(HTML.h(try r.decode(9, as: String?.self) ?? "-"))</dd></dl>
            <h2>Why is this job not running?</h2><ul class="reasons">\(reasons)</ul>
            <h2>Actions</h2>\(actions)
            </div><div>
            <h2>Args (secret-looking keys redacted)</h2><pre>\(HTML.h(Redaction.redactedJSON(try r.decode(3))))</pre>
            <h2>Timeline</h2>\(HTML.table(["event", "at", "detail"], timeline))
            <h2>Errors (one per failed attempt)</h2>\(HTML.table(["attempt", "at", "worker", "error"], errorRows, empty: "No errors."))
            </div></div>
            """
        return HTML.page("Job \(id)", body, session: s)
    }

    struct ErrorEntry {
        var attempt: Int64
        var at: String
        var error: String
        var worker: String
    }

    static func errorEntries(_ json: String) -> [ErrorEntry] {
        guard let list = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [Any] else { return [] }
        return list.compactMap { item in
            guard let o = item as? [String: Any] else { return nil }
            let attempt = (o["attempt"] as? NSNumber).flatMap { Int64(exactly: $0.doubleValue) } ?? 0
            return ErrorEntry(
                attempt: attempt, at: "\(o["at"] ?? "")", error: Redaction.scrubText("\(o["error"] ?? "")"),
                worker: "\(o["worker"] ?? "")")
        }
    }

    static func jobID(_ req: HTTPRequest) throws -> Int64 {
        let text = req.pathParameters["id"] ?? ""
        guard let id = Int64(text), id > 0 else { throw ConsoleInputError(404, "No job has id '\(text)'.") }
        return id
    }

    // MARK: actions

    /// Confirmation: forms carry a required checkbox; a POST without `confirm=yes` gets a page to confirm on.
    func confirmPage(_ s: ConsoleSession, action: String, target: String, path: String, form: [String: String])
        -> HTTPResponse
    {
        let hidden = form.filter { $0.key != "confirm" && $0.key != "csrf" }.sorted { $0.key < $1.key }.map {
            "<input type=\"hidden\" name=\"\(HTML.h($0.key))\" value=\"\(HTML.h($0.value))\">"
        }.joined()
        return HTML.page(
            "Confirm \(action)",
            """
            <p>\(HTML.h(action)) \(HTML.h(target))?</p>
            <form method="post" action="\(HTML.h(path))" class="confirm">
            <input type="hidden" name="csrf" value="\(HTML.h(s.csrf))">\(hidden)
            <label class="check"><input type="checkbox" name="confirm" value="yes" required> I confirm</label>
            <button type="submit">\(HTML.h(action))</button></form>
            """, status: 400, session: s)
    }

    func jobAction(_ req: HTTPRequest, _ s: ConsoleSession, _ form: [String: String]) async throws -> HTTPResponse {
        let id = try Self.jobID(req)
        guard let action = JobAction(rawValue: req.pathParameters["action"] ?? "") else {
            throw ConsoleInputError(404, "Unknown action; use retry, cancel, discard or run-now.")
        }
        guard form["confirm"] == "yes" else {
            return confirmPage(
                s, action: action.rawValue, target: "job \(id)", path: "/jobs/\(id)/\(action.rawValue)", form: form)
        }
        guard
            let state: String = try await pool.query("SELECT state FROM nexjobs.jobs WHERE id = \(id)").first?.decode(0)
        else { throw ConsoleInputError(404, "No job has id \(id).") }
        let done = try await apply(action, ids: [id], operatorName: s.operatorName, filter: nil)
        guard done.count == 1 else {
            throw ConsoleInputError(
                409, "Job \(id) is \(state): \(action.rawValue) does not apply (\(action.appliesTo)).")
        }
        return HTML.redirect("/jobs/\(id)")
    }

    func bulk(_ s: ConsoleSession, _ form: [String: String]) async throws -> HTTPResponse {
        guard let action = JobAction(rawValue: form["action"] ?? "") else {
            throw ConsoleInputError(400, "action must be retry, cancel, discard or run-now.")
        }
        let filter = try JobFilter(form.filter { ["state", "kind", "queue"].contains($0.key) })
        guard filter.state != nil else { throw ConsoleInputError(400, "A bulk action needs a state filter.") }
        guard form["confirm"] == "yes" else {
            return confirmPage(
                s, action: action.rawValue, target: "up to \(Self.bulkLimit) jobs matching \(filter.summary)",
                path: "/jobs/bulk", form: form)
        }
        let ids: [Int64] = try await pool.query(filter.listQuery(limit: Self.bulkLimit, idsOnly: true)).map {
            try $0.decode(0)
        }
        let done = try await apply(action, ids: ids, operatorName: s.operatorName, filter: filter.json)
        return HTML.page(
            "Bulk \(action.rawValue)",
            "<p>\(HTML.h(action.rawValue)) applied to \(done.count) of \(ids.count) matching jobs (\(HTML.h(filter.summary))).</p>"
                + "<p><a href=\"/jobs\(HTML.h(HTML.query(filter.pairs)))\">Back to the jobs</a></p>", session: s)
    }

    enum JobAction: String {
        case retry, cancel, discard
        case runNow = "run-now"
        var appliesTo: String {
            switch self {
            case .retry: return "any job not running"
            case .cancel: return "available, retryable or running jobs"
            case .discard: return "available or retryable jobs"
            case .runNow: return "available or retryable jobs scheduled for later"
            }
        }
        var auditName: String { self == .runNow ? "run_now" : rawValue }
    }

    /// Applies `action` to `ids` in one transaction with its audit row; returns the ids it changed.
    func apply(_ action: JobAction, ids: [Int64], operatorName: String, filter: String?) async throws -> [Int64] {
        do {
            return try await pool.withTransaction { c in
                let changed: [Int64]
                switch action {
                case .retry:
                    changed = try await c.query(
                        "SELECT id FROM unnest(\(ids)::bigint[]) AS t(id) WHERE nexjobs.retry(id) ORDER BY id"
                    ).map { try $0.decode(0) }
                case .cancel:
                    changed = try await c.query(
                        "SELECT id FROM unnest(\(ids)::bigint[]) AS t(id) WHERE nexjobs.cancel(id) ORDER BY id"
                    ).map { try $0.decode(0) }
                case .discard:
                    changed = try await c.query(
                        """
                        UPDATE nexjobs.jobs SET state = 'failed', finished_at = now(), locked_by = NULL, locked_until = NULL,
                               errors = errors || jsonb_build_array(jsonb_build_object('at', now(), 'attempt', attempt,
                                   'error', 'discarded by operator ' || \(operatorName), 'worker', 'console'))
                         WHERE id = ANY(\(ids)::bigint[]) AND state IN ('available', 'retryable') RETURNING id
                        """
                    ).map { try $0.decode(0) }
                case .runNow:
                    let rows = try await c.query(
                        """
                        UPDATE nexjobs.jobs SET run_at = now()
                         WHERE id = ANY(\(ids)::bigint[]) AND state IN ('available', 'retryable') AND run_at > now()
                        RETURNING id, queue
                        """)
                    changed = try rows.map { try $0.decode(0) }
                    let queues = Array(Set(try rows.map { try $0.decode(1, as: String.self) }))
                    _ = try await c.query("SELECT pg_notify('nexjobs_jobs', q) FROM unnest(\(queues)::text[]) AS q")
                }
                try await audit(
                    operatorName, action.auditName, ids: changed, filter: filter,
                    target: filter == nil ? ids.first.map(String.init) : nil, count: changed.count, on: c)
                return changed
            }
        } catch let e as PGError where e.sqlState == "23505" {
            throw ConsoleInputError(
                409,
                "Another live job holds this job's unique key: retry refused (see \"Why is this job not running?\").")
        }
    }

    // MARK: schedules

    func schedules(_ s: ConsoleSession) async throws -> HTTPResponse {
        let rows = try await pool.query(
            """
            SELECT name, cron, timezone, kind, queue, enabled, last_fire_at, next_fire_at, last_error, failures, retry_at
              FROM nexjobs.schedules ORDER BY name
            """)
        let now = Date()
        var cells: [[String]] = []
        for r in rows {
            let name: String = try r.decode(0)
            let cron: String = try r.decode(1)
            let tz: String = try r.decode(2)
            let enabled: Bool = try r.decode(5)
            var next: [String] = []
            if let spec = try? ScheduleSpec(cron, timeZone: tz) {
                var t = now
                for _ in 0..<3 {
                    guard let n = spec.next(after: t) else { break }
                    next.append(Self.local(n, tz))
                    t = n
                }
            } else {
                next = ["cannot be computed"]
            }
            let failures: Int = try r.decode(9)
            let error: String? = try r.decode(8)
            let toggle = enabled ? "disable" : "enable"
            cells.append([
                HTML.h(name), "<span class=\"code\">\(HTML.h(cron))</span>", HTML.h(tz),
                HTML.h(try r.decode(3, as: String.self)) + " / " + HTML.h(try r.decode(4, as: String.self)),
                enabled ? "yes" : "<span class=\"bad\">no</span>", next.map(HTML.h).joined(separator: "<br>"),
                HTML.h(try r.decode(6, as: Date?.self)),
                error.map {
                    "<span class=\"bad\">\(HTML.h($0))</span><br>\(failures) failure\(failures == 1 ? "" : "s"), retry at "
                        + HTML.h(try? r.decode(10, as: Date?.self))
                } ?? "-",
                """
                <form method="post" action="/schedules/\(HTML.h(URLEncoding.percentEncode(name)))/\(toggle)">
                <input type="hidden" name="csrf" value="\(HTML.h(s.csrf))">
                <label class="check"><input type="checkbox" name="confirm" value="yes" required> confirm</label>
                <button type="submit">\(toggle.capitalized)</button></form>
                """,
            ])
        }
        return HTML.page(
            "Schedules",
            HTML.table(
                [
                    "name", "spec", "time zone", "kind / queue", "enabled", "next 3 fires (schedule's time zone)",
                    "last fire", "last error", "",
                ],
                cells, empty: "No schedules."), session: s)
    }

    static func local(_ date: Date, _ tz: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: tz) ?? TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        return f.string(from: date)
    }

    func scheduleToggle(_ req: HTTPRequest, _ s: ConsoleSession, _ form: [String: String]) async throws -> HTTPResponse
    {
        let name = req.pathParameters["name"] ?? ""
        let action = req.pathParameters["action"] ?? ""
        guard action == "enable" || action == "disable" else {
            throw ConsoleInputError(404, "Unknown schedule action; use enable or disable.")
        }
        guard CheckedInput.isQueueName(name) else {
            throw ConsoleInputError(404, "No schedule is named '\(name)'.")
        }
        guard form["confirm"] == "yes" else {
            return confirmPage(
                s, action: action, target: "schedule \(name)",
                path: "/schedules/\(URLEncoding.percentEncode(name))/\(action)", form: form)
        }
        let found = try await pool.withTransaction { c -> Bool in
            let n = try await c.execute(
                "UPDATE nexjobs.schedules SET enabled = \(action == "enable") WHERE name = \(name)")
            if n > 0 {
                try await audit(
                    s.operatorName, "schedule_\(action)", ids: [], filter: nil, target: name, count: n, on: c)
            }
            return n > 0
        }
        guard found else { throw ConsoleInputError(404, "No schedule is named '\(name)'.") }
        return HTML.redirect("/schedules")
    }

    // MARK: connections and privacy

    func connections(_ s: ConsoleSession) async throws -> HTTPResponse {
        let summary = try await pool.query(
            """
            SELECT o.id, o.name, o.processing_restricted, c.platform, c.status, count(*)::bigint,
                   max(c.last_synced_at), min(c.next_sync_at) FILTER (WHERE c.status = 'active')
              FROM nexcomet.ad_connections c JOIN nexcomet.organizations o ON o.id = c.organization_id
             GROUP BY 1, 2, 3, 4, 5 ORDER BY 2, 1, 4, 5 LIMIT 2000
            """
        ).map { r -> [String] in
            let restricted: Bool = try r.decode(2)
            return [
                "\(HTML.h(try r.decode(1, as: String.self))) <span class=\"code\">#\(try r.decode(0, as: Int64.self))</span>"
                    + (restricted ? " <span class=\"bad\">restricted</span>" : ""),
                HTML.h(try r.decode(3, as: String.self)), HTML.h(try r.decode(4, as: String.self)),
                HTML.h(try r.decode(5, as: Int64.self)), HTML.h(try r.decode(6, as: Date?.self)),
                HTML.h(try r.decode(7, as: Date?.self)),
            ]
        }
        let all = try await pool.query(
            """
            SELECT c.id, o.name, c.platform, c.status, c.last_synced_at, c.next_sync_at, c.last_error
              FROM nexcomet.ad_connections c JOIN nexcomet.organizations o ON o.id = c.organization_id
             ORDER BY o.name, c.platform, c.id LIMIT 500
            """
        ).map { r -> [String] in
            [
                HTML.h(try r.decode(0, as: Int64.self)), HTML.h(try r.decode(1, as: String.self)),
                HTML.h(try r.decode(2, as: String.self)), HTML.h(try r.decode(3, as: String.self)),
                HTML.h(try r.decode(4, as: Date?.self)), HTML.h(try r.decode(5, as: Date?.self)),
                HTML.h(Redaction.scrubText(try r.decode(6, as: String?.self) ?? "-")),
            ]
        }
        let reauth = try await pool.query(
            """
            SELECT c.id, o.name, c.platform, c.needs_reauth_at, c.last_error
              FROM nexcomet.ad_connections c JOIN nexcomet.organizations o ON o.id = c.organization_id
             WHERE c.status = 'needs_reauth' ORDER BY c.needs_reauth_at NULLS FIRST LIMIT 500
            """
        ).map { r -> [String] in
            [
                HTML.h(try r.decode(0, as: Int64.self)), HTML.h(try r.decode(1, as: String.self)),
                HTML.h(try r.decode(2, as: String.self)), HTML.h(try r.decode(3, as: Date?.self)),
                HTML.h(Redaction.scrubText(try r.decode(4, as: String?.self) ?? "-")),
            ]
        }
        let body = """
            <h2>Needs re-authorization</h2>
            \(HTML.table(["connection", "organization", "platform", "marked at", "last error"], reauth, empty: "No connection needs re-authorization."))
            <h2>By organization and platform</h2>
            \(HTML.table(["organization", "platform", "status", "connections", "last sync", "next sync"], summary, empty: "No connections."))
            <h2>Connections (first 500)</h2>
            \(HTML.table(["id", "organization", "platform", "status", "last sync", "next sync", "last error"], all, empty: "No connections."))
            """
        return HTML.page("Connections", body, session: s)
    }

    func privacy(_ s: ConsoleSession) async throws -> HTTPResponse {
        var classes: [String?] = []
        let rows = try await pool.query(
            """
            SELECT p.id, o.name, p.organization_id, p.user_id, p.kind, p.status, p.requested_at, p.due_at, p.error,
                   p.due_at < now(), p.due_at < now() + interval '10 days'
              FROM nexcomet.privacy_requests p JOIN nexcomet.organizations o ON o.id = p.organization_id
             WHERE p.status IN ('pending', 'running', 'failed') ORDER BY p.due_at NULLS LAST, p.id LIMIT 1000
            """
        ).map { r -> [String] in
            let overdue: Bool? = try r.decode(9)
            let soon: Bool? = try r.decode(10)
            classes.append(overdue == true ? "overdue" : soon == true ? "soon" : nil)
            return [
                HTML.h(try r.decode(0, as: Int64.self)),
                "\(HTML.h(try r.decode(1, as: String.self))) <span class=\"code\">#\(try r.decode(2, as: Int64.self))</span>",
                HTML.h(try r.decode(3, as: Int64?.self).map(String.init) ?? "whole organization"),
                HTML.h(try r.decode(4, as: String.self)), HTML.h(try r.decode(5, as: String.self)),
                HTML.h(try r.decode(6, as: Date.self)),
                HTML.h(try r.decode(7, as: Date?.self))
                    + (overdue == true
                        ? " <strong>overdue</strong>" : soon == true ? " <strong>due within 10 days</strong>" : ""),
                HTML.h(Redaction.scrubText(try r.decode(8, as: String?.self) ?? "-")),
            ]
        }
        let body = """
            <p>Open requests (pending, running or failed), oldest due first. Overdue rows are red, rows due within 10 days amber.</p>
            \(HTML.table(["id", "organization", "user", "kind", "status", "requested", "due", "error"], rows, rowClasses: classes, empty: "No open privacy request."))
            """
        return HTML.page("Privacy requests", body, session: s)
    }
}

/// Bad input from a request: its status (400, 404, 409) and a message shown to the operator (escaped).
struct ConsoleInputError: Error {
    var status: Int
    var message: String
    init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// The job list's filter, validated: `state` one of the job states, `kind` and `queue` as the table's CHECKs allow,
/// `before` a positive id (keyset page: jobs with a smaller id). Anything else is a 400.
struct JobFilter {
    var state: String?
    var kind: String?
    var queue: String?
    var before: Int64?

    init(state: String? = nil, kind: String? = nil, queue: String? = nil, before: Int64? = nil) {
        self.state = state
        self.kind = kind
        self.queue = queue
        self.before = before
    }

    init(_ q: [String: String]) throws {
        func value(_ name: String) -> String? { q[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let s = value("state") {
            guard JobState(rawValue: s) != nil else {
                throw ConsoleInputError(
                    400,
                    "Unknown state '\(s)'; use one of \(JobState.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            state = s
        }
        if let k = value("kind") {
            guard k.range(of: #"^[a-z][a-z0-9_.:-]{0,127}$"#, options: .regularExpression) != nil else {
                throw ConsoleInputError(
                    400, "A kind is a lowercase name like sync_ad_account (at most 128 characters).")
            }
            kind = k
        }
        if let qu = value("queue") {
            guard CheckedInput.isQueueName(qu) else {
                throw ConsoleInputError(400, "A queue is 1...128 letters, digits or _.:-")
            }
            queue = qu
        }
        if let b = value("before") {
            guard let n = Int64(b), n > 0 else { throw ConsoleInputError(400, "before must be a positive job id.") }
            before = n
        }
    }

    var pairs: [(String, String?)] { [("state", state), ("kind", kind), ("queue", queue)] }

    var summary: String {
        let parts = pairs.compactMap { k, v in v.map { "\(k)=\($0)" } }
        return parts.isEmpty ? "all jobs" : parts.joined(separator: ", ")
    }

    var json: String {
        let o = Dictionary(uniqueKeysWithValues: pairs.compactMap { k, v in v.map { (k, $0) } })
        return String(
            decoding: (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data("{}".utf8),
            as: UTF8.self)
    }

    /// Newest first, keyset-paginated by id. Uses `jobs_state_id_idx` / `jobs_kind_id_idx` or the primary key
    /// (sql/041): an index scan without a sort at any table size (ConsoleTests checks the plan).
    func listQuery(limit: Int, idsOnly: Bool = false) -> PGQuery {
        var conditions: [String] = []
        var binds: [String?] = []
        func add(_ column: String, _ value: String?) {
            guard let value else { return }
            binds.append(value)
            conditions.append("\(column) = $\(binds.count)")
        }
        add("state", state)
        add("kind", kind)
        add("queue", queue)
        if let before {
            binds.append(String(before))
            conditions.append("id < $\(binds.count)::bigint")
        }
        binds.append(String(limit))
        let columns = idsOnly ? "id" : "id, kind, queue, state, attempt, max_attempts, run_at, created_at, finished_at"
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return PGQuery(
            unsafeSQL: "SELECT \(columns) FROM nexjobs.jobs\(whereClause) ORDER BY id DESC LIMIT $\(binds.count)::int",
            binds: binds)
    }
}
