import Foundation
import HTTP
import Postgres

/// HTML output of the console. Every value that reaches a page goes through `h` (the one escaper); pages carry
/// no script at all and are sent with a CSP that forbids scripts, inline styles, framing and foreign forms.
enum HTML {
    /// Escapes text for HTML element content and double- or single-quoted attribute values.
    static func h(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func h(_ value: Int64) -> String { String(value) }
    static func h(_ value: Int) -> String { String(value) }
    static func h(_ date: Date?) -> String { date.map { h(PGTimestamp.format($0)) } ?? "-" }

    /// A URL query string from name/value pairs (values percent-encoded; escape the result with `h` in HTML).
    static func query(_ pairs: [(String, String?)]) -> String {
        let parts = pairs.compactMap { name, value in
            value.flatMap { $0.isEmpty ? nil : name + "=" + URLEncoding.percentEncode($0) }
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    static let csp =
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// Headers every console response carries.
    static func secure(_ response: HTTPResponse) -> HTTPResponse {
        var r = response
        r.headers["Content-Security-Policy"] = csp
        r.headers["X-Content-Type-Options"] = "nosniff"
        r.headers["Referrer-Policy"] = "no-referrer"
        r.headers["X-Frame-Options"] = "DENY"
        r.headers["Cache-Control"] = "no-store"
        return r
    }

    /// A full page. `body` must already be escaped HTML; `operatorName` shows the navigation and logout form.
    static func page(
        _ title: String, _ body: String, status: Int = 200, session: ConsoleSession? = nil
    ) -> HTTPResponse {
        var nav = ""
        if let session {
            nav = """
                <nav><a href="/">Overview</a> <a href="/jobs">Jobs</a> <a href="/schedules">Schedules</a> \
                <a href="/connections">Connections</a> <a href="/privacy">Privacy</a>
                <form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="\(h(session.csrf))">\
                <span class="who">operator \(h(session.operatorName))</span> <button type="submit">Log out</button></form></nav>
                """
        }
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>\(h(title)) · NexJobs</title>
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <link rel="stylesheet" href="/console.css"></head>
            <body><header><span class="brand">NexJobs</span>\(nav)</header>
            <main><h1>\(h(title))</h1>
            \(body)
            </main></body></html>
            """
        return secure(.text(html, status: status, contentType: "text/html; charset=utf-8"))
    }

    /// A 4xx/5xx page with a message (escaped here).
    static func error(_ status: Int, _ message: String, session: ConsoleSession? = nil) -> HTTPResponse {
        page(
            "\(status) \(HTTPResponse.reasonPhrase(status))", "<p class=\"error\">\(h(message))</p>", status: status,
            session: session)
    }

    static func redirect(_ location: String, status: Int = 302) -> HTTPResponse {
        var r = HTTPResponse(status: status)
        r.headers["Location"] = location
        return secure(r)
    }

    /// A table: `head` are column titles (escaped here); `rows` are cells of escaped HTML.
    static func table(_ head: [String], _ rows: [[String]], rowClasses: [String?]? = nil, empty: String = "none")
        -> String
    {
        guard !rows.isEmpty else { return "<p class=\"empty\">\(h(empty))</p>" }
        var out = "<table><thead><tr>" + head.map { "<th>\(h($0))</th>" }.joined() + "</tr></thead><tbody>"
        for (i, row) in rows.enumerated() {
            let cls = rowClasses?[i].map { " class=\"\(h($0))\"" } ?? ""
            out += "<tr\(cls)>" + row.map { "<td>\($0)</td>" }.joined() + "</tr>"
        }
        return out + "</tbody></table>"
    }

    static let css = """
        :root { --fg: #1d2330; --muted: #5d6678; --line: #d9dde5; --bg: #f6f7f9; --accent: #2454c5; --bad: #b3261e; --warn: #8a5a00; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
        header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #111a2e; color: #fff; flex-wrap: wrap; }
        header a { color: #cfe0ff; text-decoration: none; margin-right: 14px; }
        header a:hover { text-decoration: underline; }
        .brand { font-weight: 700; letter-spacing: .02em; }
        nav { display: flex; align-items: center; flex: 1; flex-wrap: wrap; }
        .logout { margin-left: auto; display: flex; align-items: center; gap: 8px; }
        .who { color: #aab6cc; font-size: 12px; }
        main { padding: 16px 24px 40px; max-width: 1400px; }
        h1 { font-size: 20px; margin: 4px 0 14px; }
        h2 { font-size: 16px; margin: 22px 0 8px; }
        table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
        th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: #eef1f6; font-weight: 600; font-size: 12px; color: var(--muted); }
        td { word-break: break-word; }
        pre { background: #fff; border: 1px solid var(--line); padding: 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
        a { color: var(--accent); }
        .error { color: var(--bad); font-weight: 600; }
        .empty { color: var(--muted); }
        .state { display: inline-block; padding: 0 6px; border-radius: 3px; background: #e8ebf1; font-size: 12px; }
        .state-failed, .overdue td:first-child, .bad { color: var(--bad); }
        .state-completed { color: #1f7a35; }
        .state-running { color: var(--accent); }
        tr.overdue { background: #fde8e6; }
        tr.soon { background: #fff4d6; }
        .filters, .actions, .confirm { display: flex; gap: 8px; align-items: end; flex-wrap: wrap; margin: 8px 0 14px; background: #fff; border: 1px solid var(--line); padding: 10px; }
        label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
        label.check { flex-direction: row; align-items: center; gap: 4px; }
        input, select, button { font: inherit; padding: 3px 6px; }
        button { cursor: pointer; }
        .reasons li { margin: 3px 0; }
        .code { font-family: ui-monospace, monospace; font-size: 12px; color: var(--muted); }
        .login { max-width: 380px; margin: 60px auto; background: #fff; border: 1px solid var(--line); padding: 20px; }
        .login label { margin-bottom: 10px; }
        .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; background: #fff; border: 1px solid var(--line); padding: 10px; }
        dt { color: var(--muted); }
        dd { margin: 0; }
        .pager { margin: 10px 0; }
        """
}
