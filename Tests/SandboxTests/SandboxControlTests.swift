import Foundation
import HTTP
import XCTest

@testable import Sandbox

final class SandboxControlTests: SandboxTestCase {
    func testSameSeedSameWorldOtherSeedOtherWorld() throws {
        let a = Sandbox(config: SandboxConfig(seed: 9, today: fixedToday))
        let b = Sandbox(config: SandboxConfig(seed: 9, today: fixedToday))
        let c = Sandbox(config: SandboxConfig(seed: 10, today: fixedToday))
        XCTAssertEqual(a.connections(), b.connections())
        XCTAssertEqual(a.groundTruth(from: "2026-03-01"), b.groundTruth(from: "2026-03-01"))
        XCTAssertNotEqual(a.connections().map(\.accountIDs), c.connections().map(\.accountIDs))
        XCTAssertNotEqual(a.accountTotals().map(\.spend), c.accountTotals().map(\.spend))
    }

    func testConversionsRestateAsTheClockAdvances() throws {
        let s = Sandbox(config: SandboxConfig(tiktokConnections: 1, snapConnections: 1, today: fixedToday))
        let acct = s.world.accounts[s.world.accountOrder[0]]!
        let today = s.localToday(acct)
        func conversions(_ day: CivilDay) -> Int64 {
            s.groundTruth(account: acct.id, from: "\(day)", to: "\(day)").filter { $0.level == .ad }
                .reduce(0) { $0 + $1.conversions }
        }
        let before = (0...4).map { conversions(today - $0) }
        s.advanceDays(1)
        XCTAssertEqual(s.localToday(acct), today + 1)
        let after = (0...4).map { conversions(today - $0) }
        for i in 0...4 { XCTAssertGreaterThanOrEqual(after[i], before[i], "day -\(i) never shrinks") }
        XCTAssertGreaterThan(after[0] + after[1] + after[2], before[0] + before[1] + before[2], "recent days restate")
        XCTAssertEqual(after[3], before[3], "days 3+ old are final")
        XCTAssertEqual(after[4], before[4])
        XCTAssertFalse(s.groundTruth(account: acct.id, from: "\(today + 1)").isEmpty, "the new day has metrics")
    }

    func testControlEndpointsOverHTTP() async throws {
        let s = try makeSandbox()
        let conns = try await client.get(s.baseURL + "/_sandbox/connections")
        XCTAssertEqual(conns.json?["tiktok_base_url"]?.text, s.tiktokBaseURL)
        let list = try XCTUnwrap(conns.json?["connections"]?.arrayValue)
        XCTAssertEqual(list.count, 6)
        XCTAssertEqual(list.first?["auth_code"]?.text, "tiktok-auth-0")

        let set = try await client.send(
            "POST", s.baseURL + "/_sandbox/faults",
            body:
                #"{"probabilities":{"rate_limit":0.25},"slow_delay_ms":50,"rules":[{"kind":"server_error","platform":"snap","count":2}]}"#
        )
        XCTAssertEqual(set.status, 200, set.text)
        XCTAssertEqual(s.faults().probabilities[.rateLimit], 0.25)
        XCTAssertEqual(s.faults().rules, [FaultRule(kind: .serverError, platform: .snapchat, count: 2)])
        let bad = try await client.send("POST", s.baseURL + "/_sandbox/faults", body: #"{"probabilities":{"nope":1}}"#)
        XCTAssertEqual(bad.status, 400)
        _ = try await client.send("POST", s.baseURL + "/_sandbox/faults", body: "{}")
        XCTAssertEqual(s.faults(), .none)

        let d = demo(s, .tiktok, 1)
        let revoke = try await client.send(
            "POST", s.baseURL + "/_sandbox/revoke", body: #"{"platform":"tiktok","connection":1}"#)
        XCTAssertEqual(revoke.status, 200)
        let after = try await tiktok(s, "campaign/get/", [("advertiser_id", d.accountIDs[0])], token: d.accessToken)
        XCTAssertEqual(after.json?["code"], .number("40105"))

        let truth = try await client.get(s.baseURL + "/_sandbox/truth?platform=snap&from=2026-03-19&to=2026-03-19")
        let rows = try XCTUnwrap(truth.json?["rows"]?.arrayValue)
        XCTAssertFalse(rows.isEmpty)
        XCTAssertTrue(rows.allSatisfy { $0["platform"]?.text == "snapchat" && $0["date"]?.text == "2026-03-19" })
        XCTAssertEqual(rows.count, s.groundTruth(platform: .snapchat, from: "2026-03-19", to: "2026-03-19").count)
        XCTAssertNotNil(truth.json?["totals"]?.arrayValue?.first?["spend"]?.text)

        let clock = try await client.send("POST", s.baseURL + "/_sandbox/clock", body: #"{"advance_days":2}"#)
        XCTAssertEqual(clock.json?["advanced_days"], .number("2"))
    }

    func testRequestCountsPerAccountPerSecond() async throws {
        let s = try makeSandbox()
        let d = demo(s, .tiktok)
        let snapD = demo(s, .snapchat)
        for _ in 0..<5 {
            _ = try await tiktok(s, "campaign/get/", [("advertiser_id", d.accountIDs[0])], token: d.accessToken)
        }
        _ = try await snap(s, "adaccounts/\(snapD.accountIDs[0])/campaigns", token: snapD.accessToken)
        let counts = s.requestCounts()
        XCTAssertEqual(counts.filter { $0.accountID == d.accountIDs[0] }.reduce(0) { $0 + $1.count }, 5)
        XCTAssertEqual(counts.filter { $0.accountID == snapD.accountIDs[0] }.reduce(0) { $0 + $1.count }, 1)
        XCTAssertGreaterThanOrEqual(s.maxRequestsPerSecond(account: d.accountIDs[0]), 1)
        let http = try await client.get(s.baseURL + "/_sandbox/requests")
        XCTAssertNotNil(http.json?["max_per_second"]?[d.accountIDs[0]]?.intValue)
    }

    func testEachFaultKind() async throws {
        let s = try makeSandbox()
        let t = demo(s, .tiktok)
        let sn = demo(s, .snapchat)
        let adv = t.accountIDs[0]
        func fault(_ kind: FaultKind, _ platform: SandboxPlatform, path: String? = nil) {
            s.setFaults(
                FaultConfig(
                    slowDelay: .milliseconds(300),
                    rules: [FaultRule(kind: kind, platform: platform, pathContains: path, count: 1)]))
        }
        func tt() async throws -> Reply {
            try await tiktok(s, "campaign/get/", [("advertiser_id", adv)], token: t.accessToken)
        }
        func sc() async throws -> Reply {
            try await snap(s, "adaccounts/\(sn.accountIDs[0])/campaigns", token: sn.accessToken)
        }

        fault(.rateLimit, .tiktok)
        var r = try await tt()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.json?["code"], .number("40100"))
        let hoisted1 = try await tt()
        XCTAssertEqual(hoisted1.json?["code"], .number("0"), "count 1 fires once")

        fault(.rateLimit, .snapchat)
        r = try await sc()
        XCTAssertEqual(r.status, 429)
        XCTAssertEqual(r.header("Retry-After"), "1")
        XCTAssertEqual(r.header("X-Rate-Limit-Remaining"), "0")
        XCTAssertNotNil(r.header("X-Rate-Limit-Limit"))
        XCTAssertNotNil(r.header("X-Rate-Limit-Reset"))

        s.setFaults(FaultConfig(rules: [FaultRule(kind: .serverError, platform: .tiktok, count: 3)]))
        var seen = Set<String>()
        for _ in 0..<3 {
            let e = try await tt()
            seen.insert(e.status == 200 ? "code:\(e.json?["code"]?.text ?? "")" : "http:\(e.status)")
        }
        XCTAssertEqual(seen, ["code:50000", "http:500", "http:503"])
        fault(.serverError, .snapchat)
        let hoisted2 = try await sc()
        XCTAssertTrue([500, 503].contains(hoisted2.status))

        fault(.slow, .tiktok)
        let start = Date()
        let hoisted3 = try await tt()
        XCTAssertEqual(hoisted3.json?["code"], .number("0"))
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.3)

        fault(.malformedJSON, .snapchat)
        r = try await sc()
        XCTAssertEqual(r.status, 200)
        XCTAssertNil(r.json)

        fault(.truncatedBody, .tiktok)
        do {
            let cut = try await tt()
            XCTAssertNil(cut.json, "a truncated body must not parse")
        } catch {
            // URLSession reports the short body as a network error: that is the point.
        }
        let hoisted4 = try await tt()
        XCTAssertEqual(hoisted4.json?["code"], .number("0"), "the next request is served normally")

        fault(.queryTooLarge, .tiktok)
        let hoisted5 = try await tt()
        XCTAssertEqual(hoisted5.json?["code"], .number("0"), "query-too-large only hits reports")
        let rep = try await tiktok(
            s, "report/integrated/get/",
            [
                ("advertiser_id", adv), ("data_level", "AUCTION_AD"), ("dimensions", #"["ad_id","stat_time_day"]"#),
                ("start_date", "2026-03-01"), ("end_date", "2026-03-02"),
            ], token: t.accessToken)
        XCTAssertEqual(rep.json?["code"], .number("40067"))

        fault(.expiredToken, .tiktok)
        let hoisted6 = try await tt()
        XCTAssertEqual(hoisted6.json?["code"], .number("40102"))
        fault(.revokedToken, .tiktok)
        let hoisted7 = try await tt()
        XCTAssertEqual(hoisted7.json?["code"], .number("40105"))
        fault(.expiredToken, .snapchat)
        let hoisted8 = try await sc()
        XCTAssertEqual(hoisted8.status, 401)

        // Targeted at an OAuth endpoint, which probabilities never touch.
        fault(.serverError, .snapchat, path: "/login/oauth2")
        let oauth = try await client.send(
            "POST", s.snapOAuthURL,
            body: "grant_type=refresh_token&client_id=c&client_secret=s&refresh_token=\(sn.refreshToken)")
        XCTAssertTrue([500, 503].contains(oauth.status))
    }

    func testProbabilisticFaultsAreSeeded() async throws {
        func pattern(seed: UInt64) async throws -> [String] {
            let s = try makeSandbox(SandboxConfig(seed: seed, today: fixedToday))
            s.setFaults(FaultConfig(probabilities: [.rateLimit: 0.5]))
            let t = demo(s, .tiktok)
            var out: [String] = []
            for _ in 0..<20 {
                let r = try await tiktok(s, "campaign/get/", [("advertiser_id", t.accountIDs[0])], token: t.accessToken)
                out.append(r.json?["code"]?.text ?? "?")
            }
            return out
        }
        let a = try await pattern(seed: 5)
        let b = try await pattern(seed: 5)
        XCTAssertEqual(a, b)
        XCTAssertTrue(a.contains("40100") && a.contains("0"), "\(a)")
    }

    func testClockRefusesOverflowingAdvances() async throws {
        let s = try makeSandbox()
        for body in [
            #"{"advance_days":9223372036854775807}"#, #"{"advance_days":-9223372036854775808}"#,
            #"{"advance_days":36501}"#, #"{"advance_days":1e300}"#, #"{"advance_days":"inf"}"#,
        ] {
            let r = try await client.send("POST", s.baseURL + "/_sandbox/clock", body: body)
            XCTAssertEqual(r.status, 400, "\(body): \(r.text)")
            XCTAssertTrue(r.text.contains("-36500...36500"), r.text)
        }
        // Two moves that are each in range but together leave it: the second is refused, the clock stays.
        let first = try await client.send("POST", s.baseURL + "/_sandbox/clock", body: #"{"advance_days":36500}"#)
        XCTAssertEqual(first.status, 200, first.text)
        let second = try await client.send("POST", s.baseURL + "/_sandbox/clock", body: #"{"advance_days":36500}"#)
        XCTAssertEqual(second.status, 409, second.text)
        let clock = try await client.get(s.baseURL + "/_sandbox/clock")
        XCTAssertEqual(clock.json?["advanced_days"], .number("36500"))
        let faults = try await client.send(
            "POST", s.baseURL + "/_sandbox/faults", body: #"{"slow_delay_ms":9223372036854775807}"#)
        XCTAssertEqual(faults.status, 400, faults.text)
    }

    func testCommandArguments() async {
        let help = await runSandboxCommand(arguments: ["--help"])
        XCTAssertEqual(help, 0)
        let bad = await runSandboxCommand(arguments: ["--port", "nope"])
        XCTAssertEqual(bad, 2)
        let unknown = await runSandboxCommand(arguments: ["--bogus"])
        XCTAssertEqual(unknown, 2)
        // Absurd world sizes are refused before anything is built (they used to spin at 100% CPU).
        for args in [
            ["--accounts-per-connection", "1-1000000000"], ["--accounts-per-connection", "101"],
            ["--accounts-per-connection", "1-"], ["--days", "0"], ["--days", "3651"],
            ["--snap-connections", "1001"], ["--snap-token-ttl", "86401"], ["--quiet-accounts", "101"],
            ["--quiet-accounts", "-1"], ["--quiet-accounts", "50%"],
        ] {
            let code = await runSandboxCommand(arguments: args)
            XCTAssertEqual(code, 2, "\(args)")
        }
    }
}

final class SandboxQuietAccountTests: XCTestCase {
    /// `quietAccountPercent` silences a share of the accounts without changing the rest of the world: same ids and
    /// entities, the other accounts' truth unchanged, the quiet ones with no row and zero totals; `setQuiet` wakes one.
    func testQuietAccountsDeliverNothingAndTheRestOfTheWorldIsUnchanged() throws {
        let loud = Sandbox(config: SandboxConfig(tiktokConnections: 10, snapConnections: 10, today: fixedToday))
        let quiet = Sandbox(
            config: SandboxConfig(
                tiktokConnections: 10, snapConnections: 10, today: fixedToday, quietAccountPercent: 50))
        XCTAssertEqual(loud.accounts(), quiet.accounts())
        var silent: [String] = []
        for a in loud.accounts() {
            XCTAssertEqual(loud.entities(account: a.id), quiet.entities(account: a.id))
            let rows = quiet.groundTruth(account: a.id, from: a.firstDay)
            if rows.isEmpty {
                silent.append(a.id)
                XCTAssertEqual(quiet.accountTotals().first { $0.accountID == a.id }?.spend, 0)
            } else {
                XCTAssertEqual(rows, loud.groundTruth(account: a.id, from: a.firstDay), a.id)
            }
        }
        let total = loud.accounts().count
        XCTAssertTrue((total / 4...total * 3 / 4).contains(silent.count), "about half of \(total): \(silent.count)")
        let woken = try XCTUnwrap(silent.first)
        XCTAssertTrue(quiet.setQuiet(account: woken, false))
        let first = loud.accounts().first { $0.id == woken }!.firstDay
        XCTAssertEqual(quiet.groundTruth(account: woken, from: first), loud.groundTruth(account: woken, from: first))
        XCTAssertFalse(quiet.setQuiet(account: "no such account", true))
    }
}

final class SandboxIntrospectionTests: XCTestCase {
    func testAccountsAndEntitiesDescribeTheWorld() {
        let s = Sandbox(config: SandboxConfig(today: fixedToday))
        let accounts = s.accounts()
        XCTAssertEqual(accounts.count, s.connections().reduce(0) { $0 + $1.accountIDs.count })
        let la = accounts.first { $0.platform == .tiktok && $0.timezone == "America/Los_Angeles" }
        XCTAssertEqual(la?.today, "2026-03-20")
        let tokyo = accounts.first { $0.platform == .snapchat && $0.timezone == "Asia/Tokyo" }
        XCTAssertEqual(tokyo?.today, "2026-03-20")
        XCTAssertEqual(accounts.first?.firstDay, "2025-11-21", "120 days of history ending on the local today")
        let entities = s.entities(account: accounts[0].id)
        let campaigns = Set(entities.filter { $0.level == .campaign }.map(\.id))
        XCTAssertFalse(campaigns.isEmpty)
        XCTAssertTrue(entities.filter { $0.level == .adgroup }.allSatisfy { campaigns.contains($0.parentID!) })
        XCTAssertEqual(s.entities(account: accounts[0].id, level: .ad).count, entities.filter { $0.level == .ad }.count)
    }
}
