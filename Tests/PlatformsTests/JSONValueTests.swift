import XCTest

@testable import Platforms

final class JSONValueTests: XCTestCase {
    func testLargeIdsKeepEveryDigitAsNumberOrString() throws {
        let value = try JSONValue.parse(#"{"a":7001035076276387841,"b":"7001035076276387843","c":-0.5e-3}"#)
        XCTAssertEqual(value["a"]?.idText, "7001035076276387841")
        XCTAssertEqual(value["b"]?.idText, "7001035076276387843")
        XCTAssertEqual(value["c"], .number("-0.5e-3"))
        // 2^53 + 1 is the first integer a Double cannot hold.
        XCTAssertEqual(try JSONValue.parse("9007199254740993").idText, "9007199254740993")
    }

    func testStringsEscapesAndUnicode() throws {
        let value = try JSONValue.parse(#"["a\"b\\c\/d\n\t", "\u00e9\ud83d\ude00", "héllo"]"#)
        XCTAssertEqual(value.arrayValue?.compactMap(\.stringValue), ["a\"b\\c/d\n\t", "é😀", "héllo"])
    }

    func testLiteralsNestingAndRoundTrip() throws {
        let text = #"{"t":true,"f":false,"n":null,"list":[1,2.50,{"x":[]}],"o":{}}"#
        let value = try JSONValue.parse(text)
        XCTAssertEqual(value["t"], .bool(true))
        XCTAssertEqual(value["n"]?.isNull, true)
        XCTAssertEqual(value.jsonText, text)
    }

    func testRejectsInvalidDocuments() {
        for bad in [
            "", "{", #"{"a":1"#, #"{"a" 1}"#, "[1,]", "01", "1.", "-", "tru", #""abc"#, "{} x", "[1 2]",
            #""\x""#, "\u{01}", #""\ud800""#, "1e",
        ] {
            XCTAssertThrowsError(try JSONValue.parse(bad), "accepted \(bad.debugDescription)")
        }
    }

    func testTruncationIsReportedAtTheEndOfInput() {
        let text = #"{"code":0,"data":{"list":[1,2"#
        do {
            _ = try JSONValue.parse(text)
            XCTFail("parsed a truncated document")
        } catch {
            XCTAssertEqual(error.offset, text.utf8.count)
        }
    }

    func testDeepNestingIsRejectedWithoutCrashing() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        XCTAssertThrowsError(try JSONValue.parse(deep))
        let ok = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertNoThrow(try JSONValue.parse(ok))
    }

    func testDuplicateKeysTakeTheLastValue() throws {
        XCTAssertEqual(try JSONValue.parse(#"{"a":1,"a":2}"#)["a"], .number("2"))
    }

    func testValuesParseMoneyAndCountsExactly() {
        XCTAssertEqual(Values.decimal(.string("20.00")), .some(Decimal(string: "20.00")!))
        XCTAssertEqual(Values.decimal(.number("0.1")), .some(Decimal(string: "0.1")!))
        XCTAssertEqual(Values.decimal(.string("-")), .some(nil))
        XCTAssertEqual(Values.decimal(nil), .some(nil))
        XCTAssertEqual(Values.decimal(.null), .some(nil))
        XCTAssertNil(Values.decimal(.string("12abc")))
        XCTAssertNil(Values.decimal(.bool(true)))
        XCTAssertEqual(Values.int64(.string("5830")), .some(5830))
        XCTAssertEqual(Values.int64(.number("12.0")), .some(12))
        XCTAssertNil(Values.int64(.string("1.5")))
        XCTAssertEqual(Values.int64(.string("-")), .some(nil))
        // Snap micro-currency: 1234567 micros = 1.234567 exactly, and a huge value keeps every digit.
        XCTAssertEqual(Values.fromMicros(Decimal(1_234_567)), Decimal(string: "1.234567")!)
        XCTAssertEqual(
            Values.fromMicros(Decimal(string: "123456789012345678")!), Decimal(string: "123456789012.345678")!)
        XCTAssertEqual(Values.fromMicros(Decimal(-5_000_000)), Decimal(-5))
        XCTAssertEqual("\(Values.fromMicros(Decimal(100_000_000)))", "100")
    }
}
